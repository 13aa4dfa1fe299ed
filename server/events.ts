import { EventEmitter } from 'node:events';
import type { DeviceId, DeviceProfileId, TenantId } from './ids';
import type { Device } from './store/devices';
import type { DeviceProfile } from './store/device-profiles';
import type { AssignmentEvent } from './pipeline/notify-queue';
import type { Notification } from './pipeline/notifier';
import type { OtaPackage } from './store/ota-packages';
import type { UplinkEvent } from './pipeline/uplink';
import type { StateChange } from './pipeline/state-tracker';

/**
 * What changed in the store, for whoever reacts to it (assignment, the ota-assign node, the
 * dashboard). Emitted after the change is committed.
 */
export interface EngineEventMap {
  deviceSaved: [{ before: Device | null; after: Device }];
  deviceDeleted: [{ device: Device }];
  /**
   * A device was deleted or given new credentials on another instance sharing the store (heard on
   * the cluster bus): its sessions here (MQTT, CoAP observations, HTTP long polls) end as they would
   * for a local `deviceDeleted` or re-keying `deviceSaved`.
   */
  deviceRevoked: [DeviceRevocation];
  /**
   * A device was saved on another instance sharing the store (its name, label, profile or packages;
   * not its credentials: that is `deviceRevoked`), heard on the cluster bus: sessions here that hold
   * it read it again (device-changes.ts).
   */
  deviceChangedElsewhere: [{ tenantId: TenantId; deviceId: DeviceId }];
  deviceProfileSaved: [{ before: DeviceProfile | null; after: DeviceProfile }];
  /** A device profile was saved on another instance (its payload type, schemas, packages): as `deviceChangedElsewhere`. */
  deviceProfileChangedElsewhere: [{ tenantId: TenantId; profileId: DeviceProfileId }];
  deviceProfileDeleted: [{ profile: DeviceProfile }];
  packageSaved: [{ before: OtaPackage | null; after: OtaPackage }];
  packageDeleted: [{ pkg: OtaPackage }];
  /** A device's effective package changed (one event per device and type); `packageId: null` unassigns. */
  assignment: [AssignmentEvent];
  /** Something a device sent: telemetry, attributes, a download. */
  uplink: [UplinkEvent];
  /** A device's update state moved (reported, timed out, retried). */
  stateChange: [StateChange];
  /** Shared attributes changed outside the pipeline's notifications (e.g. an unassignment at once). */
  notification: [Notification];
}

/** Why a device's sessions end: it is gone, or its old credentials are. */
export interface DeviceRevocation {
  tenantId: TenantId;
  deviceId: DeviceId;
  reason: 'device-deleted' | 'credentials-changed';
}

/** Sees an event after its listeners have; see `EngineEvents.observe`. */
export type EngineObserver = <K extends keyof EngineEventMap>(name: K, ...args: EngineEventMap[K]) => void;

export class EngineEvents extends EventEmitter<EngineEventMap> {
  private readonly observers = new Set<EngineObserver>();

  /**
   * Watches every event without being a listener: the engine's own bookkeeping (the dashboard's
   * live updates, /metrics) must not change who takes `assignment` events (a listener there takes
   * them from the queue) nor what `listenerCount` tells about the flow's nodes. Answers the unhook.
   */
  observe(observer: EngineObserver): () => void {
    this.observers.add(observer);
    return () => {
      this.observers.delete(observer);
    };
  }

  override emit<K extends keyof EngineEventMap>(name: K, ...args: EngineEventMap[K]): boolean {
    const heard = (super.emit as (name: K, ...args: EngineEventMap[K]) => boolean)(name, ...args);
    for (const observer of this.observers) observer(name, ...args);
    return heard;
  }
}
