import { client as lwm2m, type DeviceInformation } from 'lwm2m-node-lib';
import { createRequire } from 'node:module';
import { promisify } from 'node:util';

// Its CoAP router logs every start and stop at INFO through logops, whatever the client's logLevel.
(createRequire(require.resolve('lwm2m-node-lib'))('logops') as { setLevel(level: string): void }).setLevel('FATAL');

/**
 * An LwM2M client nobody on the team wrote: lwm2m-node-lib (with its own CoAP stack, node-coap
 * 0.22), exposing Device (3), Firmware Update (5) and, when asked, Software Management (9). It
 * records every Write and Execute, answers them through hooks, and reports State/Result changes
 * by setting resources (an observer of them is notified).
 *
 * lwm2m-node-lib keeps its client in module state: one client per process at a time.
 */
export interface TestClientOptions {
  endpoint: string;
  lifetimeS?: number;
  /**
   * What it registers as (lwm2m=); 1.1 by default: lwm2m-node-lib reads and writes text/plain
   * only, and a server writes TLV to a 1.0 client (Leshan and our writeFormatFor do).
   */
  version?: '1.0' | '1.1';
  software?: boolean;
  /** Initial resource values, e.g. `{'/5/0/7': '1.0'}`. */
  resources?: Record<string, string | number>;
}

export interface Recorded {
  path: string;
  value: string;
}

type Hook = (call: Recorded) => void | Promise<void>;

const DEFAULT_RESOURCES: Record<string, string | number> = {
  '/3/0/0': 'lwm2m-node-lib',
  '/3/0/3': '1.0',
  '/5/0/3': 0,
  '/5/0/5': 0,
  '/5/0/6': 'fw',
  '/5/0/7': '1.0',
  '/5/0/9': 2,
};

export class Lwm2mTestClient {
  readonly writes: Recorded[] = [];
  readonly executes: Recorded[] = [];
  onWrite: Hook = () => undefined;
  onExecute: Hook = () => undefined;
  private device: DeviceInformation | null = null;
  private listeners: Array<() => void> = [];

  private constructor(readonly options: TestClientOptions) {}

  static async create(options: TestClientOptions): Promise<Lwm2mTestClient> {
    lwm2m.init({
      client: {
        lifetime: String(options.lifetimeS ?? 300),
        version: options.version ?? '1.1',
        logLevel: 'FATAL',
        observe: { period: 3_600_000 },
        ipProtocol: 'udp4',
        serverProtocol: 'udp4',
        formats: [{ name: 'lightweightm2m/text', value: 1541 }],
        writeFormat: 'lightweightm2m/text',
      },
    });
    const registry = lwm2m.registry;
    for (const o of (await promisify(registry.list)()) ?? []) await promisify(registry.remove)(o.objectUri);
    const objects = ['/3/0', '/5/0', ...(options.software ? ['/9/0'] : [])];
    for (const o of objects) await promisify(registry.create)(o);
    const values = { ...DEFAULT_RESOURCES, ...(options.software ? { '/9/0/0': 'app', '/9/0/1': '1.0', '/9/0/7': 0, '/9/0/9': 0 } : {}), ...options.resources };
    for (const [path, value] of Object.entries(values)) await setResource(path, value);
    return new Lwm2mTestClient(options);
  }

  /** Registers with the server at host:port; resolves once the client listens for its requests. */
  async register(host: string, port: number): Promise<{ location: string; localPort: number }> {
    const device = await promisify(lwm2m.register)(host, port, null, this.options.endpoint);
    if (!device) throw new Error('lwm2m-node-lib registered without device information');
    this.device = device;
    lwm2m.setHandler(device.serverInfo, 'write', (type, id, resource, value, cb) => this.handle(this.writes, this.onWrite, `/${type}/${id}/${resource}`, value, cb));
    lwm2m.setHandler(device.serverInfo, 'execute', (type, id, resource, value, cb) => this.handle(this.executes, this.onExecute, `/${type}/${id}/${resource}`, value, cb));
    return { location: device.location, localPort: device.localPort };
  }

  /** The device changes a resource (a State or a Result): observers of it are notified. */
  set(path: string, value: string | number): Promise<void> {
    return setResource(path, value);
  }

  /** Resolves with the first Write (or Execute) to `path`, already recorded or still to come. */
  next(kind: 'write' | 'execute', path: string): Promise<Recorded> {
    const list = kind === 'write' ? this.writes : this.executes;
    const seen = list.find((r) => r.path === path);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const check = (): void => {
        const found = list.find((r) => r.path === path);
        if (!found) return;
        this.listeners = this.listeners.filter((l) => l !== check);
        resolve(found);
      };
      this.listeners.push(check);
    });
  }

  async deregister(): Promise<void> {
    if (!this.device) return;
    const device = this.device;
    this.device = null;
    await promisify(lwm2m.unregister)(device);
  }

  private handle(list: Recorded[], hook: Hook, path: string, value: string, cb: (e: Error | null) => void): void {
    const call = { path, value: String(value ?? '') };
    list.push(call);
    for (const l of [...this.listeners]) l();
    Promise.resolve(hook(call)).then(
      () => cb(null),
      (err: Error) => cb(err),
    );
  }
}

function setResource(path: string, value: string | number): Promise<void> {
  const m = /^(\/\d+\/\d+)\/(\d+)$/.exec(path);
  if (!m) throw new Error(`not a resource path: ${path}`);
  // As text: lwm2m-node-lib answers a Read of a falsy value (the number 0) with 4.04.
  return new Promise((resolve, reject) => lwm2m.registry.setResource(m[1] as string, m[2] as string, String(value), (err) => (err ? reject(err) : resolve())));
}
