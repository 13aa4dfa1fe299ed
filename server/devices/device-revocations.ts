import type { ClusterBus } from '../store/cluster-bus';
import type { DeviceRevocation, EngineEventMap, EngineEvents } from '../events';
import type { DeviceId, TenantId } from '../ids';
import type { Logger } from '../logger';
import type { Device } from '../store/devices';

/** The cluster bus topic of devices deleted or re-keyed on one instance, for the sessions on the others. */
const REVOCATION_TOPIC = 'device-revoked';

/** Whether a save replaced the credentials a session was opened with (token, MQTT basic password, certificate). */
export function credentialsChanged(before: Device, after: Device): boolean {
  return (
    before.accessToken !== after.accessToken ||
    (before.credentialsType ?? 'ACCESS_TOKEN') !== (after.credentialsType ?? 'ACCESS_TOKEN') ||
    before.credentialsValue !== after.credentialsValue
  );
}

/**
 * Several instances (issue 9): a device deleted or re-keyed through one instance must not keep a
 * session it opened on another (ThingsBoard closes a re-keyed device's sessions; wire reference
 * §4). Every local deletion and credentials change goes on the cluster bus; each other instance
 * hears it as `deviceRevoked` and ends its own sessions of the device. Lookups are not cached, so
 * the old token is refused everywhere as soon as the change commits; the bus ends what was already
 * open, within the time NOTIFY takes (milliseconds). Answers the unhook.
 */
export function relayRevocations(events: EngineEvents, bus: ClusterBus, logger: Pick<Logger, 'warn'>): () => void {
  const publish = (r: DeviceRevocation): void =>
    void bus.publish(REVOCATION_TOPIC, [r]).catch((err: Error) => logger.warn(`cannot tell the other instances that device ${r.deviceId} was revoked: ${err.message}`));
  // Observed, not listened to: see EngineEvents.observe.
  const unobserve = events.observe((name, ...args) => {
    if (name === 'deviceDeleted') {
      const { device } = args[0] as EngineEventMap['deviceDeleted'][0];
      publish({ tenantId: device.tenantId, deviceId: device.id, reason: 'device-deleted' });
    } else if (name === 'deviceSaved') {
      const { before, after } = args[0] as EngineEventMap['deviceSaved'][0];
      if (before && credentialsChanged(before, after)) publish({ tenantId: after.tenantId, deviceId: after.id, reason: 'credentials-changed' });
    }
  });
  const unsubscribe = bus.subscribe(REVOCATION_TOPIC, (payload) => {
    const r = asRevocation(payload);
    if (r) events.emit('deviceRevoked', r);
    else logger.warn('ignored a malformed device revocation from the cluster bus');
  });
  return () => {
    unobserve();
    unsubscribe();
  };
}

function asRevocation(payload: unknown): DeviceRevocation | null {
  if (!payload || typeof payload !== 'object') return null;
  const { tenantId, deviceId, reason } = payload as Record<string, unknown>;
  if (typeof tenantId !== 'string' || typeof deviceId !== 'string') return null;
  if (reason !== 'device-deleted' && reason !== 'credentials-changed') return null;
  return { tenantId: tenantId as TenantId, deviceId: deviceId as DeviceId, reason };
}
