import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { Notification } from '../server';
import { handleInput, isAssignmentEvent, serverOf, type Send } from './server-ref';
import { StatusLabel } from './status-label';

interface NotifyDef extends NodeDef {
  server: string;
  /** One message per batch on the first output (payload: an array of notifications) instead of one per device. */
  batch?: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaNotify(this: Node, def: NotifyDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    const label = new StatusLabel(this, RED._);
    const show = (s: { notified: number; dropped: number }): void => label.show('green', 'dot', 'ota-notify.status.counts', { notified: s.notified, dropped: s.dropped });
    // The flow's tenant's counts since the server started: it may have been notifying before this node was (re)deployed.
    const counts = async (): Promise<{ notified: number; dropped: number }> => (await server.engine).pipeline.notifier.statsFor(await server.tenantId());
    counts().then(show, () => label.show('red', 'ring', 'ota-notify.status.engine-error'));
    // The notifications decided in this turn (one released batch), sent on as one message.
    let batch: Notification[] = [];
    const sendBatched = (n: Notification, send: Send): void => {
      if (batch.length === 0)
        setImmediate(() => {
          const payload = batch;
          batch = [];
          send([{ topic: 'notifications', payload }, null]);
        });
      batch.push(n);
    };

    this.on(
      'input',
      handleInput(
        this,
        async (msg, send) => {
          const ev = msg.payload;
          // A malformed event would be dropped as stale (and counted): refuse it instead.
          if (!isAssignmentEvent(ev)) throw new Error('msg.payload must be an assignment event released by ota-rate-queue');
          const engine = await server.engine;
          const outcome = await engine.pipeline.notifier.process(ev);
          if ('notification' in outcome) {
            if (def.batch) sendBatched(outcome.notification, send);
            else send([{ ...msg, topic: 'notification', payload: outcome.notification }, null]);
          } else {
            // Stale: the device is gone, or its package changed after it was queued.
            send([null, { ...msg, topic: 'dropped', reason: outcome.dropped }]);
          }
          show(await counts());
        },
        label,
      ),
    );
    this.on('close', () => label.close());
  }
  RED.nodes.registerType('ota-notify', OtaNotify);
}
