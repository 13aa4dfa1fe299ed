import type { ClusterBus } from '../store/cluster-bus';
import type { EngineEventMap, EngineEvents } from '../events';
import type { DeviceId, DeviceProfileId, TenantId } from '../ids';
import type { Logger } from '../logger';
import { credentialsChanged } from './device-revocations';

/** The cluster bus topic of devices and profiles saved on one instance, for the sessions on the others. */
export const DEVICE_CHANGES_TOPIC = 'device-changed';

/** What goes on the bus: ids only (a device row holds its credentials); the others read the row. */
export type DeviceChange = { tenantId: TenantId; deviceId: DeviceId } | { tenantId: TenantId; profileId: DeviceProfileId };

/**
 * Several instances (issue 9): a session holds what it read of its device and profile at connect
 * (the name the flow sees, the profile's payload type and protobuf schemas). A device or profile
 * saved through this instance is told to the others on the cluster bus; each hears it as
 * `deviceChangedElsewhere` / `deviceProfileChangedElsewhere`, and its transports read the row
 * again for the sessions that hold it (transports/device-snapshots.ts). New devices have no
 * sessions yet, and new credentials end them (`relayRevocations`): neither is sent. The changes of
 * one tick go in one publish. Answers the unhook.
 */
export function relayDeviceChanges(events: EngineEvents, bus: ClusterBus, logger: Pick<Logger, 'warn'>): () => void {
  let outbox: DeviceChange[] = [];
  const send = (c: DeviceChange): void => {
    if (outbox.push(c) > 1) return;
    queueMicrotask(() => {
      const batch = outbox;
      outbox = [];
      bus
        .publish(DEVICE_CHANGES_TOPIC, batch)
        .catch((err: Error) => logger.warn(`cannot tell the other instances of ${batch.length} changed device(s) or profile(s): ${err.message}`));
    });
  };
  // Observed, not listened to: see EngineEvents.observe.
  const unobserve = events.observe((name, ...args) => {
    if (name === 'deviceSaved') {
      const { before, after } = args[0] as EngineEventMap['deviceSaved'][0];
      if (before && !credentialsChanged(before, after)) send({ tenantId: after.tenantId, deviceId: after.id });
    } else if (name === 'deviceProfileSaved') {
      const { before, after } = args[0] as EngineEventMap['deviceProfileSaved'][0];
      if (before) send({ tenantId: after.tenantId, profileId: after.id });
    }
  });
  const unsubscribe = bus.subscribe(DEVICE_CHANGES_TOPIC, (payload) => {
    const c = asChange(payload);
    if (!c) logger.warn('ignored a malformed device change from the cluster bus');
    else if ('deviceId' in c) events.emit('deviceChangedElsewhere', c);
    else events.emit('deviceProfileChangedElsewhere', c);
  });
  return () => {
    unobserve();
    unsubscribe();
  };
}

function asChange(payload: unknown): DeviceChange | null {
  if (!payload || typeof payload !== 'object') return null;
  const { tenantId, deviceId, profileId } = payload as Record<string, unknown>;
  if (typeof tenantId !== 'string') return null;
  if (typeof deviceId === 'string') return { tenantId: tenantId as TenantId, deviceId: deviceId as DeviceId };
  if (typeof profileId === 'string') return { tenantId: tenantId as TenantId, profileId: profileId as DeviceProfileId };
  return null;
}
