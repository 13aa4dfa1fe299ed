import { randomBytes, scrypt as scryptCb, timingSafeEqual, type BinaryLike, type ScryptOptions } from 'node:crypto';
import type * as Jose from 'jose' with { 'resolution-mode': 'import' };
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
  /** The user's token generation when issued: raising it revokes the token (issue 10, item 3). */
  gen: number;
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
  /** The token generation the access token was issued under. */
  generation: number;
}

/** What a refresh token names: its user and the generation it was issued under. */
export interface RefreshClaims {
  userId: UserId;
  generation: number;
}

const ALGORITHM = 'HS256';
const ISSUER = 'thingsboard.io';

// jose is an ES module; loaded once, on first use, from this CommonJS build.
let josePromise: Promise<typeof Jose> | null = null;
const jose = (): Promise<typeof Jose> => (josePromise ??= import('jose'));

/**
 * HS256 JSON Web Tokens shaped like ThingsBoard's (claims `sub`, `userId`, `tenantId`, `scopes`),
 * so scripts that decode the token find what they expect, made and checked by `jose`: the header's
 * `alg` must be HS256 (no `none`, no algorithm confusion) and times are read from the injected
 * clock. Refresh tokens carry the scope `REFRESH_TOKEN` and are refused as access tokens.
 */
export class TokenService {
  constructor(
    private readonly secret: Buffer,
    private readonly accessTtlSeconds = 9000,
    private readonly refreshTtlSeconds = 604800,
    private readonly now: () => number = Date.now,
  ) {}

  async issue(user: User): Promise<TokenPair> {
    const { SignJWT } = await jose();
    const iat = Math.floor(this.now() / 1000);
    const sign = (scopes: string[], ttl: number): Promise<string> =>
      new SignJWT({ userId: user.id, tenantId: user.tenantId, scopes, gen: user.tokenGeneration })
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
        .setSubject(user.email)
        .setIssuer(ISSUER)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttl)
        .setJti(randomBytes(8).toString('hex'))
        .sign(this.secret);
    return {
      token: await sign([user.authority], this.accessTtlSeconds),
      refreshToken: await sign(['REFRESH_TOKEN'], this.refreshTtlSeconds),
      scope: null,
    };
  }

  /** The principal of a valid access token; 401 with ThingsBoard's codes otherwise. */
  async verifyAccess(token: string): Promise<Principal> {
    const claims = await this.verify(token);
    const authority = claims.scopes.find((s) => s !== 'REFRESH_TOKEN');
    if (!authority) throw unauthorized('Invalid JWT token: the refresh token is not an access token');
    return { userId: claims.userId, tenantId: claims.tenantId, email: claims.sub, authority: authority as Authority, generation: claims.gen };
  }

  /** The user a refresh token was issued for, and under which generation. */
  async verifyRefresh(token: string): Promise<RefreshClaims> {
    const claims = await this.verify(token);
    if (!claims.scopes.includes('REFRESH_TOKEN')) throw unauthorized('Invalid refresh token');
    return { userId: claims.userId, generation: claims.gen };
  }

  private async verify(token: string): Promise<JwtClaims> {
    const { jwtVerify, errors } = await jose();
    // ThingsBoard's JwtTokenFactory answers a bad signature like an expired token (code 11) and a
    // malformed token like bad credentials; clients react to those codes, so we keep both.
    const malformed = (): OtaError => unauthorized('Invalid username or password');
    const expired = (): OtaError => new OtaError(401, 'Token has expired', ErrorCode.JWT_TOKEN_EXPIRED);
    let payload: Jose.JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.secret, { algorithms: [ALGORITHM], currentDate: new Date(this.now()) }));
    } catch (err) {
      if (err instanceof errors.JWSSignatureVerificationFailed || err instanceof errors.JWTExpired) throw expired();
      throw malformed();
    }
    const claims = payload as Partial<JwtClaims>;
    // A token without `exp` never expires by jose's rules; ours always carry one.
    if (typeof claims.exp !== 'number') throw expired();
    if (!Array.isArray(claims.scopes) || typeof claims.userId !== 'string' || typeof claims.tenantId !== 'string' || typeof claims.sub !== 'string') throw malformed();
    // Tokens issued before generations existed count as generation 0.
    return { ...claims, gen: typeof claims.gen === 'number' ? claims.gen : 0 } as JwtClaims;
  }
}
