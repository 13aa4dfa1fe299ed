import { createHook } from 'node:async_hooks';
import type { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { i18n } from '@node-red/util';
import type { Node, NodeAPI, NodeMessage, NodeStatus } from 'node-red';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import type { OtaEngine, OtaPackage, OtaPackageType } from '../../server';
import type { TenantId } from '../../server/ids';

/** The part of node-red-node-test-helper 0.3.6 these specs use (it ships no types). */
export interface NodeTestHelper {
  init(runtimePath: string): void;
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  load(nodes: NodeInit | NodeInit[], flow: FlowNode[], credentials?: Record<string, Record<string, string>>): Promise<void>;
  unload(): Promise<void>;
  getNode(id: string): Node | null;
  /** Deploys `flow` over the loaded one: `nodes` restarts only the nodes that changed or went. */
  setFlows(flow: FlowNode[], type: 'full' | 'flows' | 'nodes', credentials?: Record<string, Record<string, string>>): Promise<void>;
}

export type NodeInit = (RED: NodeAPI) => void;
export type FlowNode = { id: string; type: string; z?: string; wires?: string[][] } & Record<string, unknown>;
export type Msg = NodeMessage & Record<string, unknown>;

/** A sinon call as recorded by the helper's spies on Node.prototype. */
interface SpyCall {
  thisValue: unknown;
  args: unknown[];
}

export const helper = require('node-red-node-test-helper') as NodeTestHelper;
helper.init(require.resolve('node-red'));

/** Where the build put the message catalogs, beside the compiled nodes. */
const LOCALES = path.resolve(__dirname, '../../nodes/locales');

/**
 * The helper's `RED._` returns the key unchanged; the runtime's looks it up in the node set's
 * catalog. This gives the nodes the runtime's behaviour over our real catalogs (registered after
 * `helper.startServer()`, which initialises i18n), so the specs see the text a user sees.
 */
export async function registerCatalogs(...types: string[]): Promise<void> {
  for (const type of types) await i18n.registerMessageCatalog(type, LOCALES, `${type}.json`);
}

/** Node-RED's own catalog (namespace `node-red`), whose `common.status.*` keys nodes may show as status. */
export async function registerCoreCatalog(): Promise<void> {
  await i18n.registerMessageCatalog('node-red', path.resolve(require.resolve('@node-red/nodes/package.json'), '../locales'), 'messages.json');
}

/** The text of `key` (`<type>.<path>`) in our catalogs, or `key` itself when it is missing. */
export const translate = (key: string, subs?: Record<string, string | number>): string => i18n._(`${key.split('.')[0]}:${key}`, subs);

/**
 * The text the editor shows for a status text that is a catalog key: a key naming its namespace
 * (`node-red:common.status.error`) is looked up there, others in the node's own catalog.
 */
export const shownStatus = (key: string): string => (key.includes(':') ? i18n._(key) : translate(key));

/** Whether `key` is defined in its catalog (i18n answers a missing key with the key). */
export const hasMessage = (key: string): boolean => translate(key) !== key;

/** Wraps node initialisers so their `RED._` translates as in the runtime. */
export const translated = (...inits: NodeInit[]): NodeInit[] =>
  inits.map((init) => (RED: NodeAPI) => {
    RED._ = translate;
    init(RED);
  });

const callsOf = (node: Node, method: 'status' | 'send' | 'log' | 'warn' | 'error'): SpyCall[] =>
  (node[method] as unknown as { getCalls(): SpyCall[] }).getCalls().filter((c) => c.thisValue === node);

/** Every message `node` has sent so far. */
export const sentBy = (node: Node): unknown[] => callsOf(node, 'send').map((c) => c.args[0]);

/** What `node` has logged so far at `level`, as text. */
export const logged = (node: Node, level: 'log' | 'warn' | 'error'): string[] => callsOf(node, level).map((c) => String(c.args[0]));

/** The status `node` shows now. */
export const statusOf = (node: Node): NodeStatus | undefined => callsOf(node, 'status').at(-1)?.args[0] as NodeStatus | undefined;

/** Calls `listener` with each status `node` shows from now on; returns the unsubscribe. */
export function onStatus(node: Node, listener: (s: NodeStatus) => void): () => void {
  // The helper's spy emits `call:<method>` on the node after each call; the typings know only input/close.
  const events = node as unknown as EventEmitter;
  const onCall = (call: SpyCall): void => listener(call.args[0] as NodeStatus);
  events.on('call:status', onCall);
  return () => events.removeListener('call:status', onCall);
}

/** Resolves with the first status of `node`, shown now or later, that satisfies `wanted`. */
export function statusWhen(node: Node, wanted: (s: NodeStatus) => boolean): Promise<NodeStatus> {
  const now = statusOf(node);
  if (now && wanted(now)) return Promise.resolve(now);
  return new Promise((resolve) => {
    const stop = onStatus(node, (s) => {
      if (!wanted(s)) return;
      stop();
      resolve(s);
    });
  });
}

/**
 * Records, in arrival order, the messages that reach the helper nodes `ids`, through one listener
 * each. (Several `once('input')` listeners on one node skip each other: Node-RED's input dispatch
 * iterates over the list that each one removes itself from.)
 */
export function arrivals(...ids: string[]): { next(): Promise<{ at: string; msg: Msg }>; readonly queued: number } {
  const queue: { at: string; msg: Msg }[] = [];
  let waiting: ((a: { at: string; msg: Msg }) => void) | null = null;
  for (const id of ids) {
    const node = helper.getNode(id);
    if (!node) throw new Error(`no node ${id} in the flow`);
    node.on('input', (msg: Msg) => {
      const arrival = { at: id, msg };
      if (waiting) {
        const resolve = waiting;
        waiting = null;
        resolve(arrival);
      } else queue.push(arrival);
    });
  }
  return {
    next: () => {
      const queued = queue.shift();
      return queued ? Promise.resolve(queued) : new Promise((resolve) => (waiting = resolve));
    },
    /** Arrivals recorded and not yet taken by `next()`. */
    get queued() {
      return queue.length;
    },
  };
}

/** An editor HTML file as the build copied it, and the catalog keys it names. */
export function editorFile(type: string): { html: string; keys: string[] } {
  const html = readFileSync(path.resolve(__dirname, `../../nodes/${type}.html`), 'utf8');
  const attrKeys = [...html.matchAll(/data-i18n="([^"]+)"/g)].flatMap((m) => m[1].split(';').map((k) => k.replace(/^\[[^\]]*\]/, '')));
  // `this._("...")`, except keys built at run time (ending in a dot), which specs check themselves.
  const callKeys = [...html.matchAll(/\b_\("([^"]+)"/g)].map((m) => m[1]).filter((k) => !k.endsWith('.'));
  return { html, keys: [...attrKeys, ...callKeys].filter((k) => !k.startsWith('node-red:')) };
}

/** The `<h3>` headings of the help text of `type`, in order. */
export const helpSections = (html: string, type: string): string[] => {
  const help = html.split(`data-help-name="${type}">`)[1]?.split('</script>')[0] ?? '';
  return [...help.matchAll(/<h3>([^<]+)<\/h3>/g)].map((m) => m[1]);
};

/** What a Catch node puts in `msg.error` (the runtime's `done(err)`: message is `"Error: ..."`). */
export interface CaughtError {
  message: string;
  source: { id: string; type: string; name?: string };
}

/** The node `id` of the loaded flow; throws when it is not there. */
export function nodeOf<T = Node>(id: string): T {
  const node = helper.getNode(id);
  if (!node) throw new Error(`no node ${id} in the flow`);
  return node as unknown as T;
}

/**
 * Registers the beforeEach/afterEach every node spec shares: before each test a fresh temp
 * directory (named from `prefix`), the helper's server started and the catalogs of ota-server,
 * of `types` and of Node-RED registered, then `hooks.setUp`; after each test `hooks.tearDown`,
 * then the flow unloaded, the server stopped and the directory removed. Answers a function giving
 * the server's data directory for the running test (`data` inside its temp directory).
 */
export function nodeSpecSetup(prefix: string, types: string[], hooks: { setUp?: () => void | Promise<void>; tearDown?: () => void | Promise<void> } = {}): () => string {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), prefix));
    await helper.startServer();
    await registerCatalogs('ota-server', ...types);
    await registerCoreCatalog();
    await hooks.setUp?.();
  });
  afterEach(async () => {
    await hooks.tearDown?.();
    await helper.unload();
    await helper.stopServer();
    await rm(dir, { recursive: true, force: true });
  });
  return () => path.join(dir, 'data');
}

/** Loads `flow` with the ota-server node and the nodes of `inits` (all translated), giving `srv` its admin password. */
export const loadOtaFlow = (inits: NodeInit[], flow: FlowNode[]): Promise<void> => helper.load(translated(otaServer, ...inits), flow, { srv: { adminPassword: 'secret-pw' } });

/** The ota-server node `srv` of the loaded flow. */
export const serverNode = (): OtaServerNode => nodeOf<OtaServerNode>('srv');

/**
 * A test flow around the nodes `nodes` (give them `z: 'tab'`): a tab, an ota-server `srv` on
 * `dataDir` listening on 127.0.0.1 port 0, a Catch node sending to the helper `caught`, and a
 * Complete node watching `watch` that sends to the helper `completed` (each `done()` without error).
 * Keep every property value (a name, say) different from the node ids: nodes without x/y are
 * started like config nodes, and a value equal to an id reads as a reference to it, so a node
 * named as its own id fails with "Circular config node dependency detected".
 */
export function otaFlow(dataDir: string, nodes: FlowNode[], watch: string[], server: Record<string, unknown> = {}): FlowNode[] {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'srv', type: 'ota-server', dataDir, httpPort: '0', httpHost: '127.0.0.1', ...server },
    ...nodes,
    { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', z: 'tab', type: 'helper' },
    { id: 'completer', z: 'tab', type: 'complete', scope: watch, uncaught: false, wires: [['completed']] },
    { id: 'completed', z: 'tab', type: 'helper' },
  ];
}

/**
 * Follows the timers (setTimeout/setInterval) created from now on. `live()` answers, after letting
 * cleared ones be reported, where each one still pending was created: what would keep the process
 * alive, or fire later, after a flow stopped. Timers created in a file whose path contains one of
 * `ignore` are not followed (a part of an engine the test keeps running on purpose).
 */
export function trackTimers(ignore: readonly string[] = []): { live(): Promise<string[]> } {
  const pending = new Map<number, string>();
  const hook = createHook({
    init(id, type) {
      if (type !== 'Timeout') return;
      const stack = (new Error().stack ?? '').split('\n');
      // Mocha's timeout of the running test, and the timers of the spec's own HTTP client (fetch), are not the flow's;
      // nor is the SQLite store's idle checkpoint (the server's, which outlives a flow; cleared when the store closes).
      const notTheFlows = ['node_modules/mocha/', 'undici', 'SqliteStore.checkpointWhenIdle', ...ignore];
      if (stack.some((l) => notTheFlows.some((part) => l.includes(part)))) return;
      pending.set(id, stack.filter((l) => !l.includes('node:')).join('\n'));
    },
    destroy(id) {
      pending.delete(id);
    },
  }).enable();
  return {
    async live() {
      // A cleared timer's destroy is reported asynchronously.
      for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
      hook.disable();
      return [...pending.values()];
    },
  };
}

/** Waits `ms`: only for checking that something does *not* happen within a time it would take. */
export const quietFor = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A package of `type` for the device profile `profileId`, with `data` uploaded (SHA256), through the engine's service. */
export async function packageWithData(
  engine: OtaEngine,
  tenantId: TenantId,
  info: { title: string; version: string; profileId: string; type?: OtaPackageType },
  data: Buffer,
): Promise<OtaPackage> {
  const created = await engine.packages.saveInfo(tenantId, { deviceProfileId: info.profileId, type: info.type ?? 'FIRMWARE', title: info.title, version: info.version });
  const staged = await engine.packages.stage(Readable.from([data]), 'SHA256');
  return engine.packages.attachData(tenantId, created.id, staged, {
    fileName: `${info.title}.bin`,
    contentType: 'application/octet-stream',
    checksumAlgorithm: 'SHA256',
    checksum: null,
  });
}

/**
 * Sends messages to the node `id` of a flow made by `otaFlow` (which watches it with its Complete
 * node) and reads how each one ended: `done()` (the Complete node) or `done(err)` (the Catch node).
 */
export function inputsTo(id: string): { run(msg: Msg): Promise<void>; runAll(msgs: Msg[]): Promise<void>; fail(msg: Msg): Promise<CaughtError> } {
  const node = nodeOf(id);
  const outcomes = arrivals('completed', 'caught');
  const settled = async (): Promise<void> => {
    const { at, msg: result } = await outcomes.next();
    if (at === 'caught') throw new Error(`${id} failed: ${(result.error as CaughtError).message}`);
  };
  return {
    /** Resolves once the node has called `done()` for `msg`; rejects with what Catch got. */
    async run(msg) {
      node.receive(msg);
      await settled();
    },
    /** Sends all of `msgs` in the same tick, then waits until the node has called `done()` for each. */
    async runAll(msgs) {
      for (const msg of msgs) node.receive(msg);
      for (let i = 0; i < msgs.length; i++) await settled();
    },
    /** Resolves with what Catch got for `msg`; rejects when the node completed it or sent anything meanwhile. */
    async fail(msg) {
      const sentBefore = sentBy(node).length;
      node.receive(msg);
      const { at, msg: result } = await outcomes.next();
      if (at === 'completed') throw new Error(`expected ${id} to fail, it completed the message`);
      const sent = sentBy(node).slice(sentBefore);
      if (sent.length) throw new Error(`${id} failed but sent ${JSON.stringify(sent)}`);
      return result.error as CaughtError;
    },
  };
}

/** `promise`, or a rejection naming `what` when it has not settled within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms)));
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
