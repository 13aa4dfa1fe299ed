import { randomUUID } from 'node:crypto';

/** The entity types ThingsBoard names in `{entityType, id}` references. */
export type EntityType = 'TENANT' | 'TENANT_PROFILE' | 'USER' | 'CUSTOMER' | 'DEVICE' | 'DEVICE_PROFILE' | 'OTA_PACKAGE' | 'DEVICE_CREDENTIALS';

/** Branded UUID strings, so a device id is never passed where a package id is meant. */
export type Id<T extends EntityType> = string & { readonly __entity: T };
export type TenantId = Id<'TENANT'>;
export type UserId = Id<'USER'>;
export type DeviceId = Id<'DEVICE'>;
export type DeviceProfileId = Id<'DEVICE_PROFILE'>;
export type OtaPackageId = Id<'OTA_PACKAGE'>;

export interface EntityRef<T extends EntityType = EntityType> {
  entityType: T;
  id: string;
}

export const newId = <T extends EntityType>(): Id<T> => randomUUID() as Id<T>;

export const ref = <T extends EntityType>(entityType: T, id: string | null | undefined): EntityRef<T> | null => (id ? { entityType, id } : null);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (s: unknown): s is string => typeof s === 'string' && UUID.test(s);

/** ThingsBoard's "null customer" id, which it puts on devices not assigned to a customer. */
export const NULL_UUID = '13814000-1dd2-11b2-8080-808080808080';
