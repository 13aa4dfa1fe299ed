import { createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto';
import { ErrorCode, OtaError, unauthorized } from '../errors';
import type { TenantId, UserId } from '../ids';
import type { Authority, User } from '../store/tenants';

const scrypt = (password: BinaryLike, salt: BinaryLike, keylen: number, options: ScryptOptions): Promise<Buffer> =>
  new Promise((resolve, reject) => scryptCb(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));

const SCRYPT = { N: 16384, r: 8, p: 1 } as const;

/** `scrypt$N$r$p$salt$hash`, base64url parts: the parameters travel with the hash. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 32, SCRYPT);
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64url');
  const key = await scrypt(password, Buffer.from(salt, 'base64url'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return timingSafeEqual(key, expected);
}

/** A password for the first admin when none is configured: printed once, never stored in clear. */
export const generatePassword = (): string => randomBytes(12).toString('base64url');

export interface JwtClaims {
  sub: string;
  userId: UserId;
  tenantId: TenantId;
  scopes: string[];
  iss: string;
  iat: number;
  exp: number;
  jti: string;
}

/** ThingsBoard's JwtPair. `scope` is set only during two-factor authentication, which we do not have. */
export interface TokenPair {
  token: string;
  refreshToken: string;
  scope: null;
}

export interface Principal {
  userId: UserId;
  tenantId: TenantId;
  email: string;
  authority: Authority;
}

/**
 * HS256 JSON Web Tokens shaped like ThingsBoard's (claims `sub`, `userId`, `tenantId`, `scopes`),
 * so scripts that decode the token find what they expect. Refresh tokens carry the scope
 * `REFRESH_TOKEN` and are refused as access tokens.
 */
export class TokenService {
  constructor(
    private readonly secret: Buffer,
    private readonly accessTtlSeconds = 9000,
    private readonly refreshTtlSeconds = 604800,
  ) {}

  issue(user: User): TokenPair {
    const now = Math.floor(Date.now() / 1000);
    const base = { sub: user.email, userId: user.id, tenantId: user.tenantId, iss: 'thingsboard.io', iat: now };
    return {
      token: this.sign({ ...base, scopes: [user.authority], exp: now + this.accessTtlSeconds, jti: randomBytes(8).toString('hex') }),
      refreshToken: this.sign({ ...base, scopes: ['REFRESH_TOKEN'], exp: now + this.refreshTtlSeconds, jti: randomBytes(8).toString('hex') }),
      scope: null,
    };
  }

  /** The principal of a valid access token; 401 with ThingsBoard's codes otherwise. */
  verifyAccess(token: string): Principal {
    const claims = this.verify(token);
    const authority = claims.scopes.find((s) => s !== 'REFRESH_TOKEN');
    if (!authority) throw unauthorized('Invalid JWT token: the refresh token is not an access token');
    return { userId: claims.userId, tenantId: claims.tenantId, email: claims.sub, authority: authority as Authority };
  }

  /** The user id a refresh token was issued for. */
  verifyRefresh(token: string): UserId {
    const claims = this.verify(token);
    if (!claims.scopes.includes('REFRESH_TOKEN')) throw unauthorized('Invalid refresh token');
    return claims.userId;
  }

  private sign(claims: JwtClaims): string {
    const head = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const body = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return `${head}.${body}.${this.mac(`${head}.${body}`)}`;
  }

  private verify(token: string): JwtClaims {
    const parts = token.split('.');
    // ThingsBoard's JwtTokenFactory answers a bad signature like an expired token (code 11) and a
    // malformed token like bad credentials; clients react to those codes, so we keep both.
    const malformed = (): OtaError => unauthorized('Invalid username or password');
    const expired = (): OtaError => new OtaError(401, 'Token has expired', ErrorCode.JWT_TOKEN_EXPIRED);
    if (parts.length !== 3) throw malformed();
    const [head, body, mac] = parts as [string, string, string];
    let claims: JwtClaims;
    try {
      claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as JwtClaims;
    } catch {
      throw malformed();
    }
    const expected = Buffer.from(this.mac(`${head}.${body}`));
    const given = Buffer.from(mac);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw expired();
    if (typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now()) throw expired();
    if (!Array.isArray(claims.scopes) || typeof claims.userId !== 'string' || typeof claims.tenantId !== 'string') throw malformed();
    return claims;
  }

  private mac(data: string): string {
    return createHmac('sha256', this.secret).update(data).digest('base64url');
  }
}
