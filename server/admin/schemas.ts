import Ajv, { type ErrorObject, type JSONSchemaType, type ValidateFunction } from 'ajv';
import { CHECKSUM_ALGORITHMS } from '../packages/checksum';
import { badArgument, invalid } from '../errors';
import type { PageLink } from '../store/sqlite/database';

/**
 * Request bodies and queries are checked against these schemas before anything touches the store.
 * They check what we use (types, enums, id shapes); ThingsBoard's own rules and messages
 * (required title, unique names, ...) stay in the services.
 */
const ajv = new Ajv({ allErrors: false, coerceTypes: false, useDefaults: false });

/** A UUID, as ids are written in paths, queries and entity references (any case). */
export const uuid = { type: 'string', pattern: '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' } as const;
const entityRef = {
  anyOf: [{ type: 'null' }, { type: 'object', properties: { id: uuid, entityType: { type: 'string' } }, required: ['id'] }],
} as const;
const nullableString = { type: ['string', 'null'] } as const;

export const schemas = {
  login: {
    type: 'object',
    properties: { username: { type: 'string', minLength: 1, maxLength: 1024 }, password: { type: 'string', minLength: 1, maxLength: 4096 } },
    required: ['username', 'password'],
  },
  refresh: { type: 'object', properties: { refreshToken: { type: 'string', minLength: 1 } }, required: ['refreshToken'] },
  packageInfo: {
    type: 'object',
    properties: {
      id: entityRef,
      deviceProfileId: entityRef,
      type: { enum: ['FIRMWARE', 'SOFTWARE', null] },
      title: nullableString,
      version: nullableString,
      tag: nullableString,
      url: nullableString,
      usesUrl: { type: ['boolean', 'null'] },
      fileName: nullableString,
      contentType: nullableString,
      checksumAlgorithm: { enum: [...CHECKSUM_ALGORITHMS, null] },
      checksum: nullableString,
      dataSize: { type: ['integer', 'null'], minimum: 0 },
      additionalInfo: { type: ['object', 'null'] },
      externalId: entityRef,
    },
  },
  deviceProfile: {
    type: 'object',
    properties: {
      id: entityRef,
      name: nullableString,
      description: nullableString,
      default: { type: ['boolean', 'null'] },
      firmwareId: entityRef,
      softwareId: entityRef,
    },
  },
  device: {
    type: 'object',
    properties: {
      id: entityRef,
      name: nullableString,
      label: nullableString,
      type: nullableString,
      deviceProfileId: entityRef,
      firmwareId: entityRef,
      softwareId: entityRef,
    },
  },
  // ThingsBoard's Tenant: the contact fields are strings or null; additionalInfo any JSON.
  tenant: {
    type: 'object',
    properties: {
      id: entityRef,
      title: nullableString,
      tenantProfileId: entityRef,
      region: nullableString,
      country: nullableString,
      state: nullableString,
      city: nullableString,
      address: nullableString,
      address2: nullableString,
      zip: nullableString,
      phone: nullableString,
      email: nullableString,
    },
  },
  user: {
    type: 'object',
    properties: {
      id: entityRef,
      tenantId: entityRef,
      customerId: entityRef,
      email: { type: ['string', 'null'], maxLength: 255 },
      authority: nullableString,
      firstName: nullableString,
      lastName: nullableString,
      phone: nullableString,
    },
  },
  activate: {
    type: 'object',
    properties: { activateToken: { type: 'string', minLength: 1, maxLength: 255 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
    required: ['activateToken', 'password'],
  },
  resetPassword: {
    type: 'object',
    properties: { resetToken: { type: 'string', minLength: 1, maxLength: 255 }, password: { type: 'string', minLength: 1, maxLength: 1024 } },
    required: ['resetToken', 'password'],
  },
  changePassword: {
    type: 'object',
    properties: { currentPassword: { type: 'string', minLength: 1 }, newPassword: { type: 'string', minLength: 1, maxLength: 1024 } },
    required: ['currentPassword', 'newPassword'],
  },
  deviceCredentials: {
    type: 'object',
    properties: {
      deviceId: { type: 'object', properties: { id: uuid }, required: ['id'] },
      credentialsType: { type: ['string', 'null'] },
      credentialsId: { type: ['string', 'null'] },
      credentialsValue: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'null' }] },
    },
    required: ['deviceId'],
  },
  credentials: {
    type: 'object',
    properties: {
      credentialsType: { type: ['string', 'null'] },
      credentialsId: { type: ['string', 'null'] },
      credentialsValue: { anyOf: [{ type: 'string' }, { type: 'object' }, { type: 'null' }] },
    },
  },
  deviceWithCredentials: {
    type: 'object',
    properties: {
      device: { type: 'object' },
      credentials: { type: 'object' },
    },
    required: ['device', 'credentials'],
  },
} as const;

const compiled = new Map<object, ValidateFunction>();

function describe(e: ErrorObject | undefined): string {
  if (!e) return 'invalid';
  const where = e.instancePath ? e.instancePath.slice(1).replace(/\//g, '.') : 'body';
  return `${where} ${e.message ?? 'is invalid'}`;
}

/** The body if it fits `schema`; otherwise 400 with where and why. */
export function validateBody<T>(schema: object, body: unknown): T {
  let check = compiled.get(schema);
  if (!check) {
    check = ajv.compile(schema);
    compiled.set(schema, check);
  }
  if (!check(body)) throw invalid(`Invalid request body: ${describe(check.errors?.[0])}`);
  return body as T;
}

const pageQuerySchema: JSONSchemaType<{ pageSize: string; page: string }> = {
  type: 'object',
  properties: { pageSize: { type: 'string', pattern: '^[0-9]+$' }, page: { type: 'string', pattern: '^[0-9]+$' } },
  required: ['pageSize', 'page'],
};
const checkPageQuery = ajv.compile(pageQuerySchema);

/** ThingsBoard's page parameters: `pageSize` and `page` required, sort property from a fixed list. */
export function parsePageLink(query: Record<string, unknown>, sortProperties: readonly string[]): PageLink {
  for (const name of ['pageSize', 'page']) {
    if (query[name] === undefined) throw invalid(`Required request parameter '${name}' for method parameter type int is not present`);
  }
  if (!checkPageQuery({ pageSize: query.pageSize, page: query.page })) throw badArgument(`Invalid page parameters: ${describe(checkPageQuery.errors?.[0])}`);
  const pageSize = Number(query.pageSize);
  const pageNumber = Number(query.page);
  // ThingsBoard reads both as Java ints: past 2^31-1 is a conversion error (400), not a query.
  for (const [name, n] of [
    ['pageSize', pageSize],
    ['page', pageNumber],
  ] as const) {
    if (n > 0x7fffffff) throw invalid(`Failed to convert value of type 'java.lang.String' to required type 'int'; For input string: "${String(query[name])}"`);
  }
  if (pageSize < 1) throw invalid('Page size should be greater than 0!');
  const link: PageLink = { pageSize: Math.min(pageSize, 10_000), page: pageNumber };
  if (typeof query.textSearch === 'string' && query.textSearch !== '') link.textSearch = query.textSearch;
  if (typeof query.sortProperty === 'string' && query.sortProperty !== '') {
    if (!sortProperties.includes(query.sortProperty)) throw invalid('Invalid sort property');
    link.sortProperty = query.sortProperty;
  }
  if (typeof query.sortOrder === 'string' && query.sortOrder !== '') {
    const order = query.sortOrder.toUpperCase();
    if (order !== 'ASC' && order !== 'DESC') throw invalid(`Unsupported sort order '${query.sortOrder}'! Only 'ASC' or 'DESC' types are allowed.`);
    link.sortOrder = order;
  }
  return link;
}
