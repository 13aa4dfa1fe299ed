import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { MqttTransport, UplinkEvent } from '../server';
import type { OtaMqttEndpointNode } from './ota-mqtt-endpoint';
import { handleInput, notificationsIn } from './server-ref';
import { StatusLabel } from './status-label';

interface MqttDef extends NodeDef {
  endpoint: string;
  progress: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaMqtt(this: Node, def: MqttDef): void {
    RED.nodes.createNode(this, def);
    const endpoint = def.endpoint ? (RED.nodes.getNode(def.endpoint) as OtaMqttEndpointNode | null) : null;
    if (!endpoint) {
      this.status({ fill: 'red', shape: 'ring', text: 'ota-mqtt.status.no-endpoint' });
      this.error(RED._('ota-mqtt.errors.no-endpoint'));
      return;
    }
    // The status follows connects and disconnects (thousands of devices reconnect at once: the label shows a count at most every 250 ms).
    const label = new StatusLabel(this, RED._);
    let closed = false;
    const showCount = (t: MqttTransport): void => {
      if (!closed) label.show('green', 'dot', 'ota-mqtt.status.connected', { count: t.connections });
    };
    const uplink = (ev: UplinkEvent): void => {
      if (ev.kind === 'download' && def.progress === false) return;
      this.send({ topic: ev.kind, payload: ev });
    };
    let onCount: (() => void) | null = null;
    const ready = endpoint.transport.then((t) => {
      onCount = () => showCount(t);
      t.on('uplink', uplink);
      t.on('connect', onCount);
      t.on('disconnect', onCount);
      showCount(t);
      return t;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-mqtt.status.endpoint-error'));

    this.on(
      'input',
      handleInput(
        this,
        async (msg) => {
          const list = notificationsIn(msg.payload, (n) => typeof n.deviceId === 'string' && typeof n.tenantId === 'string' && Array.isArray(n.deleted));
          if (!list) throw new Error('msg.payload must be a notification from ota-notify');
          const t = await ready;
          t.deliverAll(list);
          showCount(t);
        },
        label,
      ),
    );
    this.on('close', (done: () => void) => {
      closed = true;
      label.close();
      ready
        .then((t) => {
          t.off('uplink', uplink);
          if (onCount) {
            t.off('connect', onCount);
            t.off('disconnect', onCount);
          }
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-mqtt', OtaMqtt);
}
