/**
 * A number from the environment: unset or empty means the fallback, anything else must lie in
 * min..max (and be whole when asked), or start-up stops with a message naming the variable.
 */
export function numberFromEnv(env: NodeJS.ProcessEnv, name: string, range: { min: number; max: number; fallback: number; unit: string; whole?: boolean }): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return range.fallback;
  const n = Number(raw);
  const whole = range.whole ?? true;
  if (raw.trim() === '' || !Number.isFinite(n) || (whole && !Number.isInteger(n)) || n < range.min || n > range.max) {
    throw new Error(`${name} must be a ${whole ? 'whole ' : ''}number of ${range.unit} from ${range.min} to ${range.max}, not '${raw}'`);
  }
  return n;
}
