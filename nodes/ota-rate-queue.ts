import type { Node, NodeAPI, NodeDef } from 'node-red';
import { pacingFromEnv, type AssignmentEvent, type PacingMode } from '../server/notify-queue';
import { handleInput, serverOf } from './server-ref';

interface RateQueueDef extends NodeDef {
  server: string;
  packSize: string;
  intervalMs: string;
  mode: PacingMode;
}

export default function init(RED: NodeAPI): void {
  function OtaRateQueue(this: Node, def: RateQueueDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    // Empty fields fall back to ThingsBoard's variables, then its defaults (100 per 60 s).
    const fromEnv = pacingFromEnv(process.env);
    const num = (v: string, fallback: number): number => (v !== undefined && String(v).trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : fallback);
    const pacing = { packSize: Math.max(1, num(def.packSize, fromEnv.packSize)), intervalMs: Math.max(0, num(def.intervalMs, fromEnv.intervalMs)), mode: def.mode === 'burst' ? 'burst' : 'spaced' } as const;

    const release = (events: AssignmentEvent[]): void => {
      for (const ev of events) this.send({ topic: 'release', payload: ev });
    };
    const showDepth = (depth: number, paused: boolean): void =>
      this.status(
        paused
          ? { fill: 'yellow', shape: 'ring', text: RED._('ota-rate-queue.status.paused', { depth }) }
          : { fill: depth ? 'blue' : 'grey', shape: 'dot', text: RED._('ota-rate-queue.status.depth', { depth }) },
      );
    const ready = server.engine.then((engine) => {
      const q = engine.pipeline.queue;
      q.on('depth', (d) => showDepth(d, q.paused));
      q.start(pacing, release);
      showDepth(q.depth(), q.paused);
      return engine;
    });
    ready.catch(() => this.status({ fill: 'red', shape: 'ring', text: 'ota-rate-queue.status.engine-error' }));

    this.on(
      'input',
      handleInput(this, async (msg, send) => {
        const q = (await ready).pipeline.queue;
        const command = msg.pause ? 'pause' : msg.resume ? 'resume' : msg.flush ? 'flush' : msg.topic;
        if (command === 'pause') q.pause();
        else if (command === 'resume') q.resume();
        else if (command === 'flush') q.flush();
        else if (command === 'status') send({ topic: 'status', payload: { depth: q.depth(), paused: q.paused, pacing } });
        else {
          const ev = msg.payload as AssignmentEvent;
          if (!ev || typeof ev.deviceId !== 'string' || (ev.type !== 'FIRMWARE' && ev.type !== 'SOFTWARE')) {
            throw new Error('msg.payload must be an assignment event {tenantId, deviceId, type, packageId, ts} from ota-assign');
          }
          // An unassignment is not paced: ThingsBoard deletes the attributes at once.
          if (ev.packageId === null) {
            q.cancel(ev.deviceId, ev.type);
            send({ topic: 'release', payload: ev });
          } else {
            await q.enqueue(ev);
          }
        }
        showDepth(q.depth(), q.paused);
      }),
    );
    this.on('close', (done: () => void) => {
      ready.then((engine) => {
        engine.pipeline.queue.stop();
        engine.pipeline.queue.removeAllListeners('depth');
      }).catch(() => undefined).finally(done);
    });
  }
  RED.nodes.registerType('ota-rate-queue', OtaRateQueue);
}
