import type { Node, NodeAPI, NodeDef } from 'node-red';
import { groupNotifications, type AssignmentEvent, type Notification, type NotifyOutcome } from '../server';
import { assignmentEventsIn, handleInput, perTurn, serverOf, type InMsg, type Send } from './server-ref';
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
    // A batch leaves as groups of devices told the same thing: Node-RED deep-clones the message for
    // every wire after the first (four transports in the default flow), and a list of ids clones in
    // a tenth of the time an object per device takes.
    const sendGroups = (notifications: Notification[], send: Send): void => send([{ topic: 'notifications', payload: groupNotifications(notifications, Infinity) }, null]);
    // The notifications decided in this turn (one released batch, one message per event), sent on as one message.
    const batched = perTurn<Notification>();
    const sendBatched = (n: Notification, send: Send): void => batched(n, (all) => sendGroups(all, send));
    // A batch's notifications share their package's frozen attribute map (Notifier); a message per
    // device gets its own copy, so a node after this one may change it as it could before.
    const own = (n: Notification): Notification => ({ ...n, attributes: { ...n.attributes }, deleted: [...n.deleted] });
    /** Stale events (the device is gone, or its package changed after it was queued) leave one message each on output 2. */
    const sendDropped = (msg: InMsg, ev: AssignmentEvent, reason: string, send: Send): void => send([null, { ...msg, topic: 'dropped', payload: ev, reason }]);

    this.on(
      'input',
      handleInput(
        this,
        async (msg, send) => {
          // One event, or a released batch of them (ota-rate-queue's "One message per batch").
          const events = assignmentEventsIn(msg.payload);
          // A malformed event would be dropped as stale (and counted): refuse it instead.
          if (!events) throw new Error('msg.payload must be an assignment event released by ota-rate-queue');
          const engine = await server.engine;
          if (!Array.isArray(msg.payload)) {
            const ev = events[0] as AssignmentEvent;
            const outcome = await engine.pipeline.notifier.process(ev);
            if ('notification' in outcome) {
              if (def.batch) sendBatched(outcome.notification, send);
              else send([{ ...msg, topic: 'notification', payload: own(outcome.notification) }, null]);
            } else sendDropped(msg, ev, outcome.dropped, send);
          } else {
            // A batch is decided and written in one transaction, and its notifications leave together.
            const outcomes: NotifyOutcome[] = await engine.pipeline.notifier.processAll(events);
            const notifications: Notification[] = [];
            outcomes.forEach((o, i) => ('notification' in o ? notifications.push(o.notification) : sendDropped(msg, events[i] as AssignmentEvent, o.dropped, send)));
            if (def.batch) {
              if (notifications.length) sendGroups(notifications, send);
            } else for (const n of notifications) send([{ ...msg, topic: 'notification', payload: own(n) }, null]);
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
