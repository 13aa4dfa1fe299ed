import { generatePassword, type Principal, type TokenPair, type TokenService } from './auth';
import { ErrorCode, OtaError, unauthorized } from '../errors';
import type { TenantId, UserId } from '../ids';
import type { Tenant, TenantRepository, User } from '../store/tenants';
import { LoginThrottle } from './login-throttle';
import { PasswordChecks } from './password-checks';

/** ThingsBoard answers a wrong user and a wrong password alike. */
const badCredentials = (): OtaError => new OtaError(401, 'Invalid username or password', ErrorCode.AUTHENTICATION);
/** ThingsBoard's TokenOutdatingService: a token issued before a logout or password change. */
const outdated = (): OtaError => new OtaError(401, 'Token is outdated', ErrorCode.JWT_TOKEN_EXPIRED);

/** How long a user read for an authenticated request is reused: a revocation elsewhere shows within it. */
const USER_CACHE_MS = 1000;
const USER_CACHE_SIZE = 1000;

export interface BootstrapResult {
  tenant: Tenant | null;
  admin: User;
  /** Set only when the password was generated now: print it once, it is stored only as a hash. */
  generatedPassword: string | null;
}

export interface AccountGuards {
  throttle?: LoginThrottle;
  passwords?: PasswordChecks;
  now?: () => number;
}

/** Tenants, their admins, login and tokens. */
export class AccountService {
  readonly throttle: LoginThrottle;
  readonly passwords: PasswordChecks;
  private readonly now: () => number;
  private readonly users = new Map<UserId, { user: User; until: number }>();

  constructor(
    private readonly tenants: TenantRepository,
    private readonly tokens: TokenService,
    private readonly onTenantCreated: (tenantId: TenantId) => Promise<void>,
    guards: AccountGuards = {},
  ) {
    this.now = guards.now ?? Date.now;
    this.throttle = guards.throttle ?? new LoginThrottle(undefined, this.now);
    this.passwords = guards.passwords ?? new PasswordChecks();
  }

  /**
   * First start: creates a tenant and its admin. With a configured password the admin's password
   * follows it (so changing OTA_ADMIN_PASSWORD and restarting resets it, revoking the admin's
   * tokens); without one a password is generated once. There is no fixed default password.
   */
  async bootstrap(username: string, password: string | undefined): Promise<BootstrapResult> {
    const existing = await this.tenants.findUserByEmail(username);
    if (existing) {
      if (password && !(await this.passwords.verify(password, existing.passwordHash))) {
        await this.tenants.setPassword(existing.id, await this.passwords.hash(password));
      }
      return { tenant: null, admin: existing, generatedPassword: null };
    }
    const generatedPassword = password ? null : generatePassword();
    const { tenant, admin } = await this.createTenant('Default tenant', username, password ?? (generatedPassword as string));
    return { tenant, admin, generatedPassword };
  }

  async createTenant(title: string, adminEmail: string, adminPassword: string): Promise<{ tenant: Tenant; admin: User }> {
    const tenant = await this.tenants.createTenant(title);
    const admin = await this.tenants.createUser({
      tenantId: tenant.id,
      email: adminEmail,
      passwordHash: await this.passwords.hash(adminPassword),
      authority: 'TENANT_ADMIN',
    });
    await this.onTenantCreated(tenant.id);
    return { tenant, admin };
  }

  /** A login from `address` (the client's IP): throttled, see login-throttle.ts. */
  async login(username: string, password: string, address = ''): Promise<TokenPair> {
    return this.tokens.issue(await this.checkPassword(username, password, address));
  }

  /** The user if the password is right; ThingsBoard's 401 otherwise, 429 when throttled. */
  async checkPassword(username: string, password: string, address = ''): Promise<User> {
    this.throttle.check(address, username);
    const user = await this.verifyCredentials(username, password);
    if (!user) {
      this.throttle.failed(address, username);
      throw badCredentials();
    }
    this.throttle.succeeded(address, username);
    return user;
  }

  /**
   * The user if the password is right, else null. Not throttled: for a caller that has throttled
   * the attempt already (the embedded editor's login, editor-guard.ts). An unknown user costs a
   * check against a dummy hash, so the answer time does not tell.
   */
  async verifyCredentials(username: string, password: string): Promise<User | null> {
    const user = await this.tenants.findUserByEmail(username);
    return (await this.passwords.verify(password, user?.passwordHash ?? null)) && user ? user : null;
  }

  async refresh(refreshToken: string): Promise<TokenPair> {
    const claims = await this.tokens.verifyRefresh(refreshToken);
    const user = await this.tenants.findUser(claims.userId);
    if (!user) throw unauthorized();
    if (user.tokenGeneration !== claims.generation) throw outdated();
    return this.tokens.issue(user);
  }

  /** The principal of an access token, whose user must still exist and not have revoked it. */
  async authenticate(token: string): Promise<Principal> {
    const principal = await this.tokens.verifyAccess(token);
    const user = await this.cachedUser(principal.userId);
    if (!user) throw unauthorized();
    if (user.tokenGeneration !== principal.generation) throw outdated();
    return principal;
  }

  /** Logout: every token of the user so far stops working (access and refresh). */
  async logout(userId: UserId): Promise<void> {
    await this.tenants.revokeTokens(userId);
    this.users.delete(userId);
  }

  /**
   * ThingsBoard's `POST /api/auth/changePassword`: the current password must be right; the user's
   * other tokens are revoked and a new pair is answered.
   */
  async changePassword(userId: UserId, currentPassword: string, newPassword: string): Promise<TokenPair> {
    const user = await this.user(userId);
    if (!(await this.passwords.verify(currentPassword, user.passwordHash))) {
      throw new OtaError(400, "Current password doesn't match!", ErrorCode.BAD_REQUEST_PARAMS);
    }
    await this.tenants.setPassword(user.id, await this.passwords.hash(newPassword));
    this.users.delete(user.id);
    return this.tokens.issue(await this.user(userId));
  }

  async user(id: UserId): Promise<User> {
    const user = await this.tenants.findUser(id);
    if (!user) throw unauthorized();
    return user;
  }

  userByEmail(email: string): Promise<User | null> {
    return this.tenants.findUserByEmail(email);
  }

  /** Every authenticated request reads its user: kept for a second, so a burst reads it once. */
  private async cachedUser(id: UserId): Promise<User | null> {
    const hit = this.users.get(id);
    if (hit && hit.until > this.now()) return hit.user;
    const user = await this.tenants.findUser(id);
    this.users.delete(id);
    if (user) {
      this.users.set(id, { user, until: this.now() + USER_CACHE_MS });
      if (this.users.size > USER_CACHE_SIZE) this.users.delete(this.users.keys().next().value as UserId);
    }
    return user;
  }
}
