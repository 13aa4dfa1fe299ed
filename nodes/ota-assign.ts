import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { AssignRequest, AssignmentEvent, TenantId } from '../server';
import { handleInput, perTurn, serverOf } from './server-ref';
import { StatusLabel } from './status-label';

interface AssignDef extends NodeDef {
  server: string;
  /** Optional defaults, used for what `msg.payload` leaves out (the dialog's pickers fill them). */
  targetType?: 'deviceProfile' | 'device';
  target?: string;
  otaType?: string;
  packageTitle?: string;
  packageVersion?: string;
  /** One message per batch of devices (payload: an array of events) instead of one per device. */
  batch?: boolean;
}

type Defaults = Pick<AssignDef, 'targetType' | 'target' | 'otaType' | 'packageTitle' | 'packageVersion'>;

/**
 * msg -> assignment request: `msg.payload` {deviceProfile | device, type, package}, each part
 * falling back to the node's own fields; a payload that is no object (an inject's timestamp) takes
 * them all from the node.
 */
export function toRequest(payload: unknown, defaults: Defaults = {}): AssignRequest {
  const p = (typeof payload === 'object' && payload !== null && !Array.isArray(payload) && !Buffer.isBuffer(payload) ? payload : {}) as Record<string, unknown>;
  const own = (v: string | undefined): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);
  const type = String(p.type ?? own(defaults.otaType) ?? 'FIRMWARE').toUpperCase();
  if (type !== 'FIRMWARE' && type !== 'SOFTWARE') throw new Error(`msg.payload.type must be FIRMWARE or SOFTWARE, not ${String(p.type ?? defaults.otaType)}`);
  // A name, an id, or ThingsBoard's `{entityType, id}` reference.
  const refOf = (v: unknown): string | undefined =>
    typeof v === 'string' ? v : typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string' ? (v as { id: string }).id : undefined;
  const profile = refOf(p.deviceProfile ?? p.deviceProfileId);
  const device = refOf(p.device ?? p.deviceId);
  const ownTarget = own(defaults.target);
  const target =
    profile !== undefined
      ? { deviceProfile: profile }
      : device !== undefined
        ? { device }
        : ownTarget !== undefined
          ? defaults.targetType === 'device'
            ? { device: ownTarget }
            : { deviceProfile: ownTarget }
          : null;
  if (!target) throw new Error('msg.payload needs deviceProfile or device (an id or a name)');
  const ownTitle = own(defaults.packageTitle);
  const ownVersion = own(defaults.packageVersion);
  if (!('package' in p) && !(ownTitle && ownVersion)) throw new Error('msg.payload.package is required: a package id, {title, version}, or null to unassign');
  const pkg = 'package' in p ? p.package : { title: ownTitle, version: ownVersion };
  const ref =
    pkg === null ? null : typeof pkg === 'object' && pkg !== null && 'title' in pkg && 'version' in pkg ? { title: String(pkg.title), version: String(pkg.version) } : refOf(pkg);
  if (ref === undefined) throw new Error('msg.payload.package must be a package id, {title, version}, or null');
  return { target, type, package: ref };
}

export default function init(RED: NodeAPI): void {
  function OtaAssign(this: Node, def: AssignDef): void {
    RED.nodes.createNode(this, def);
    const server = serverOf(RED, this, def.server);
    if (!server) return;
    let sent = 0;
    const label = new StatusLabel(this, RED._);
    // Every assignment, from this node's input or the REST API, leaves as one message per device,
    // or with "One message per batch" the events of one turn (a profile's devices are emitted up
    // to 1,000 per turn) as one message: Node-RED's cost per message, not the queue's, then stays flat.
    let tenant: string | undefined;
    const batched = perTurn<AssignmentEvent>();
    const forward = (ev: AssignmentEvent): void => {
      // The flow acts for its server's tenant: other tenants' assignments are not its business.
      if (ev.tenantId !== tenant) return;
      sent += 1;
      if (!def.batch) this.send({ topic: 'assignment', payload: ev });
      else batched(ev, (payload) => this.send({ topic: 'assignments', payload }));
      label.show('green', 'dot', 'ota-assign.status.sent', { count: sent });
    };
    let unclaim = (): void => undefined;
    const ready = server.engine.then(async (engine) => {
      tenant = await server.tenantId();
      // This flow's tenant's assignments come here; other tenants' go straight to the queue.
      unclaim = engine.pipeline.assignment.claim(tenant as TenantId);
      engine.events.on('assignment', forward);
      label.show('green', 'ring', 'ota-assign.status.ready');
      return engine;
    });
    ready.catch(() => label.show('red', 'ring', 'ota-assign.status.engine-error'));

    this.on(
      'input',
      handleInput(
        this,
        async (msg) => {
          const engine = await ready;
          await engine.pipeline.assignment.assign(await server.tenantId(), toRequest(msg.payload, def));
        },
        label,
      ),
    );
    this.on('close', (done: () => void) => {
      label.close();
      ready
        .then((engine) => {
          unclaim();
          engine.events.off('assignment', forward);
        })
        .catch(() => undefined)
        .finally(done);
    });
  }
  RED.nodes.registerType('ota-assign', OtaAssign);
}
