import { generatePassword, hashPassword, verifyPassword, type Principal, type TokenPair, type TokenService } from './auth';
import { ErrorCode, OtaError, unauthorized } from '../errors';
import type { TenantId, UserId } from '../ids';
import type { Tenant, TenantRepository, User } from '../store/tenants';

/** ThingsBoard answers a wrong user and a wrong password alike. */
const badCredentials = (): OtaError => new OtaError(401, 'Invalid username or password', ErrorCode.AUTHENTICATION);

export interface BootstrapResult {
  tenant: Tenant | null;
  admin: User;
  /** Set only when the password was generated now: print it once, it is stored only as a hash. */
  generatedPassword: string | null;
}

/** Tenants, their admins, login and tokens. */
export class AccountService {
  constructor(
    private readonly tenants: TenantRepository,
    private readonly tokens: TokenService,
    private readonly onTenantCreated: (tenantId: TenantId) => Promise<void>,
  ) {}

  /**
   * First start: creates a tenant and its admin. With a configured password the admin's password
   * follows it (so changing OTA_ADMIN_PASSWORD and restarting resets it); without one a password is
   * generated once. There is no fixed default password.
   */
  async bootstrap(username: string, password: string | undefined): Promise<BootstrapResult> {
    const existing = await this.tenants.findUserByEmail(username);
    if (existing) {
      if (password && !(await verifyPassword(password, existing.passwordHash))) {
        await this.tenants.setPassword(existing.id, await hashPassword(password));
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
      passwordHash: await hashPassword(adminPassword),
      authority: 'TENANT_ADMIN',
    });
    await this.onTenantCreated(tenant.id);
    return { tenant, admin };
  }

  async login(username: string, password: string): Promise<TokenPair> {
    return this.tokens.issue(await this.checkPassword(username, password));
  }

  /** The user if the password is right; ThingsBoard's 401 otherwise. */
  async checkPassword(username: string, password: string): Promise<User> {
    const user = await this.tenants.findUserByEmail(username);
    if (!user || !(await verifyPassword(password, user.passwordHash))) throw badCredentials();
    return user;
  }

  async refresh(refreshToken: string): Promise<TokenPair> {
    const user = await this.tenants.findUser(this.tokens.verifyRefresh(refreshToken));
    if (!user) throw unauthorized();
    return this.tokens.issue(user);
  }

  /** The principal of an access token, whose user must still exist. */
  async authenticate(token: string): Promise<Principal> {
    const principal = this.tokens.verifyAccess(token);
    if (!(await this.tenants.findUser(principal.userId))) throw unauthorized();
    return principal;
  }

  async user(id: UserId): Promise<User> {
    const user = await this.tenants.findUser(id);
    if (!user) throw unauthorized();
    return user;
  }

  userByEmail(email: string): Promise<User | null> {
    return this.tenants.findUserByEmail(email);
  }
}
