/**
 * Semantic Versioning 2.0.0 precedence (semver.org §11), for downgrade protection (issue 14).
 * A leading `v` is tolerated ("v2.1.0"), as firmware versions are often written so.
 */
interface SemVer {
  core: [number, number, number];
  pre: string[];
}

const SEMVER = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

export function parseSemVer(v: string): SemVer | null {
  const m = SEMVER.exec(v.trim());
  if (!m) return null;
  return { core: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split('.') : [] };
}

/** Negative when `a` precedes `b`, 0 when equal in precedence (build metadata ignored, §10), positive otherwise. */
function compare(a: SemVer, b: SemVer): number {
  for (let i = 0; i < 3; i++) if (a.core[i] !== b.core[i]) return (a.core[i] as number) - (b.core[i] as number);
  // §11.3: a pre-release precedes its release.
  if (!a.pre.length || !b.pre.length) return b.pre.length - a.pre.length;
  for (let i = 0; i < Math.min(a.pre.length, b.pre.length); i++) {
    const x = a.pre[i] as string;
    const y = b.pre[i] as string;
    if (x === y) continue;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    // §11.4: numeric identifiers compare numerically and precede alphanumeric ones.
    if (xn && yn) return Number(x) - Number(y);
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return a.pre.length - b.pre.length;
}

/**
 * Whether moving from `current` to `target` is a downgrade. Versions that do not both parse as
 * semantic versions are compared as equal-or-not only, so they are never a downgrade.
 */
export function isDowngrade(target: string, current: string): boolean {
  const t = parseSemVer(target);
  const c = parseSemVer(current);
  return !!t && !!c && compare(t, c) < 0;
}
