/**
 * ThingsBoard's error vocabulary. Every failure the admin API reports is one of these, rendered as
 * ThingsBoard's JSON `{status, message, errorCode, timestamp}` (reference §7.4).
 */
export const ErrorCode = {
  GENERAL: 2,
  AUTHENTICATION: 10,
  JWT_TOKEN_EXPIRED: 11,
  CREDENTIALS_EXPIRED: 15,
  PERMISSION_DENIED: 20,
  INVALID_ARGUMENTS: 30,
  BAD_REQUEST_PARAMS: 31,
  ITEM_NOT_FOUND: 32,
  TOO_MANY_REQUESTS: 33,
  TOO_MANY_UPDATES: 34,
  VERSION_CONFLICT: 35,
  SUBSCRIPTION_VIOLATION: 40,
  ENTITIES_LIMIT_EXCEEDED: 41,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class OtaError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errorCode: ErrorCode,
  ) {
    super(message);
    this.name = 'OtaError';
  }

  toJSON(): { status: number; message: string; errorCode: number; timestamp: number } {
    return { status: this.status, message: this.message, errorCode: this.errorCode, timestamp: Date.now() };
  }
}

/**
 * 403 / 41: ThingsBoard's EntitiesLimitExceededException (a tenant profile's maxDevices reached),
 * answered as its ThingsboardEntitiesLimitExceededResponse: the error JSON plus entityType and limit.
 */
export class EntitiesLimitExceeded extends OtaError {
  constructor(
    readonly entityType: string,
    readonly limit: number,
    normalName: string,
  ) {
    super(403, `${normalName}s limit reached`, ErrorCode.ENTITIES_LIMIT_EXCEEDED);
  }

  override toJSON(): ReturnType<OtaError['toJSON']> & { entityType: string; limit: number } {
    return { ...super.toJSON(), entityType: this.entityType, limit: this.limit };
  }
}

/** 400 / 31: ThingsBoard's DataValidationException. */
export const invalid = (message: string): OtaError => new OtaError(400, message, ErrorCode.BAD_REQUEST_PARAMS);
/** 400 / 30: a malformed argument (bad UUID, bad enum). */
export const badArgument = (message: string): OtaError => new OtaError(400, message, ErrorCode.INVALID_ARGUMENTS);
export const notFound = (message = "Requested item wasn't found!"): OtaError => new OtaError(404, message, ErrorCode.ITEM_NOT_FOUND);
/** ThingsBoard's `checkEntityId` wording: `Ota package with id [<uuid>] is not found`. */
export const entityNotFound = (normalName: string, id: string): OtaError => notFound(`${normalName} with id [${id}] is not found`);
export const forbidden = (): OtaError => new OtaError(403, "You don't have permission to perform this operation!", ErrorCode.PERMISSION_DENIED);
export const unauthorized = (message = 'Authentication failed'): OtaError => new OtaError(401, message, ErrorCode.AUTHENTICATION);
export const tooLarge = (max: number): OtaError => new OtaError(413, `File size exceeds the maximum of ${max} bytes!`, ErrorCode.BAD_REQUEST_PARAMS);
/** 429 / 33: ThingsBoard's rate-limit answer. */
export const tooManyRequests = (message = 'Too many requests, try again later'): OtaError => new OtaError(429, message, ErrorCode.TOO_MANY_REQUESTS);
/** 507: the disk (or quota) ran out while storing; the client may retry once an admin freed space. */
export const storageFull = (): OtaError => new OtaError(507, "Not enough storage to save the request: the server's disk is full", ErrorCode.GENERAL);

/** ENOSPC or EDQUOT from the file system, SQLITE_FULL from the database. */
export function isStorageFull(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL';
}
