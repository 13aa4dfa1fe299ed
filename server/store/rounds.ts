/**
 * Splits `items` into rounds in which each key appears at most once, keeping their order: a
 * multi-row statement that may not touch one row twice (PostgreSQL's `ON CONFLICT DO UPDATE`) runs
 * once per round, and a later write of a key still lands after the earlier one.
 */
export function inRounds<T>(items: readonly T[], key: (item: T) => string): T[][] {
  const rounds: T[][] = [];
  const seen = new Map<string, number>();
  for (const item of items) {
    const k = key(item);
    const r = seen.get(k) ?? 0;
    seen.set(k, r + 1);
    (rounds[r] ??= []).push(item);
  }
  return rounds;
}
