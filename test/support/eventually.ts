/**
 * The one polling helper of the tests: for state that has no event to await (a row written by a
 * handler the test cannot see, a socket closed on the other side, a child's endpoint coming up).
 * Calls `check` until it answers a truthy value and resolves with that value; a `check` that
 * throws counts as not yet, and its last error is named if time runs out after `timeoutMs`.
 */
export interface PollOptions {
  /** How long to keep looking (default 10 s). */
  timeoutMs?: number;
  /** Pause between looks (default 10 ms; a look that does I/O over HTTP may want more). */
  everyMs?: number;
}

export async function eventually<T>(
  check: () => T | Promise<T>,
  what: string,
  { timeoutMs = 10_000, everyMs = 10 }: PollOptions = {},
): Promise<NonNullable<Exclude<T, false | '' | 0>>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<Exclude<T, false | '' | 0>>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
