import type { PageData } from '../store/sqlite/database';
import type { DeviceId, TenantId } from '../ids';
import { keyPrefix } from '../pipeline/ota-keys';
import type { OtaPackageType } from '../store/ota-packages';
import type { TelemetryRepository, TelemetryValue } from '../store/telemetry';
import type { DeviceFilter, DevicePageLink, DeviceRow, FleetReadModel, StateCounts } from '../store/fleet-read-model';

export {
  DEVICE_LIST_SORT,
  STATE_FILTERS,
  emptyCounts,
  type DeviceFilter,
  type DeviceListSort,
  type DeviceRow,
  type SlotInfo,
  type StateCounts,
  type StateFilter,
} from '../store/fleet-read-model';

/** One point of a device's timeline: what changed at `ts` for one type. */
export interface TimelineEvent {
  ts: number;
  type: OtaPackageType;
  state?: string;
  error?: string;
  current?: { title?: string; version?: string };
  target?: { title?: string; version?: string };
}

const str = (v: TelemetryValue | undefined): string | undefined => (v === undefined || v === null ? undefined : typeof v === 'string' ? v : JSON.stringify(v));

/**
 * The dashboard's view of the fleet: the device list and the state distribution from the store's
 * read model, and a device's timeline from its telemetry history. Every query is scoped by tenant.
 */
export class FleetView {
  constructor(
    private readonly fleet: FleetReadModel,
    private readonly telemetry: TelemetryRepository,
  ) {}

  page(tenantId: TenantId, filter: DeviceFilter, link: DevicePageLink): Promise<PageData<DeviceRow>> {
    return this.fleet.devicePage(tenantId, filter, link);
  }

  /** The rows of these devices that belong to the tenant (deleted or foreign ones are left out). */
  rows(tenantId: TenantId, ids: readonly string[]): Promise<DeviceRow[]> {
    return this.fleet.deviceRows(tenantId, ids);
  }

  async row(tenantId: TenantId, id: string): Promise<DeviceRow | null> {
    return (await this.fleet.deviceRows(tenantId, [id]))[0] ?? null;
  }

  /**
   * A device's update story from the telemetry history: states, errors, what it ran and what it
   * was sent, oldest first; the newest `limit` points per key.
   */
  async timeline(deviceId: DeviceId, types: readonly OtaPackageType[], limit: number, endTs: number): Promise<TimelineEvent[]> {
    const events: TimelineEvent[] = [];
    for (const type of types) {
      const p = keyPrefix(type);
      const keys = [`${p}_state`, `${p}_error`, `current_${p}_title`, `current_${p}_version`, `target_${p}_title`, `target_${p}_version`];
      const history = await this.telemetry.history(deviceId, keys, { startTs: 0, endTs, limit, order: 'DESC' });
      // Each state is an event of its own, even two in one millisecond (QUEUED and INITIATED can be).
      // The other keys join a state of their timestamp: a target the QUEUED it was written with, an
      // error the FAILED, versions the last state reported.
      const own: TimelineEvent[] = [];
      const at = new Map<number, TimelineEvent[]>();
      for (const point of [...(history[`${p}_state`] ?? [])].reverse()) {
        const state = str(point.value);
        if (!state) continue;
        const ev: TimelineEvent = { ts: point.ts, type, state };
        own.push(ev);
        at.set(point.ts, [...(at.get(point.ts) ?? []), ev]);
      }
      const joinFor = (ts: number, prefer: string | null): TimelineEvent => {
        const same = at.get(ts);
        if (!same) {
          const ev: TimelineEvent = { ts, type };
          own.push(ev);
          at.set(ts, [ev]);
          return ev;
        }
        return same.find((e) => e.state === prefer) ?? (same[same.length - 1] as TimelineEvent);
      };
      for (const key of keys.slice(1)) {
        for (const point of [...(history[key] ?? [])].reverse()) {
          const value = str(point.value);
          if (value === undefined || value === '') continue; // ThingsBoard's SDK sends `fw_error: ""` with every state
          const field = key.endsWith('_title') ? 'title' : 'version';
          if (key === `${p}_error`) joinFor(point.ts, 'FAILED').error = value;
          else if (key.startsWith('current_')) {
            const ev = joinFor(point.ts, null);
            ev.current = { ...ev.current, [field]: value };
          } else {
            const ev = joinFor(point.ts, 'QUEUED');
            ev.target = { ...ev.target, [field]: value };
          }
        }
      }
      events.push(...own);
    }
    // A stable sort: states of one millisecond keep the order they were written in.
    return events.sort((a, b) => a.ts - b.ts);
  }

  /** How many targeted devices are in each state, per type. */
  distribution(tenantId: TenantId): Promise<Record<OtaPackageType, StateCounts>> {
    return this.fleet.distribution(tenantId);
  }
}
