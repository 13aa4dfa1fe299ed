import type { Node, NodeAPI } from 'node-red';

/**
 * The life of a config node that owns a protocol server (MQTT, CoAP, LwM2M): a failed start is
 * reported with the node's own `errors.start-failed` text, and on close the socket is closed before
 * `done` (a redeploy binds the same port again at once), then the endpoint is unregistered even if
 * stopping failed.
 */
export function superviseEndpoint(RED: NodeAPI, node: Node, started: Promise<{ stop(): Promise<void> }>, unregister: () => (() => void) | null): void {
  started.catch((err: Error) => node.error(RED._(`${node.type}.errors.start-failed`, { error: err.message })));
  node.on('close', (_removed: boolean, done: () => void) => {
    void started
      .then((transport) => transport.stop())
      .catch(() => undefined)
      .finally(() => {
        unregister()?.();
        done();
      });
  });
}
