import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { CoapTransport, UplinkEvent } from '../server';
import type { OtaCoapEndpointNode } from './ota-coap-endpoint';
import { handleInput, notificationsIn } from './server-ref';
import { StatusLabel } from './status-label';

interface CoapDef extends NodeDef {
  endpoint: string;
  progress: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaCoap(this: Node, def: CoapDef): void {
    RED.nodes.createNode(this, def);
    const endpoint = def.endpoint ? (RED.nodes.getNode(def.endpoint) as OtaCoapEndpointNode | null) : null;
    if (!endpoint) {
      this.status({ fill: 'red', shape: 'ring', text: 'ota-coap.status.no-endpoint' });
      this.error(RED._('ota-coap.errors.no-endpoint'));
      return;
    }
    const label = new StatusLabel(this, RED._);
    const observing = (count: number): void => label.show('green', 'dot', 'ota-coap.status.observing', { count });
    const uplink = (ev: UplinkEvent): void => {
      if (ev.kind === 'download' && def.progress === false) return;
      this.send({ topic: ev.kind, payload: ev });
    };
    const ready = endpoint.transport.then((transport) => {
      transport.on('uplink', uplink);
      transport.on('observers', observing);
      observing(transport.observers);
      return transport;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-coap.status.not-listening'));

    this.on(
      'input',
      handleInput(this, async (msg) => {
        const list = notificationsIn(msg.payload, (n) => typeof n.deviceId === 'string' && typeof n.attributes === 'object' && n.attributes !== null && Array.isArray(n.deleted));
        if (!list) throw new Error('msg.payload must be a notification from ota-notify');
        const transport: CoapTransport = await ready;
        for (const n of list) transport.deliver(n);
        observing(transport.observers);
      }),
    );
    this.on('close', (done: () => void) => {
      label.close();
      ready
        .then((transport) => {
          transport.off('uplink', uplink);
          transport.off('observers', observing);
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-coap', OtaCoap);
}
