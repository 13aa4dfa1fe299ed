import { randomBytes } from 'node:crypto';
import { generatePassword, type Principal, type TokenPair, type TokenService } from './auth';
import { ErrorCode, forbidden, entityNotFound, invalid, OtaError, unauthorized } from '../errors';
import { isUuid, type TenantId, type UserId } from '../ids';
import type { PageData, PageLink } from '../store/sqlite/database';
import { SYSTEM_TENANT_ID, type Authority, type Tenant, type TenantRepository, type User } from '../store/tenants';
import { LoginThrottle } from './login-throttle';
import { PasswordChecks } from './password-checks';

/** ThingsBoard answers a wrong user and a wrong password alike. */
const badCredentials = (): OtaError => new OtaError(401, 'Invalid username or password', ErrorCode.AUTHENTICATION);
/** ThingsBoard's TokenOutdatingService: a token issued before a logout or password change. */
const outdated = (): OtaError => new OtaError(401, 'Token is outdated', ErrorCode.JWT_TOKEN_EXPIRED);

/** How long a user read for an authenticated request is reused: a revocation elsewhere shows within it. */
const USER_CACHE_MS = 1000;
const USER_CACHE_SIZE = 1000;
/** ThingsBoard's default password policy: at least 6 characters (UserPasswordPolicy.minimumLength). */
const MIN_PASSWORD_LENGTH = 6;
/** The user fields ThingsBoard keeps that we pass back as sent. */
const USER_DETAILS = ['firstName', 'lastName', 'phone', 'additionalInfo'] as const;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

type Ref = { id?: string } | null | undefined;

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
  /** How long an activation link works (ThingsBoard's userActivationTokenTtl, 24 h by default). */
  activationTokenTtlMs?: number;
  /** How long a password reset link works (ThingsBoard's passwordResetTokenTtl, 24 h by default). */
  passwordResetTokenTtlMs?: number;
}

/** ThingsBoard's default `userActivationTokenTtl`: 24 hours. */
export const ACTIVATION_TOKEN_TTL_MS = 24 * 3600_000;
/** ThingsBoard renews an activation link asked for with less than 15 minutes left (UserServiceImpl). */
const ACTIVATION_RENEW_BEFORE_MS = 15 * 60_000;

/** `GET /api/noauth/activate?activateToken=`: where ThingsBoard sends the browser, or null for its 409. */
export type ActivationCheck = { location: string } | null;

/** An activate or password reset token: 22 random bytes, base64url. */
const newToken = (): string => randomBytes(22).toString('base64url');

/** Tenants, their admins, login and tokens. */
export class AccountService {
  readonly throttle: LoginThrottle;
  readonly passwords: PasswordChecks;
  private readonly now: () => number;
  private readonly activationTokenTtlMs: number;
  private readonly passwordResetTokenTtlMs: number;
  private readonly users = new Map<UserId, { user: User; until: number }>();
  /** The first tenant's (bootstrap's): its admins, with the system administrator, may use the embedded editor. */
  private operatorTenant: TenantId | null = null;

  constructor(
    private readonly tenants: TenantRepository,
    private readonly tokens: TokenService,
    private readonly onTenantCreated: (tenantId: TenantId) => Promise<void>,
    guards: AccountGuards = {},
  ) {
    this.now = guards.now ?? Date.now;
    this.activationTokenTtlMs = guards.activationTokenTtlMs ?? ACTIVATION_TOKEN_TTL_MS;
    this.passwordResetTokenTtlMs = guards.passwordResetTokenTtlMs ?? ACTIVATION_TOKEN_TTL_MS;
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
      this.operatorTenant = existing.tenantId;
      return { tenant: null, admin: existing, generatedPassword: null };
    }
    const generatedPassword = password ? null : generatePassword();
    const { tenant, admin } = await this.createTenant('Default tenant', username, password ?? (generatedPassword as string));
    this.operatorTenant = tenant.id;
    return { tenant, admin, generatedPassword };
  }

  /**
   * ThingsBoard's system administrator (SYS_ADMIN, in the system tenant): made on first start with
   * the configured password, or a generated one printed once; a configured password that changed
   * is applied (revoking the sysadmin's tokens), as for the first tenant's admin.
   */
  async bootstrapSysadmin(username: string, password: string | undefined): Promise<{ admin: User; generatedPassword: string | null }> {
    const existing = await this.tenants.findUserByEmail(username);
    if (existing) {
      if (existing.authority !== 'SYS_ADMIN') throw new Error(`OTA_SYSADMIN_USERNAME '${username}' is already a tenant's user`);
      if (password && !(await this.passwords.verify(password, existing.passwordHash))) {
        await this.tenants.setPassword(existing.id, await this.passwords.hash(password));
      }
      return { admin: existing, generatedPassword: null };
    }
    const generatedPassword = password ? null : generatePassword();
    const admin = await this.tenants.createUser({
      tenantId: SYSTEM_TENANT_ID,
      email: username,
      passwordHash: await this.passwords.hash(password ?? (generatedPassword as string)),
      authority: 'SYS_ADMIN',
    });
    return { admin, generatedPassword };
  }

  async createTenant(title: string, adminEmail: string, adminPassword: string): Promise<{ tenant: Tenant; admin: User }> {
    const tenant = await this.tenants.createTenant({ title });
    const admin = await this.tenants.createUser({
      tenantId: tenant.id,
      email: adminEmail,
      passwordHash: await this.passwords.hash(adminPassword),
      authority: 'TENANT_ADMIN',
    });
    await this.onTenantCreated(tenant.id);
    return { tenant, admin };
  }

  /**
   * The embedded editor (`npm start`) runs the flows of the first tenant, with its admin's
   * credentials: only that tenant's admins and the system administrator may open it, never another
   * tenant's admin.
   */
  mayUseEditor(user: User): boolean {
    return user.authority === 'SYS_ADMIN' || (this.operatorTenant !== null && user.tenantId === this.operatorTenant);
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
    // A user who has not activated has no password: checked like an unknown one.
    return (await this.passwords.verify(password, user?.passwordHash || null)) && user ? user : null;
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
    if (currentPassword === newPassword) throw invalid('New password should be different from existing!');
    checkPasswordPolicy(newPassword);
    await this.tenants.setPassword(user.id, await this.passwords.hash(newPassword));
    this.users.delete(user.id);
    return this.tokens.issue(await this.user(userId));
  }

  // ---- users (ThingsBoard's UserController and activation) ---------------------------------------

  /**
   * `POST /api/user`: a SYS_ADMIN creates a tenant's admin (tenantId in the body); a TENANT_ADMIN
   * creates admins of its own tenant (the body's tenantId is overwritten, as ThingsBoard does). A new
   * user has no password: it activates with the token of its activation link.
   */
  async saveUser(who: Principal, body: Record<string, unknown>): Promise<User> {
    const extra: Record<string, unknown> = {};
    for (const key of USER_DETAILS) if (body[key] !== undefined) extra[key] = body[key];
    const email = typeof body.email === 'string' ? body.email.trim() : '';
    if (!email) throw invalid('User email should be specified!');
    if (!EMAIL.test(email)) throw invalid(`Invalid email address format '${email}'!`);
    const id = (body.id as Ref)?.id;
    if (id) {
      const before = await this.reachableUser(who, id);
      if (body.authority !== undefined && body.authority !== before.authority) throw invalid("Can't update user authority!");
      const tenantId = who.authority === 'SYS_ADMIN' ? ((body.tenantId as Ref)?.id ?? before.tenantId) : before.tenantId;
      if (tenantId !== before.tenantId) throw invalid("Can't update user tenant id!");
      await this.checkEmailFree(email, before.id);
      const user: User = { ...before, email, extra };
      await this.tenants.updateUser(user);
      this.users.delete(user.id);
      return user;
    }
    const authority = body.authority;
    if (authority === undefined || authority === null) throw invalid("User authority isn't defined!");
    if (authority === 'CUSTOMER_USER') throw invalid('Customer user should be assigned to customer!');
    if (authority !== 'TENANT_ADMIN' && authority !== 'SYS_ADMIN') throw invalid(`Invalid authority: ${String(authority)}`);
    let tenantId: TenantId;
    if (who.authority === 'SYS_ADMIN') {
      tenantId = ((body.tenantId as Ref)?.id ?? SYSTEM_TENANT_ID) as TenantId;
      if (authority === 'SYS_ADMIN' && tenantId !== SYSTEM_TENANT_ID) throw invalid("System administrator can't be assigned neither to tenant nor to customer!");
      if (authority === 'TENANT_ADMIN') {
        if (tenantId === SYSTEM_TENANT_ID) throw invalid('Tenant administrator should be assigned to tenant!');
        if (!isUuid(tenantId) || !(await this.tenants.findTenant(tenantId))) throw invalid('User is referencing to non-existent tenant!');
      }
    } else {
      if (authority !== 'TENANT_ADMIN') throw forbidden();
      tenantId = who.tenantId;
    }
    await this.checkEmailFree(email, null);
    return this.tenants.createUser({ tenantId, email, passwordHash: '', authority: authority as Authority, extra, ...this.newActivateToken() });
  }

  /** A user the caller may see and change: its own tenant's, or any for the system administrator. */
  async reachableUser(who: Principal, id: string): Promise<User> {
    const user = isUuid(id) ? await this.tenants.findUser(id as UserId) : null;
    if (!user) throw entityNotFound('User', id);
    if (who.authority === 'SYS_ADMIN' || (user.tenantId === who.tenantId && user.authority !== 'SYS_ADMIN')) return user;
    throw forbidden();
  }

  /**
   * ThingsBoard's `GET /api/user/{id}/activationLink` (and `activationLinkInfo`, with the time left)
   * while the user has not activated. As ThingsBoard does, an expired link, or one with less than 15
   * minutes left, is replaced by a new one with the full TTL.
   */
  async activationLink(who: Principal, id: string, baseUrl: string): Promise<{ value: string; ttlMs: number }> {
    let user = await this.reachableUser(who, id);
    if (!user.activateToken) throw invalid('User is already activated!');
    if ((user.activateTokenExpTime ?? 0) - this.now() < ACTIVATION_RENEW_BEFORE_MS) {
      const renewed = this.newActivateToken();
      await this.tenants.setActivateToken(user.id, renewed.activateToken, renewed.activateTokenExpTime);
      user = { ...user, ...renewed };
    }
    return { value: `${baseUrl}/api/noauth/activate?activateToken=${user.activateToken}`, ttlMs: (user.activateTokenExpTime as number) - this.now() };
  }

  /**
   * ThingsBoard's `GET /api/noauth/activate?activateToken=`: a live token is sent on to the login
   * page's create-password route, an expired one to `/activationLinkExpired`; an unknown one is 409.
   */
  async checkActivateToken(activateToken: string): Promise<ActivationCheck> {
    const user = activateToken ? await this.tenants.findUserByActivateToken(activateToken) : null;
    if (!user) return null;
    if (this.activationExpired(user)) return { location: '/activationLinkExpired' };
    return { location: `/login/createPassword?activateToken=${encodeURIComponent(activateToken)}` };
  }

  /** `POST /api/noauth/activate`: sets the first password; the token works once. Answers tokens as a login. */
  async activate(activateToken: string, password: string): Promise<TokenPair> {
    checkPasswordPolicy(password);
    const user = await this.tenants.findUserByActivateToken(activateToken);
    if (!user) throw invalid(`Unable to find user credentials by activateToken [${activateToken}]`);
    if (this.activationExpired(user)) throw invalid('Activation token expired');
    await this.tenants.setPassword(user.id, await this.passwords.hash(password));
    return this.tokens.issue(await this.user(user.id));
  }

  // ---- password reset (ThingsBoard's AuthController; no mail is sent) ----------------------------

  /**
   * A password reset link for an active user the caller may manage (a tenant admin: its own
   * tenant's users; the sysadmin: anyone's). ThingsBoard mails this link on
   * `POST /api/noauth/resetPasswordByEmail`; we send no mail, so an administrator hands it over.
   * Each call makes a new token (the one before stops working), valid for the reset TTL.
   */
  async passwordResetLink(who: Principal, id: string, baseUrl: string): Promise<string> {
    const user = await this.reachableUser(who, id);
    if (user.activateToken || !user.passwordHash) throw invalid('User is not active!');
    const token = newToken();
    await this.tenants.setResetToken(user.id, token, this.now() + this.passwordResetTokenTtlMs);
    return `${baseUrl}/api/noauth/resetPassword?resetToken=${token}`;
  }

  /** `GET /api/noauth/resetPassword?resetToken=`: 303 to the login page's reset route, or to `/passwordResetLinkExpired`; null for 409. */
  async checkResetToken(resetToken: string): Promise<ActivationCheck> {
    const user = resetToken ? await this.tenants.findUserByResetToken(resetToken) : null;
    if (!user) return null;
    if (this.resetExpired(user)) return { location: '/passwordResetLinkExpired' };
    return { location: `/login/resetPassword?resetToken=${encodeURIComponent(resetToken)}` };
  }

  /**
   * `POST /api/noauth/resetPassword`: sets the password; the token works once, and every token the
   * user held so far is revoked. Answers a new token pair as a login.
   */
  async resetPassword(resetToken: string, password: string): Promise<TokenPair> {
    const user = await this.tenants.findUserByResetToken(resetToken);
    if (!user) throw invalid('Invalid reset token!');
    if (this.resetExpired(user)) throw invalid('Password reset token expired');
    checkPasswordPolicy(password);
    await this.tenants.setPassword(user.id, await this.passwords.hash(password));
    this.users.delete(user.id);
    return this.tokens.issue(await this.user(user.id));
  }

  /** `GET /api/tenant/{tenantId}/users` (SYS_ADMIN). */
  pageUsers(tenantId: TenantId, link: PageLink): Promise<PageData<User>> {
    return this.tenants.pageUsers(tenantId, link);
  }

  /** `DELETE /api/user/{id}`, with ThingsBoard's two refusals; the user's tokens stop working at once. */
  async deleteUser(who: Principal, id: string): Promise<void> {
    const user = await this.reachableUser(who, id);
    if (user.authority === 'SYS_ADMIN' && user.id === who.userId) throw new OtaError(403, 'Sysadmin is not allowed to delete himself', ErrorCode.PERMISSION_DENIED);
    if (user.authority === 'TENANT_ADMIN' && (await this.tenants.countTenantAdmins(user.tenantId)) === 1) throw invalid('At least one tenant administrator must remain!');
    await this.tenants.deleteUser(user.id);
    this.users.delete(user.id);
  }

  /** A deleted tenant's users: their tokens stop working at once, not after the cache's second. */
  forgetTenant(tenantId: TenantId): void {
    for (const [id, hit] of this.users) if (hit.user.tenantId === tenantId) this.users.delete(id);
  }

  private newActivateToken(): { activateToken: string; activateTokenExpTime: number } {
    return { activateToken: newToken(), activateTokenExpTime: this.now() + this.activationTokenTtlMs };
  }

  /** A token with no expiry time was made before tokens expired (migration 11): it counts from the user's creation. */
  private activationExpired(user: User): boolean {
    return (user.activateTokenExpTime ?? user.createdTime + this.activationTokenTtlMs) <= this.now();
  }

  private resetExpired(user: User): boolean {
    return (user.resetTokenExpTime ?? 0) <= this.now();
  }

  private async checkEmailFree(email: string, ownId: UserId | null): Promise<void> {
    const holder = await this.tenants.findUserByEmail(email);
    if (holder && holder.id !== ownId) throw invalid(`User with email '${email}' already present in database!`);
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

/** ThingsBoard's default UserPasswordPolicy and its message. */
function checkPasswordPolicy(password: string): void {
  if (password.length < MIN_PASSWORD_LENGTH) throw invalid(`Password must be ${MIN_PASSWORD_LENGTH} or more characters in length.`);
}
