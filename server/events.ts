import { EventEmitter } from 'node:events';
import type { Device } from './devices';
import type { DeviceProfile } from './device-profiles';
import type { OtaPackage } from './ota-packages';

/**
 * What changed in the store, for whoever reacts to it (assignment, the ota-assign node, the
 * dashboard). Emitted after the change is committed.
 */
export interface EngineEventMap {
  deviceSaved: [{ before: Device | null; after: Device }];
  deviceDeleted: [{ device: Device }];
  deviceProfileSaved: [{ before: DeviceProfile | null; after: DeviceProfile }];
  deviceProfileDeleted: [{ profile: DeviceProfile }];
  packageSaved: [{ before: OtaPackage | null; after: OtaPackage }];
  packageDeleted: [{ pkg: OtaPackage }];
}

export class EngineEvents extends EventEmitter<EngineEventMap> {}
