import type { Device } from '../store/devices';
import type { DeviceProfile } from '../store/device-profiles';
import { NULL_UUID, ref } from '../ids';
import { hasData, type OtaPackage } from '../store/ota-packages';
import type { Tenant, TenantProfile, User } from '../store/tenants';

/**
 * Our records in ThingsBoard's JSON shapes (reference §7.3): `{entityType, id}` references,
 * `createdTime` in ms, upper-case enums, and the fields we keep but do not use passed back as sent.
 */
export function packageInfoJson(p: OtaPackage): Record<string, unknown> {
  return {
    id: ref('OTA_PACKAGE', p.id),
    createdTime: p.createdTime,
    additionalInfo: p.additionalInfo,
    tenantId: ref('TENANT', p.tenantId),
    deviceProfileId: ref('DEVICE_PROFILE', p.deviceProfileId),
    type: p.type,
    title: p.title,
    version: p.version,
    tag: p.tag,
    url: p.url,
    hasData: hasData(p),
    fileName: p.fileName,
    contentType: p.contentType,
    checksumAlgorithm: p.checksumAlgorithm,
    checksum: p.checksum,
    dataSize: p.dataSize,
    externalId: p.externalId === null ? null : ref('OTA_PACKAGE', p.externalId),
    name: p.title,
    // Ours (issue 14): ThingsBoard clients ignore unknown fields.
    signature: p.signature,
    signatureAlgorithm: p.signatureAlgorithm,
  };
}

export function deviceProfileJson(p: DeviceProfile): Record<string, unknown> {
  return {
    ...p.extra,
    id: ref('DEVICE_PROFILE', p.id),
    createdTime: p.createdTime,
    tenantId: ref('TENANT', p.tenantId),
    name: p.name,
    description: p.description,
    default: p.isDefault,
    firmwareId: ref('OTA_PACKAGE', p.firmwareId),
    softwareId: ref('OTA_PACKAGE', p.softwareId),
    version: p.version,
  };
}

export function deviceJson(d: Device, profileName: string): Record<string, unknown> {
  return {
    additionalInfo: null,
    customerId: { entityType: 'CUSTOMER', id: NULL_UUID },
    externalId: null,
    deviceData: { configuration: { type: 'DEFAULT' }, transportConfiguration: { type: 'DEFAULT' } },
    ...d.extra,
    id: ref('DEVICE', d.id),
    createdTime: d.createdTime,
    tenantId: ref('TENANT', d.tenantId),
    name: d.name,
    // ThingsBoard always overwrites `type` with the profile's name.
    type: profileName,
    label: d.label,
    deviceProfileId: ref('DEVICE_PROFILE', d.deviceProfileId),
    firmwareId: ref('OTA_PACKAGE', d.firmwareId),
    softwareId: ref('OTA_PACKAGE', d.softwareId),
    version: d.version,
  };
}

export function deviceCredentialsJson(d: Device): Record<string, unknown> {
  return {
    id: { id: d.credentialsId },
    createdTime: d.createdTime,
    deviceId: ref('DEVICE', d.id),
    credentialsType: d.credentialsType ?? 'ACCESS_TOKEN',
    credentialsId: d.accessToken,
    credentialsValue: d.credentialsValue ?? null,
    version: d.version,
  };
}

export function userJson(u: User): Record<string, unknown> {
  return {
    id: ref('USER', u.id),
    createdTime: u.createdTime,
    tenantId: ref('TENANT', u.tenantId),
    customerId: { entityType: 'CUSTOMER', id: NULL_UUID },
    email: u.email,
    name: u.email,
    authority: u.authority,
    firstName: u.extra.firstName ?? null,
    lastName: u.extra.lastName ?? null,
    phone: u.extra.phone ?? null,
    version: null,
    additionalInfo: u.extra.additionalInfo ?? {},
  };
}

/** ThingsBoard's Tenant: the contact fields as sent, `name` = title. */
export function tenantJson(t: Tenant): Record<string, unknown> {
  return {
    id: ref('TENANT', t.id),
    createdTime: t.createdTime,
    title: t.title,
    name: t.title,
    region: t.extra.region ?? null,
    tenantProfileId: ref('TENANT_PROFILE', t.tenantProfileId),
    country: t.extra.country ?? null,
    state: t.extra.state ?? null,
    city: t.extra.city ?? null,
    address: t.extra.address ?? null,
    address2: t.extra.address2 ?? null,
    zip: t.extra.zip ?? null,
    phone: t.extra.phone ?? null,
    email: t.extra.email ?? null,
    additionalInfo: t.extra.additionalInfo ?? null,
    version: null,
  };
}

export function tenantProfileJson(p: TenantProfile): Record<string, unknown> {
  return {
    id: ref('TENANT_PROFILE', p.id),
    createdTime: p.createdTime,
    name: p.name,
    description: p.description,
    isolatedTbRuleEngine: false,
    default: p.isDefault,
    profileData: p.profileData,
    version: null,
  };
}
