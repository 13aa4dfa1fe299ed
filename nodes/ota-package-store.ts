import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { PACKAGE_OPERATIONS, runPackageCommand, type PackageCommand, type PackageInfoFields, type PackageOperation } from '../server';
import type { OtaServerNode } from './server-ref';

interface PackageStoreDef extends NodeDef {
  server: string;
  operation: PackageOperation | 'msg';
}

type Msg = NodeMessageInFlow & Record<string, unknown>;

/** msg -> command: `msg.operation` (or the node's setting), ids and options from the msg. */
function toCommand(op: PackageOperation, msg: Msg): PackageCommand {
  const payload = msg.payload as unknown;
  const obj = (typeof payload === 'object' && payload !== null && !Buffer.isBuffer(payload) ? payload : {}) as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  // An id as a string, or as the `{entityType, id}` reference this node itself outputs (msg.payload.id).
  const idOf = (v: unknown): string | undefined => str(v) ?? (typeof v === 'object' && v !== null ? str((v as { id?: unknown }).id) : undefined);
  const packageId = idOf(msg.packageId) ?? idOf(obj.packageId) ?? (op !== 'upload' ? str(payload) : undefined);
  switch (op) {
    case 'create':
      return { op, info: obj as PackageInfoFields };
    case 'upload': {
      const file = str(msg.filename);
      if (!Buffer.isBuffer(payload) && !file) throw new Error('Upload needs the package bytes in msg.payload (a Buffer) or a file path in msg.filename');
      return {
        op,
        ...(packageId ? { packageId } : {}),
        ...(msg.package ? { info: msg.package as PackageInfoFields } : {}),
        data: Buffer.isBuffer(payload) ? { buffer: payload } : { file: file as string },
        ...(str(msg.checksumAlgorithm) ? { checksumAlgorithm: str(msg.checksumAlgorithm) } : {}),
        ...(str(msg.checksum) ? { checksum: str(msg.checksum) } : {}),
        ...(str(msg.fileName) ? { fileName: str(msg.fileName) } : {}),
        ...(str(msg.contentType) ? { contentType: str(msg.contentType) } : {}),
      };
    }
    case 'list': {
      // Only the paging fields: spreading the whole payload let a stray `op` key in it replace the operation.
      const num = (v: unknown): number | undefined => (v !== '' && v !== null && Number.isInteger(Number(v)) ? Number(v) : undefined);
      const order = str(obj.sortOrder)?.toUpperCase();
      return {
        op,
        pageSize: num(obj.pageSize),
        page: num(obj.page),
        textSearch: str(obj.textSearch),
        sortProperty: str(obj.sortProperty),
        sortOrder: order === 'ASC' || order === 'DESC' ? order : undefined,
      };
    }
    case 'get':
    case 'delete':
      if (!packageId) throw new Error(`The '${op}' operation needs msg.packageId`);
      return { op, packageId };
  }
}

export default function init(RED: NodeAPI): void {
  function OtaPackageStore(this: Node, def: PackageStoreDef): void {
    RED.nodes.createNode(this, def);
    const server = RED.nodes.getNode(def.server) as OtaServerNode | null;
    if (!server) {
      this.status({ fill: 'red', shape: 'ring', text: 'ota-package-store.status.no-server' });
      this.error(RED._('ota-package-store.errors.no-server'));
      return;
    }
    // Never rejects: a failed count must not turn an operation that already succeeded into an error.
    const showCount = async (): Promise<void> => {
      try {
        const engine = await server.engine;
        const n = await engine.packages.count(await server.tenantId());
        this.status({ fill: 'green', shape: 'dot', text: RED._('ota-package-store.status.count', { count: n }) });
      } catch {
        this.status({ fill: 'red', shape: 'ring', text: 'ota-package-store.status.engine-error' });
      }
    };
    void showCount();

    this.on('input', async (msg: Msg, send, done) => {
      try {
        const op = (def.operation === 'msg' || !def.operation ? (msg.operation ?? msg.topic) : def.operation) as PackageOperation;
        if (!PACKAGE_OPERATIONS.includes(op)) throw new Error(RED._('ota-package-store.errors.bad-operation', { op: String(op) }));
        this.status({ fill: 'blue', shape: 'dot', text: `ota-package-store.status.${op}` });
        const engine = await server.engine;
        msg.payload = await runPackageCommand(engine, await server.tenantId(), toCommand(op, msg));
        msg.operation = op;
        send(msg);
        await showCount();
        done();
      } catch (err) {
        this.status({ fill: 'red', shape: 'ring', text: 'ota-package-store.status.failed' });
        done(err as Error);
      }
    });
    this.on('close', (done: () => void) => {
      this.status({});
      done();
    });
  }
  RED.nodes.registerType('ota-package-store', OtaPackageStore);
}
