import { newId, type DeviceProfileId, type TenantId } from '../../server/ids';
import type { Device } from '../../server/store/devices';

/**
 * A device row for tests that write the store directly: named `d-<id>` with token `t-<id>`, no
 * package of its own, created at time 1, unless `over` says otherwise.
 */
export function deviceRow(tenantId: TenantId, deviceProfileId: DeviceProfileId, over: Partial<Device> = {}): Device {
  const id = over.id ?? newId<'DEVICE'>();
  return {
    id,
    tenantId,
    name: `d-${id}`,
    label: null,
    deviceProfileId,
    firmwareId: null,
    softwareId: null,
    accessToken: `t-${id}`,
    credentialsType: 'ACCESS_TOKEN',
    credentialsValue: null,
    credentialsId: newId<'DEVICE_CREDENTIALS'>(),
    createdTime: 1,
    version: 1,
    extra: {},
    ...over,
  };
}
