import type { TenantId } from '../ids';
import type { Notification } from '../pipeline/notifier';
import type { AttributeRepository } from '../store/attributes';
import type { BlobStore } from '../store/blob-store';
import type { DeviceProfileRepository } from '../store/device-profiles';
import type { DeviceRepository } from '../store/devices';
import type { Logger } from '../logger';
import type { EngineEvents } from '../events';
import type { OtaPackageRepository } from '../store/ota-packages';
import type { TelemetryRepository } from '../store/telemetry';
import type { Transport } from '../pipeline/uplink';
import type { DeviceProvisioning } from '../devices/device-provisioning';
import type { DeviceLookups } from './device-lookups';

/**
 * What a device transport (HTTP, MQTT, CoAP, LwM2M) needs from the engine: find a device by its
 * token, its effective package and bytes, read and write its attributes and telemetry, and tell the
 * flow what devices send (`events.emit('uplink', ...)`).
 */
export interface DeviceContext {
  devices: DeviceRepository;
  profiles: DeviceProfileRepository;
  packages: OtaPackageRepository;
  blobs: BlobStore;
  attributes: AttributeRepository;
  telemetry: TelemetryRepository;
  events: EngineEvents;
  logger: Logger;
  /** Token -> device and device -> package, cached per instance for the per-request paths (device-lookups.ts). */
  lookups: DeviceLookups;
  /** Device self-provisioning (HTTP `/api/v1/provision`, MQTT user name `provision`); absent: refused. */
  provisioning?: DeviceProvisioning;
}

/** A listening device endpoint, as shown to admins (`GET /api/ota/endpoints`) and the dashboard. */
export interface EndpointInfo {
  transport: Transport;
  host: string;
  port: number;
  tls?: boolean;
  /** Devices connected (MQTT), observing (CoAP) or registered (LwM2M) right now; with a tenant, that tenant's only. */
  connections(tenantId?: TenantId): number;
  /** Sends a notification to the device's sessions here, if any (one decided on another instance); answers how many. */
  deliver?(n: Notification): number;
}
