import { tooManyRequests } from '../errors';

export interface LoginThrottleLimits {
  /** Failed logins from one address within `windowMs` before it must wait (`OTA_LOGIN_MAX_FAILURES_PER_ADDRESS`). */
  maxFailuresPerAddress: number;
  /**
   * Failed logins for one user within `windowMs` (from any address) before that user can be
   * tried only from addresses it logged in from before (`OTA_LOGIN_MAX_FAILURES_PER_USER`).
   */
  maxFailuresPerUser: number;
  /** How long failures count (`OTA_LOGIN_WINDOW_MS`). */
  windowMs: number;
  /** Addresses and users tracked at most; the oldest are forgotten first (memory stays bounded). */
  maxTracked: number;
}

export const LOGIN_THROTTLE_DEFAULTS: LoginThrottleLimits = {
  maxFailuresPerAddress: 10,
  maxFailuresPerUser: 50,
  windowMs: 15 * 60_000,
  maxTracked: 100_000,
};

interface Failures {
  count: number;
  since: number;
}

/**
 * Slows password guessing without letting a stranger lock the admin out (issue 10, item 2):
 * - an address with too many recent failures is refused (429) until its window passes: a guesser
 *   stops, a user elsewhere is not affected;
 * - a user with too many recent failures (a guesser spread over many addresses) can still log in
 *   from an address that logged in as that user before; other addresses are refused until the
 *   window passes. A success from an address clears that address's failures.
 * Keys are kept in insertion order and the oldest dropped past `maxTracked`.
 */
export class LoginThrottle {
  private readonly byAddress = new Map<string, Failures>();
  private readonly byUser = new Map<string, Failures>();
  /** `user\naddress` pairs that logged in successfully. */
  private readonly trusted = new Map<string, number>();

  constructor(
    private readonly limits: LoginThrottleLimits = LOGIN_THROTTLE_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Throws 429 if this attempt must not be checked now. */
  check(address: string, username: string): void {
    if (this.count(this.byAddress, address) >= this.limits.maxFailuresPerAddress) throw tooManyRequests();
    const user = username.toLowerCase();
    if (this.count(this.byUser, user) >= this.limits.maxFailuresPerUser && !this.isTrusted(user, address)) throw tooManyRequests();
  }

  failed(address: string, username: string): void {
    this.add(this.byAddress, address);
    this.add(this.byUser, username.toLowerCase());
  }

  succeeded(address: string, username: string): void {
    this.byAddress.delete(address);
    const key = `${username.toLowerCase()}\n${address}`;
    this.trusted.delete(key);
    this.trusted.set(key, this.now());
    this.trim(this.trusted);
  }

  private isTrusted(user: string, address: string): boolean {
    return this.trusted.has(`${user}\n${address}`);
  }

  private count(map: Map<string, Failures>, key: string): number {
    const f = map.get(key);
    if (!f) return 0;
    if (this.now() - f.since >= this.limits.windowMs) {
      map.delete(key);
      return 0;
    }
    return f.count;
  }

  private add(map: Map<string, Failures>, key: string): void {
    const count = this.count(map, key);
    const f = map.get(key);
    if (f) f.count = count + 1;
    else map.set(key, { count: 1, since: this.now() });
    this.trim(map);
  }

  private trim(map: Map<string, unknown>): void {
    while (map.size > this.limits.maxTracked) map.delete(map.keys().next().value as string);
  }
}
