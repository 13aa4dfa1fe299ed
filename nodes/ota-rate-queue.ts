import type { Node, NodeAPI, NodeDef } from 'node-red';
import { pacingFromEnv, type AssignmentEvent, type NotifyQueue, type PacingMode } from '../server';
import { assignmentEventsIn, handleInput, serverOf } from './server-ref';
import { StatusLabel } from './status-label';

interface RateQueueDef extends NodeDef {
  server: string;
  packSize: string;
  intervalMs: string;
  mode: PacingMode;
  /** One message per released batch (payload: an array of events) instead of one per device. */
  batch?: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaRateQueue(this: Node, def: RateQueueDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    // Empty fields fall back to ThingsBoard's variables, then its defaults (100 per 60 s).
    const fromEnv = pacingFromEnv(process.env);
    const num = (v: string, fallback: number): number => (v !== undefined && String(v).trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : fallback);
    const pacing = {
      packSize: Math.max(1, num(def.packSize, fromEnv.packSize)),
      intervalMs: Math.max(0, num(def.intervalMs, fromEnv.intervalMs)),
      mode: def.mode === 'burst' ? 'burst' : 'spaced',
    } as const;

    // Wired straight to ota-notify (as in the default flow), released rows leave the queue in the
    // notifier's commit, so a crash in between loses nothing; with other nodes between, at release.
    const feedsNotify = (): boolean => ((this as Node & { wires?: string[][] }).wires?.[0] ?? []).some((id) => RED.nodes.getNode(id)?.type === 'ota-notify');
    const release = (events: AssignmentEvent[]): 'notifier acks' | void => {
      if (def.batch) this.send({ topic: 'release', payload: events });
      else for (const ev of events) this.send({ topic: 'release', payload: ev });
      if (feedsNotify()) return 'notifier acks';
    };
    const label = new StatusLabel(this, RED._);
    const showDepth = (depth: number, paused: boolean): void =>
      paused ? label.show('yellow', 'ring', 'ota-rate-queue.status.paused', { depth }) : label.show(depth ? 'blue' : 'grey', 'dot', 'ota-rate-queue.status.depth', { depth });
    let onDepth: (depth: number) => void = () => undefined;
    let onFree: () => void = () => undefined;
    let drain: symbol | undefined;
    // One node releases a server's queue. A second one queues what it is sent but releases nothing,
    // says so in red, and takes over when the first is removed: never silently replacing it.
    const take = async (q: NotifyQueue): Promise<void> => {
      const other = q.owner;
      if (other !== null && other !== this.id) {
        label.show('red', 'ring', 'ota-rate-queue.status.second');
        this.error(RED._('ota-rate-queue.errors.second', { other }));
        return;
      }
      drain = q.start(pacing, release, this.id);
      // A pause lasts until a redeploy or restart, also when the server (and its queue) stays up.
      if (q.paused) q.resume();
      showDepth(await q.depth(), q.paused);
    };
    const ready = server.engine.then(async (engine) => {
      const q = engine.pipeline.queue;
      onDepth = (d) => {
        if (q.owner === this.id) showDepth(d, q.paused);
      };
      onFree = () => void take(q).catch((err: Error) => this.error(err.message));
      q.on('depth', onDepth);
      q.on('free', onFree);
      await take(q);
      return engine;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-rate-queue.status.engine-error'));

    this.on(
      'input',
      handleInput(
        this,
        async (msg, send) => {
          const q = (await ready).pipeline.queue;
          const command = msg.pause ? 'pause' : msg.resume ? 'resume' : msg.flush ? 'flush' : msg.topic;
          if (command === 'pause') q.pause();
          else if (command === 'resume') q.resume();
          else if (command === 'flush') await q.flush();
          else {
            // One event, or a batch of them (ota-assign's "One message per batch").
            const events = assignmentEventsIn(msg.payload);
            // A malformed event would be skipped silently by the queue (no such package): refuse it here instead.
            if (!events) throw new Error('msg.payload must be an assignment event {tenantId, deviceId, type, packageId, ts} from ota-assign');
            // In order: events of one turn share a transaction (the queue batches them), whether they
            // came as one message or many; an unassignment is not paced (ThingsBoard deletes the
            // attributes at once) and waits for the events before it, so the last word on a device wins.
            let queued: Array<Promise<boolean>> = [];
            const unassigned: AssignmentEvent[] = [];
            for (const ev of events) {
              if (ev.packageId !== null) {
                queued.push(q.enqueue(ev));
                continue;
              }
              await Promise.all(queued);
              queued = [];
              await q.cancel(ev.deviceId, ev.type);
              if (def.batch) unassigned.push(ev);
              else send({ topic: 'release', payload: ev });
            }
            await Promise.all(queued);
            if (unassigned.length) send({ topic: 'release', payload: unassigned });
            return; // the queue's 'depth' event updated the status
          }
          if (q.owner === this.id) showDepth(await q.depth(), q.paused);
        },
        label,
      ),
    );
    this.on('close', (done: () => void) => {
      label.close();
      ready
        .then((engine) => {
          const q = engine.pipeline.queue;
          // Only this node's listener, and the drain only if it is this node's: other rate-queue nodes on the server keep theirs.
          q.off('depth', onDepth);
          q.off('free', onFree);
          if (drain) q.stop(drain);
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-rate-queue', OtaRateQueue);
}
