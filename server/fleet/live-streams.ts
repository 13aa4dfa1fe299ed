import { tooManyRequests } from '../errors';
import type { UserId } from '../ids';
import { numberFromEnv } from './env-number';
import { LiveOutbox, type EventSink } from './live-outbox';

export interface LiveStreamSettings {
  /** Devices a stream keeps for a client that does not read, before it tells the page to reload: `OTA_DASHBOARD_STREAM_BACKLOG`. */
  maxBacklog: number;
  /** Streams (and waiting tickets) one user may hold at once: `OTA_DASHBOARD_STREAMS_PER_USER`. */
  perUser: number;
}

/** A backlog as large as the rows one `devices` event carries (WATCH_DEFAULTS.maxRows); a user's browser tabs, and a few half-closed connections. */
export const LIVE_STREAM_DEFAULTS: LiveStreamSettings = { maxBacklog: 200, perUser: 10 };

/** `OTA_DASHBOARD_STREAM_BACKLOG` (1..100,000) and `OTA_DASHBOARD_STREAMS_PER_USER` (1..1,000); unset means the default, anything else is refused. */
export function liveStreamSettingsFromEnv(env: NodeJS.ProcessEnv): LiveStreamSettings {
  return {
    maxBacklog: numberFromEnv(env, 'OTA_DASHBOARD_STREAM_BACKLOG', { min: 1, max: 100_000, fallback: LIVE_STREAM_DEFAULTS.maxBacklog, unit: 'devices' }),
    perUser: numberFromEnv(env, 'OTA_DASHBOARD_STREAMS_PER_USER', { min: 1, max: 1000, fallback: LIVE_STREAM_DEFAULTS.perUser, unit: 'streams' }),
  };
}

/** The dashboard's open live streams, per user: capped, and what they hold for clients that do not read. */
export class LiveStreams {
  private readonly byUser = new Map<UserId, Set<LiveOutbox>>();

  constructor(readonly settings: LiveStreamSettings) {}

  /** Refuses (429) a user who holds as many as allowed; `held` counts what else the user holds (waiting tickets). */
  checkRoom(userId: UserId, held = 0): void {
    const open = this.byUser.get(userId)?.size ?? 0;
    if (open + held >= this.settings.perUser) {
      throw tooManyRequests(`A user may hold at most ${this.settings.perUser} dashboard live streams at once (OTA_DASHBOARD_STREAMS_PER_USER); close one first`);
    }
  }

  /** A new stream of the user, writing to `sink`; refused (429) past the cap. */
  open(userId: UserId, sink: EventSink): LiveOutbox {
    this.checkRoom(userId);
    const outbox = new LiveOutbox(sink, this.settings.maxBacklog);
    let set = this.byUser.get(userId);
    if (!set) this.byUser.set(userId, (set = new Set()));
    set.add(outbox);
    return outbox;
  }

  close(userId: UserId, outbox: LiveOutbox): void {
    outbox.close();
    const set = this.byUser.get(userId);
    set?.delete(outbox);
    if (set?.size === 0) this.byUser.delete(userId);
  }

  /** Bytes the sockets have not taken, and devices waiting in the outboxes, over every stream. */
  backlog(): { bytes: number; devices: number } {
    let bytes = 0;
    let devices = 0;
    for (const set of this.byUser.values()) {
      for (const o of set) {
        bytes += o.bufferedBytes;
        devices += o.pendingDevices;
      }
    }
    return { bytes, devices };
  }
}
