import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { UplinkEvent } from '../server';
import { handleInput, notificationsIn, serverOf } from './server-ref';
import { StatusLabel } from './status-label';

interface HttpDef extends NodeDef {
  server: string;
  progress: boolean;
}

export default function init(RED: NodeAPI): void {
  function OtaHttp(this: Node, def: HttpDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    // The device API itself is served by the engine on the OTA HTTP port; this node connects it to the flow.
    const uplink = (ev: UplinkEvent): void => {
      if (ev.transport !== 'HTTP' || (ev.kind === 'download' && def.progress === false)) return;
      this.send({ topic: ev.kind, payload: ev });
    };
    const label = new StatusLabel(this, RED._);
    const ready = server.engine.then((engine) => {
      engine.events.on('uplink', uplink);
      const a = engine.httpAddress;
      if (a) label.show('green', 'dot', 'ota-http.status.listening', { port: a.port });
      else label.show('green', 'dot', 'ota-http.status.ready');
      return engine;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-http.status.engine-error'));

    this.on(
      'input',
      handleInput(
        this,
        async (msg) => {
          const list = notificationsIn(msg.payload, (n) => typeof n.deviceId === 'string' && Array.isArray(n.deleted));
          if (!list) throw new Error('msg.payload must be a notification from ota-notify');
          const engine = await ready;
          for (const n of list) engine.pipeline.httpSessions.deliver(n);
          label.show('green', 'dot', 'ota-http.status.polling', { count: engine.pipeline.httpSessions.waiting });
        },
        label,
      ),
    );
    this.on('close', (done: () => void) => {
      label.close();
      ready
        .then((engine) => engine.events.off('uplink', uplink))
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-http', OtaHttp);
}
