import { Counter, Gauge, Registry } from 'prom-client';
import type { FleetReadModel } from '../store/fleet-read-model';
import type { EngineEvents } from '../events';
import type { TenantId } from '../ids';
import type { Notifier } from '../pipeline/notifier';
import type { NotifyQueue } from '../pipeline/notify-queue';
import { UPDATE_STATES } from '../pipeline/ota-keys';
import { OTA_PACKAGE_TYPES } from '../store/ota-packages';
import type { Transport, UplinkEvent } from '../pipeline/uplink';
import type { RolloutDeviceCount, RolloutRepository, RolloutState } from '../store/rollouts';

const ROLLOUT_STATES: readonly RolloutState[] = ['DRAFT', 'RUNNING', 'PAUSED', 'COMPLETED', 'ABORTED', 'CANCELLED'];

const TRANSPORTS: readonly Transport[] = ['HTTP', 'MQTT', 'COAP', 'LWM2M'];
/** States a targeted device can be in, plus NONE for one that has not been queued yet. */
const DEVICE_STATES: readonly string[] = [...UPDATE_STATES, 'NONE'];

/** Which part of the HTTP API a path belongs to: a small, fixed set of label values. */
export function routeFamily(path: string): string {
  const p = path.split('?')[0] ?? '';
  if (p.startsWith('/api/v1/')) return 'device';
  if (p.startsWith('/api/auth/')) return 'auth';
  if (p.startsWith('/api/ota/')) return 'ota';
  if (p.startsWith('/api/plugins/telemetry/')) return 'telemetry';
  if (/^\/api\/otaPackages?(\/|$)/.test(p)) return 'packages';
  if (/^\/api\/deviceProfiles?(\/|$)/.test(p)) return 'profiles';
  if (/^\/api\/(device|devices|tenant\/devices)(\/|$)/.test(p)) return 'devices';
  if (p.startsWith('/api/') || p === '/api') return 'admin';
  if (p === '/dashboard' || p.startsWith('/dashboard/')) return 'dashboard';
  if (p === '/metrics') return 'metrics';
  return 'other';
}

/**
 * The engine's metrics in Prometheus' text format, in a registry of its own (two engines in one
 * process never share a series). Fleet numbers are read from the store's read model when scraped; download
 * and request counters since this engine started.
 */
export class OtaPrometheus {
  readonly registry = new Registry();
  private readonly requestErrors: Counter<'family' | 'code'>;
  private readonly unhook: () => void;

  constructor(deps: {
    fleet: FleetReadModel;
    queue: NotifyQueue;
    notifier: Notifier;
    events: EngineEvents;
    /** Streams open, and what they hold for clients that do not read (bytes in their sockets, devices waiting). */
    liveStreams: () => { open: number; bytes: number; devices: number };
    rollouts?: Pick<RolloutRepository, 'counts' | 'activeDeviceCounts'>;
  }) {
    const { fleet, queue, notifier, events } = deps;
    const registers = [this.registry];
    const tenants = (): Promise<TenantId[]> => fleet.tenantIds();

    new Gauge({
      name: 'ota_devices',
      help: 'Devices targeted by an OTA package, by tenant, package type and update state (NONE: not queued yet)',
      labelNames: ['tenant', 'type', 'state'] as const,
      registers,
      async collect() {
        const [all, totals] = await Promise.all([tenants(), fleet.stateTotals()]);
        this.reset();
        for (const tenant of all) for (const type of OTA_PACKAGE_TYPES) for (const state of DEVICE_STATES) this.set({ tenant, type, state }, 0);
        for (const r of totals) this.set({ tenant: r.tenantId, type: r.type, state: r.state }, r.devices);
      },
    });
    new Gauge({
      name: 'ota_queue_depth',
      help: 'Devices waiting in the paced notification queue, by tenant',
      labelNames: ['tenant'] as const,
      registers,
      async collect() {
        const [all, depths] = await Promise.all([tenants(), fleet.queueDepths()]);
        this.reset();
        for (const tenant of all) this.set({ tenant }, 0);
        for (const r of depths) this.set({ tenant: r.tenantId }, r.devices);
      },
    });
    new Gauge({
      name: 'ota_queue_paused',
      help: '1 while the notification queue is paused',
      registers,
      collect() {
        this.set(queue.paused ? 1 : 0);
      },
    });
    const fromNotifier = (name: string, help: string, key: 'notified' | 'dropped'): void => {
      new Counter({
        name,
        help,
        labelNames: ['tenant'] as const,
        registers,
        async collect() {
          const all = await tenants();
          this.reset();
          for (const tenant of all) this.inc({ tenant }, notifier.statsFor(tenant)[key]);
        },
      });
    };
    fromNotifier('ota_notifications_sent_total', 'Devices notified of a package (shared attributes written) since start, by tenant', 'notified');
    fromNotifier(
      'ota_notifications_dropped_total',
      'Stale queued notifications dropped (device deleted, package changed or deleted, already notified) since start, by tenant',
      'dropped',
    );

    const { rollouts } = deps;
    if (rollouts) {
      // The registry collects every metric of a scrape at once: the two gauges of active rollouts
      // share one query (the one in flight), not one each.
      let active: Promise<RolloutDeviceCount[]> | null = null;
      const activeCounts = (): Promise<RolloutDeviceCount[]> =>
        (active ??= rollouts.activeDeviceCounts().finally(() => {
          active = null;
        }));
      new Gauge({
        name: 'ota_rollouts',
        help: 'Rollouts by tenant and state (DRAFT, RUNNING, PAUSED, COMPLETED, ABORTED, CANCELLED)',
        labelNames: ['tenant', 'state'] as const,
        registers,
        async collect() {
          const [all, counts] = await Promise.all([tenants(), rollouts.counts()]);
          this.reset();
          for (const tenant of all) for (const state of ROLLOUT_STATES) this.set({ tenant, state }, 0);
          for (const c of counts) this.set({ tenant: c.tenantId, state: c.state }, c.rollouts);
        },
      });
      new Gauge({
        name: 'ota_rollout_devices',
        help: 'Devices of each running or paused rollout by status as last recorded (PENDING, ASSIGNED, UPDATED, FAILED, SKIPPED)',
        labelNames: ['tenant', 'rollout', 'name', 'status'] as const,
        registers,
        async collect() {
          const counts = await activeCounts();
          this.reset();
          for (const c of counts) this.set({ tenant: c.tenantId, rollout: c.rolloutId, name: c.name, status: c.status }, c.devices);
        },
      });
      new Gauge({
        name: 'ota_rollout_current_wave',
        help: 'The wave (from 1) each running or paused rollout is in',
        labelNames: ['tenant', 'rollout', 'name'] as const,
        registers,
        async collect() {
          const counts = await activeCounts();
          this.reset();
          for (const c of counts) this.set({ tenant: c.tenantId, rollout: c.rolloutId, name: c.name }, c.currentWave + 1);
        },
      });
    }

    const labelNames = ['transport', 'type'] as const;
    const bytes = new Counter({ name: 'ota_download_bytes_total', help: 'Package bytes served to devices, by transport and package type', labelNames, registers });
    const responses = new Counter({
      name: 'ota_download_responses_total',
      help: 'Download responses (chunks, ranges or whole packages) served, by transport and package type',
      labelNames,
      registers,
    });
    const started = new Counter({
      name: 'ota_downloads_started_total',
      help: 'Downloads started (a response from the first byte), by transport and package type',
      labelNames,
      registers,
    });
    const completed = new Counter({
      name: 'ota_downloads_completed_total',
      help: 'Downloads that reached the last byte of the package, by transport and package type',
      labelNames,
      registers,
    });
    for (const transport of TRANSPORTS) for (const type of OTA_PACKAGE_TYPES) for (const c of [bytes, responses, started, completed]) c.inc({ transport, type }, 0);
    // Observed, not listened to (see EngineEvents.observe).
    this.unhook = events.observe((name, ...args) => {
      if (name !== 'uplink') return;
      const ev = args[0] as UplinkEvent;
      if (ev.kind !== 'download') return;
      const labels = { transport: ev.transport, type: ev.type };
      responses.inc(labels);
      if (ev.bytes > 0) bytes.inc(labels, ev.bytes);
      if (ev.offset === 0 && ev.bytes > 0) started.inc(labels);
      if (ev.size > 0 && ev.bytes > 0 && ev.offset + ev.bytes >= ev.size) completed.inc(labels);
    });

    this.requestErrors = new Counter({
      name: 'ota_http_request_errors_total',
      help: 'HTTP API responses with a 4xx or 5xx status, by route family (device, auth, ota, telemetry, packages, profiles, devices, admin, dashboard, metrics, other) and status code',
      labelNames: ['family', 'code'] as const,
      registers,
    });
    new Gauge({
      name: 'ota_dashboard_live_streams',
      help: 'Dashboard live-update streams open',
      registers,
      collect() {
        this.set(deps.liveStreams().open);
      },
    });
    new Gauge({
      name: 'ota_dashboard_live_stream_buffered_bytes',
      help: 'Bytes written to dashboard live streams and not yet taken by their clients',
      registers,
      collect() {
        this.set(deps.liveStreams().bytes);
      },
    });
    new Gauge({
      name: 'ota_dashboard_live_stream_pending_devices',
      help: 'Device rows dashboard live streams hold for clients that do not read (past OTA_DASHBOARD_STREAM_BACKLOG the page reloads instead)',
      registers,
      collect() {
        this.set(deps.liveStreams().devices);
      },
    });
  }

  /** Counts an HTTP response if it is an error. */
  countResponse(path: string, status: number): void {
    if (status >= 400) this.requestErrors.inc({ family: routeFamily(path), code: String(status) });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  close(): void {
    this.unhook();
  }
}
