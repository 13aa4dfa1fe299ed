import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { StateChange } from '../server/state-tracker';
import type { UplinkEvent } from '../server/uplink';
import { handleInput, serverOf } from './server-ref';

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

    const sendMetrics = async (): Promise<void> => {
      const engine = await server.engine;
      const metrics = engine.pipeline.tracker.metrics(await server.tenantId());
      this.send({ topic: 'metrics', payload: metrics });
      const fw = metrics.packages.reduce((a, p) => ({ updated: a.updated + p.updated, failed: a.failed + p.failed }), { updated: 0, failed: 0 });
      this.status({ fill: 'green', shape: 'dot', text: RED._('ota-state-tracker.status.counts', fw) });
    };
    // Metrics follow changes, at most once per interval.
    const metricsSoon = (): void => {
      if (metricsTimer) return;
      metricsTimer = setTimeout(() => {
        metricsTimer = null;
        sendMetrics().catch((err: Error) => this.error(err.message));
      }, metricsEvery);
    };
    const emit = (changes: StateChange[]): void => {
      for (const c of changes) this.send({ topic: 'state', payload: c });
      if (changes.length) metricsSoon();
    };

    const ready = server.engine.then((engine) => {
      engine.pipeline.tracker.configure({ timeoutMs, maxRetries });
      if (timeoutMs > 0) engine.pipeline.tracker.start(Math.min(5000, Math.max(50, timeoutMs / 4)), emit);
      return engine;
    });
    ready.catch(() => this.status({ fill: 'red', shape: 'ring', text: 'ota-state-tracker.status.engine-error' }));

    this.on(
      'input',
      handleInput(this, async (msg) => {
        const engine = await ready;
        if (msg.topic === 'metrics') return sendMetrics();
        const ev = msg.payload as UplinkEvent;
        if (!ev || typeof ev.deviceId !== 'string' || typeof ev.kind !== 'string') throw new Error('msg.payload must be an uplink event from a transport node (ota-http, ota-mqtt, ...)');
        emit(await engine.pipeline.tracker.handleUplink(ev));
      }),
    );
    this.on('close', (done: () => void) => {
      if (metricsTimer) clearTimeout(metricsTimer);
      ready.then((engine) => engine.pipeline.tracker.stop()).catch(() => undefined).finally(done);
    });
  }
  RED.nodes.registerType('ota-state-tracker', OtaStateTracker);
}
