import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { FleetMetrics, StateChange, StateTracker, UplinkEvent } from '../server';
import { handleInput, serverOf, type Send } from './server-ref';

interface TrackerDef extends NodeDef {
  server: string;
  timeoutS: string;
  maxRetries: string;
  metricsIntervalMs: string;
}

export default function init(RED: NodeAPI): void {
  function OtaStateTracker(this: Node, def: TrackerDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    const num = (v: string, fallback: number): number => (v !== undefined && String(v).trim() !== '' && Number.isFinite(Number(v)) ? Math.max(0, Number(v)) : fallback);
    // Empty fields fall back to the environment, then to off.
    const timeoutMs = num(def.timeoutS, num(process.env.OTA_UPDATE_TIMEOUT_S ?? '', 0)) * 1000;
    const maxRetries = num(def.maxRetries, num(process.env.OTA_UPDATE_MAX_RETRIES ?? '', 0));
    const metricsEvery = num(def.metricsIntervalMs, 1000);
    let metricsTimer: NodeJS.Timeout | null = null;
    let closed = false;
    // Messages the node originates itself (timeouts, metrics timer) go out with node.send; replies to an input with its `send`.
    const ownSend: Send = (msg) => this.send(msg);

    const showCounts = (metrics: FleetMetrics): void => {
      if (!owning) return; // the red status says why this node's settings do not apply
      const fw = metrics.packages.reduce((a, p) => ({ updated: a.updated + p.updated, failed: a.failed + p.failed }), { updated: 0, failed: 0 });
      this.status({ fill: 'green', shape: 'dot', text: RED._('ota-state-tracker.status.counts', fw) });
    };
    const sendMetrics = async (send: Send): Promise<void> => {
      const engine = await server.engine;
      const metrics = await engine.pipeline.tracker.metrics(await server.tenantId());
      send({ topic: 'metrics', payload: metrics });
      showCounts(metrics);
    };
    // Metrics follow changes, at most once per interval; none are scheduled once the node has closed.
    const metricsSoon = (): void => {
      if (metricsTimer || closed) return;
      metricsTimer = setTimeout(() => {
        metricsTimer = null;
        sendMetrics(ownSend).catch((err: Error) => this.error(err.message));
      }, metricsEvery);
    };
    const emit = (changes: StateChange[], send: Send = ownSend): void => {
      if (closed) return;
      for (const c of changes) send({ topic: 'state', payload: c });
      if (changes.length) metricsSoon();
    };

    // One tracker node per server owns the settings and the timeout checks. A second one still
    // records what it is sent, but says in red that its settings do not apply, and takes over when
    // the first is removed: never silently replacing it.
    let watch: symbol | undefined;
    let owning = false;
    let onFree: () => void = () => undefined;
    const own = async (tracker: StateTracker): Promise<void> => {
      if (!tracker.claim(this.id)) {
        this.status({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.second' });
        this.error(RED._('ota-state-tracker.errors.second', { other: tracker.owner ?? '' }));
        return;
      }
      owning = true;
      tracker.configure({ timeoutMs, maxRetries });
      if (timeoutMs > 0) watch = tracker.start(Math.min(5000, Math.max(50, timeoutMs / 4)), (changes) => emit(changes));
      else tracker.stop(); // no timeout, no checks
      // The counts so far, before any device reports again.
      showCounts(await tracker.metrics(await server.tenantId()));
    };
    const ready = server.engine.then(async (engine) => {
      const tracker = engine.pipeline.tracker;
      onFree = () => void own(tracker).catch((err: Error) => this.error(err.message));
      tracker.on('free', onFree);
      await own(tracker);
      return engine;
    });
    ready.catch(() => this.status({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.engine-error' }));

    this.on(
      'input',
      handleInput(this, async (msg, send) => {
        const engine = await ready;
        if (msg.topic === 'metrics') return sendMetrics(send);
        const ev = msg.payload as UplinkEvent;
        // A telemetry event without its entries would fail deep in the tracker with a TypeError: refuse it here.
        if (!ev || typeof ev.tenantId !== 'string' || typeof ev.deviceId !== 'string' || typeof ev.kind !== 'string' || (ev.kind === 'telemetry' && !Array.isArray(ev.entries))) {
          throw new Error('msg.payload must be an uplink event from a transport node (ota-http, ota-mqtt, ...)');
        }
        emit(await engine.pipeline.tracker.handleUplink(ev), send);
      }),
    );
    this.on('close', (done: () => void) => {
      closed = true;
      if (metricsTimer) clearTimeout(metricsTimer);
      metricsTimer = null;
      ready
        .then((engine) => {
          const tracker = engine.pipeline.tracker;
          tracker.off('free', onFree);
          // Only this node's checks and settings: another tracker node on the same server may take them over.
          if (watch) tracker.stop(watch);
          if (owning) tracker.unclaim(this.id);
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-state-tracker', OtaStateTracker);
}
