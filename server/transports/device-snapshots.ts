import type { EngineEventMap } from '../events';
import type { DeviceId, DeviceProfileId, TenantId } from '../ids';
import type { DeviceProfile } from '../store/device-profiles';
import type { Device } from '../store/devices';
import { credentialsChanged } from '../devices/device-revocations';
import type { DeviceContext } from './device-context';

/** What a transport's open sessions (MQTT connections, CoAP observations, LwM2M registrations) hold of devices and profiles. */
export interface SessionSnapshots {
  /** Whether a session here holds this device. */
  holds(deviceId: DeviceId): boolean;
  /** Whether a session here holds a device of this profile. */
  holdsProfile(tenantId: TenantId, profileId: DeviceProfileId): boolean;
  /** The device as saved now; `profile` is its profile as it is now, or undefined when the device kept the one its sessions hold. */
  deviceChanged(device: Device, profile?: DeviceProfile | null): void;
  profileChanged(profile: DeviceProfile): void;
  /** The device was deleted or given other credentials: its sessions end, as on `deviceRevoked`. */
  revoked(deviceId: DeviceId, reason: 'device-deleted' | 'credentials-changed'): void;
}

/**
 * A session being opened: made before it reads its device and profile, ended once it is held
 * (`holds` answers true for it) or refused. A change heard in between reached no session (`holds`
 * did not know it yet) though the session may have read the row before it: the row is read again
 * then and applied, or the session ends if its device is gone or re-keyed.
 */
export interface SessionOpening {
  /** `held`: the device as the session read it, now held; null: not opened after all. Once only. */
  end(held: Device | null): void;
}

export interface SnapshotFollower {
  opening(): SessionOpening;
  stop(): void;
}

/** Versions remembered to drop a read that lost a race with a newer save; cleared past this many. */
const MAX_VERSIONS = 10_000;

/**
 * Keeps what open sessions hold of their device and its profile as the store has it (issue 9): a
 * device renamed or moved to another profile, a profile given another payload type or schemas,
 * whether saved through this instance (`deviceSaved`, `deviceProfileSaved`) or through another
 * sharing the store (`deviceChangedElsewhere`, `deviceProfileChangedElsewhere`, heard on the
 * cluster bus within milliseconds). A change made elsewhere is read again from the store, only
 * when a session here holds it. A save that replaced credentials is left to the revocation that
 * ends its sessions; a read that returns an older version than one already applied (two saves
 * racing) is dropped. Sessions being opened meanwhile: `opening()`.
 */
export function followDeviceSnapshots(
  ctx: Pick<DeviceContext, 'events' | 'devices' | 'profiles' | 'lookups' | 'logger'>,
  sessions: SessionSnapshots,
  transport: string,
): SnapshotFollower {
  const newest = new Map<string, number>();
  /** Whether `version` of `key` is at least the newest applied, remembering it when so. */
  const fresh = (key: string, version: number): boolean => {
    if ((newest.get(key) ?? -1) > version) return false;
    if (newest.size >= MAX_VERSIONS) newest.clear();
    newest.set(key, version);
    return true;
  };
  const failed = (what: string) => (err: Error) => ctx.logger.warn(`${transport}: cannot read ${what} changed on another instance: ${err.message}`);
  const applyDevice = (device: Device, profile?: DeviceProfile | null): void => {
    if (fresh(`d/${device.id}`, device.version)) sessions.deviceChanged(device, profile);
  };
  const applyProfile = (profile: DeviceProfile): void => {
    if (fresh(`p/${profile.id}`, profile.version)) sessions.profileChanged(profile);
  };

  const onDeviceSaved = ({ before, after }: EngineEventMap['deviceSaved'][0]): void => {
    if (!before || credentialsChanged(before, after) || !sessions.holds(after.id)) return;
    if (before.deviceProfileId === after.deviceProfileId) return applyDevice(after);
    // Another profile: its payload type may differ. Read through the cache (a profile saved here is already forgotten there).
    ctx.lookups
      .profileOf(after.tenantId, after.deviceProfileId)
      .then((profile) => applyDevice(after, profile))
      .catch(failed(`the profile of device ${after.id}`));
  };
  const onProfileSaved = ({ before, after }: EngineEventMap['deviceProfileSaved'][0]): void => {
    if (before && sessions.holdsProfile(after.tenantId, after.id)) applyProfile(after);
  };
  // Changes made elsewhere are read from the store itself: this instance's caches may not have heard yet.
  const onDeviceElsewhere = ({ tenantId, deviceId }: EngineEventMap['deviceChangedElsewhere'][0]): void => {
    if (!sessions.holds(deviceId)) return;
    void (async () => {
      const device = await ctx.devices.findById(tenantId, deviceId);
      // Deleted meanwhile: its revocation ends the sessions.
      if (!device) return;
      applyDevice(device, await ctx.profiles.findById(tenantId, device.deviceProfileId));
    })().catch(failed(`device ${deviceId}`));
  };
  const onProfileElsewhere = ({ tenantId, profileId }: EngineEventMap['deviceProfileChangedElsewhere'][0]): void => {
    if (!sessions.holdsProfile(tenantId, profileId)) return;
    ctx.profiles
      .findById(tenantId, profileId)
      .then((profile) => profile && applyProfile(profile))
      .catch(failed(`device profile ${profileId}`));
  };

  // Changes heard while sessions are being opened, numbered; forgotten once none is. Past
  // MAX_VERSIONS of them the oldest are forgotten too, and a session opened before then reads again.
  let opening = 0;
  let heardLast = 0;
  let forgottenUpTo = 0;
  const heard = new Map<string, number>();
  const hear = (key: string): void => {
    if (opening === 0) return;
    if (heard.size >= MAX_VERSIONS) {
      heard.clear();
      forgottenUpTo = heardLast;
    }
    heard.set(key, ++heardLast);
  };
  const heardSince = (mark: number, device: Device): boolean =>
    mark < forgottenUpTo || (heard.get(`d/${device.id}`) ?? 0) > mark || (heard.get(`p/${device.deviceProfileId}`) ?? 0) > mark;
  const readAgain = (held: Device): void => {
    void (async () => {
      const device = await ctx.devices.findById(held.tenantId, held.id);
      if (!device) return sessions.revoked(held.id, 'device-deleted');
      if (credentialsChanged(held, device)) return sessions.revoked(held.id, 'credentials-changed');
      applyDevice(device, await ctx.profiles.findById(device.tenantId, device.deviceProfileId));
    })().catch(failed(`device ${held.id}`));
  };

  // Observed, not listened to: see EngineEvents.observe.
  const unobserve = ctx.events.observe((name, ...args) => {
    if (name === 'deviceSaved') {
      const e = args[0] as EngineEventMap['deviceSaved'][0];
      hear(`d/${e.after.id}`);
      onDeviceSaved(e);
    } else if (name === 'deviceProfileSaved') {
      const e = args[0] as EngineEventMap['deviceProfileSaved'][0];
      hear(`p/${e.after.id}`);
      onProfileSaved(e);
    } else if (name === 'deviceChangedElsewhere') {
      const e = args[0] as EngineEventMap['deviceChangedElsewhere'][0];
      hear(`d/${e.deviceId}`);
      onDeviceElsewhere(e);
    } else if (name === 'deviceProfileChangedElsewhere') {
      const e = args[0] as EngineEventMap['deviceProfileChangedElsewhere'][0];
      hear(`p/${e.profileId}`);
      onProfileElsewhere(e);
    } else if (name === 'deviceDeleted') hear(`d/${(args[0] as EngineEventMap['deviceDeleted'][0]).device.id}`);
    else if (name === 'deviceRevoked') hear(`d/${(args[0] as EngineEventMap['deviceRevoked'][0]).deviceId}`);
  });
  return {
    opening() {
      opening += 1;
      const mark = heardLast;
      let ended = false;
      return {
        end(held) {
          if (ended) return;
          ended = true;
          opening -= 1;
          if (held && heardSince(mark, held)) readAgain(held);
          if (opening === 0) {
            heard.clear();
            forgottenUpTo = heardLast;
          }
        },
      };
    },
    stop: unobserve,
  };
}
