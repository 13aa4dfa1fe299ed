import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow } from 'node-red';
import { ungroupNotifications, type AssignmentEvent, type Notification, type NotificationGroup, type OtaEngine, type TenantId } from '../server';
import type { StatusLabel } from './status-label';

export interface EngineRef {
  engine: Promise<OtaEngine>;
  tenantId(): Promise<TenantId>;
}

export interface OtaServerCredentials {
  adminUsername?: string;
  adminPassword?: string;
  /** PEM certificate and key of the HTTPS port. */
  tlsCert?: string;
  tlsKey?: string;
}

/** What user nodes get from their `server` property. */
export interface OtaServerNode extends Node<OtaServerCredentials> {
  /** Resolves once the engine is open (shared with every other user of the same data directory). */
  engine: Promise<OtaEngine>;
  /** The tenant the flow acts for: the admin's. */
  tenantId(): Promise<TenantId>;
}

/**
 * The ota-server config node a user node points at, or null after setting a red status and
 * logging, as core nodes do for a missing config node.
 */
export function serverOf(RED: NodeAPI, node: Node, serverId: string | undefined): EngineRef | null {
  const server = serverId ? (RED.nodes.getNode(serverId) as OtaServerNode | null) : null;
  if (!server) {
    // Each node set has its own message catalog, so the keys carry the node's type.
    node.status({ fill: 'red', shape: 'ring', text: `${node.type}.status.no-server` });
    node.error(RED._(`${node.type}.errors.no-server`));
    return null;
  }
  return server;
}

/** Runs an input handler's async work, routing a failure to Catch nodes through `done(err)`. */
export type Send = (msg: NodeMessage | Array<NodeMessage | NodeMessage[] | null>) => void;
export type InMsg = NodeMessageInFlow & Record<string, unknown>;

/** With a `label`, the error status goes through it, so the next change of status is shown. */
export function handleInput(node: Node, work: (msg: InMsg, send: Send) => Promise<void>, label?: StatusLabel) {
  return (msg: NodeMessageInFlow, send: Send, done: (err?: Error) => void): void => {
    work(msg as InMsg, send).then(
      () => done(),
      (err: unknown) => {
        // A catalog key (Node-RED's own "error"), which the editor translates; the message itself goes to Catch and the debug sidebar.
        if (label) label.show('red', 'ring', 'node-red:common.status.error');
        else node.status({ fill: 'red', shape: 'ring', text: 'node-red:common.status.error' });
        done(err instanceof Error ? err : new Error(String(err)));
      },
    );
  };
}

/** Whether `v` is an assignment event as ota-assign sends it: `{tenantId, deviceId, type, packageId, ts}`. */
export function isAssignmentEvent(v: unknown): v is AssignmentEvent {
  if (typeof v !== 'object' || v === null) return false;
  const ev = v as Record<string, unknown>;
  return (
    typeof ev.tenantId === 'string' &&
    typeof ev.deviceId === 'string' &&
    (ev.type === 'FIRMWARE' || ev.type === 'SOFTWARE') &&
    (ev.packageId === null || typeof ev.packageId === 'string') &&
    typeof ev.ts === 'number' &&
    Number.isFinite(ev.ts)
  );
}

/**
 * The assignment events in a message: one, or an array of them (ota-assign's and ota-rate-queue's
 * "One message per batch"). Undefined when `payload` is neither, or an item is not an event.
 */
export function assignmentEventsIn(payload: unknown): readonly AssignmentEvent[] | undefined {
  const list = Array.isArray(payload) ? (payload as unknown[]) : [payload];
  return list.every(isAssignmentEvent) ? (list as AssignmentEvent[]) : undefined;
}

/**
 * The notifications in a transport node's input: one (`ota-notify`'s default), an array of them, or
 * groups of them (`ota-notify` with "one message per batch": `{...what they share, deviceIds}`, so
 * Node-RED's clone of the message for each further wire copies a list of ids, not an object per
 * device). Undefined when `payload` is none of these, or a notification fails `valid`.
 */
export function notificationsIn(payload: unknown, valid: (n: Notification) => boolean): readonly Notification[] | undefined {
  const list: Notification[] = [];
  for (const item of Array.isArray(payload) ? (payload as unknown[]) : [payload]) {
    if (typeof item !== 'object' || item === null) return undefined;
    const group = item as Partial<NotificationGroup>;
    if (!Array.isArray(group.deviceIds)) list.push(item as Notification);
    else if (group.deviceIds.every((id) => typeof id === 'string')) for (const n of ungroupNotifications(group as NotificationGroup)) list.push(n);
    else return undefined;
  }
  return list.every(valid) ? list : undefined;
}

/**
 * "One message per batch": items arriving in one turn of the event loop (one released batch, one
 * page of assignments) are handed to `sendAll` together once the turn ends, as one message. The
 * `sendAll` given with a turn's first item sends them all.
 */
export function perTurn<T>(): (item: T, sendAll: (items: T[]) => void) => void {
  let items: T[] = [];
  return (item, sendAll) => {
    if (items.length === 0)
      setImmediate(() => {
        const all = items;
        items = [];
        sendAll(all);
      });
    items.push(item);
  };
}
