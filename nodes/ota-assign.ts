import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { AssignRequest } from '../server/assignment';
import type { AssignmentEvent } from '../server/notify-queue';
import { handleInput, serverOf } from './server-ref';

interface AssignDef extends NodeDef {
  server: string;
}

/** msg -> assignment request: `msg.payload` {deviceProfile | device, type, package}. */
function toRequest(payload: unknown): AssignRequest {
  const p = (payload ?? {}) as Record<string, unknown>;
  const type = String(p.type ?? 'FIRMWARE').toUpperCase();
  if (type !== 'FIRMWARE' && type !== 'SOFTWARE') throw new Error(`msg.payload.type must be FIRMWARE or SOFTWARE, not ${String(p.type)}`);
  // A name, an id, or ThingsBoard's `{entityType, id}` reference.
  const refOf = (v: unknown): string | undefined =>
    typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string' ? (v as { id: string }).id : undefined;
  const profile = refOf(p.deviceProfile ?? p.deviceProfileId);
  const device = refOf(p.device ?? p.deviceId);
  const target = profile !== undefined ? { deviceProfile: profile } : device !== undefined ? { device } : null;
  if (!target) throw new Error('msg.payload needs deviceProfile or device (an id or a name)');
  if (!('package' in p)) throw new Error('msg.payload.package is required: a package id, {title, version}, or null to unassign');
  const pkg = p.package;
  const ref =
    pkg === null
      ? null
      : typeof pkg === 'object' && pkg !== null && 'title' in pkg && 'version' in pkg
        ? { title: String(pkg.title), version: String(pkg.version) }
        : refOf(pkg);
  if (ref === undefined) throw new Error('msg.payload.package must be a package id, {title, version}, or null');
  return { target, type, package: ref };
}

export default function init(RED: NodeAPI): void {
  function OtaAssign(this: Node, def: AssignDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    let sent = 0;
    // Every assignment, from this node's input or the REST API, leaves as one message per device.
    let tenant: string | undefined;
    const forward = (ev: AssignmentEvent): void => {
      // The flow acts for its server's tenant: other tenants' assignments are not its business.
      if (ev.tenantId !== tenant) return;
      sent += 1;
      this.send({ topic: 'assignment', payload: ev });
      this.status({ fill: 'green', shape: 'dot', text: RED._('ota-assign.status.sent', { count: sent }) });
    };
    const ready = server.engine.then(async (engine) => {
      tenant = await server.tenantId();
      engine.events.on('assignment', forward);
      this.status({ fill: 'green', shape: 'ring', text: 'ota-assign.status.ready' });
      return engine;
    });
    ready.catch(() => this.status({ fill: 'red', shape: 'ring', text: 'ota-assign.status.engine-error' }));

    this.on(
      'input',
      handleInput(this, async (msg) => {
        const engine = await ready;
        await engine.pipeline.assignment.assign(await server.tenantId(), toRequest(msg.payload));
      }),
    );
    this.on('close', (done: () => void) => {
      ready.then((engine) => engine.events.off('assignment', forward)).catch(() => undefined).finally(done);
    });
  }
  RED.nodes.registerType('ota-assign', OtaAssign);
}
