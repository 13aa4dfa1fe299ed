import { tooManyRequests } from '../errors';
import { hashPassword, verifyPassword } from './auth';

export interface PasswordCheckLimits {
  /** scrypt runs at most this many at once (`OTA_LOGIN_CONCURRENCY`). */
  concurrency: number;
  /** Checks waiting for a turn beyond this are refused with 429 (`OTA_LOGIN_QUEUE`). */
  queue: number;
}

export const PASSWORD_CHECK_DEFAULTS: PasswordCheckLimits = { concurrency: 1, queue: 64 };

/**
 * Every scrypt the server runs (login, password change) goes through here. scrypt takes a thread of
 * libuv's pool (4 by default) for ~80 ms; file reads share that pool, so a flood of logins would
 * stall firmware downloads (issue 10, item 2: 2.8 ms -> 3.3 s). At most `concurrency` run at once,
 * the rest wait in a bounded queue. An unknown user is checked against a dummy hash, so the answer
 * takes as long as for a real user with a wrong password.
 */
export class PasswordChecks {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private dummy: Promise<string> | null = null;

  constructor(private readonly limits: PasswordCheckLimits = PASSWORD_CHECK_DEFAULTS) {}

  /** Whether `password` matches `stored`; with `stored` null, the same work and `false`. */
  async verify(password: string, stored: string | null): Promise<boolean> {
    const hash = stored ?? (await (this.dummy ??= hashPassword('not a password: the dummy for unknown users')));
    const ok = await this.run(() => verifyPassword(password, hash));
    return stored !== null && ok;
  }

  hash(password: string): Promise<string> {
    return this.run(() => hashPassword(password));
  }

  /** Checks running or waiting now. */
  get pending(): number {
    return this.running + this.waiting.length;
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.limits.concurrency) {
      if (this.waiting.length >= this.limits.queue) throw tooManyRequests();
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return await work();
    } finally {
      // Hand the slot straight to the next waiter (running stays the same), or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}
