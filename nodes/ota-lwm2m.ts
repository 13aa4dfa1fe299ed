import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { Lwm2mTransport, RegistrationEvent, UplinkEvent } from '../server';
import type { OtaLwm2mEndpointNode } from './ota-lwm2m-endpoint';
import { handleInput, notificationsIn } from './server-ref';
import { StatusLabel } from './status-label';

interface Lwm2mDef extends NodeDef {
  endpoint: string;
  progress: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaLwm2m(this: Node, def: Lwm2mDef): void {
    RED.nodes.createNode(this, def);
    const endpoint = def.endpoint ? (RED.nodes.getNode(def.endpoint) as OtaLwm2mEndpointNode | null) : null;
    if (!endpoint) {
      this.status({ fill: 'red', shape: 'ring', text: 'ota-lwm2m.status.no-endpoint' });
      this.error(RED._('ota-lwm2m.errors.no-endpoint'));
      return;
    }
    const label = new StatusLabel(this, RED._);
    let transport: Lwm2mTransport | null = null;
    const showRegistered = (): void => label.show('green', 'dot', 'ota-lwm2m.status.registered', { count: transport?.registered ?? 0 });
    // Output 1: what the state tracker takes (fw_state/sw_state telemetry, download progress); output 2: registrations.
    const uplink = (ev: UplinkEvent): void => {
      if (ev.kind === 'download' && def.progress === false) return;
      this.send([{ topic: ev.kind, payload: ev }, null]);
    };
    const registration = (ev: RegistrationEvent): void => {
      this.send([null, { topic: 'registration', payload: ev }]);
      showRegistered();
    };
    const ready = endpoint.transport.then((t) => {
      transport = t;
      t.on('uplink', uplink);
      t.on('registration', registration);
      showRegistered();
      return t;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-lwm2m.status.not-listening'));

    this.on(
      'input',
      handleInput(this, async (msg) => {
        const list = notificationsIn(
          msg.payload,
          (n) => typeof n.deviceId === 'string' && typeof n.attributes === 'object' && n.attributes !== null && (n.type === 'FIRMWARE' || n.type === 'SOFTWARE'),
        );
        if (!list) throw new Error('msg.payload must be a notification from ota-notify');
        const transport = await ready;
        for (const n of list) transport.deliver(n);
      }),
    );
    this.on('close', (done: () => void) => {
      label.close();
      ready
        .then((t) => {
          t.off('uplink', uplink);
          t.off('registration', registration);
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-lwm2m', OtaLwm2m);
}
