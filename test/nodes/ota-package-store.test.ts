import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Node } from 'node-red';
import otaPackageStore from '../../nodes/ota-package-store';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import type { OtaEngine } from '../../server';
import {
  editorFile,
  hasMessage,
  helpSections,
  helper,
  logged,
  arrivals,
  onStatus,
  registerCatalogs,
  sentBy,
  statusOf,
  statusWhen,
  translated,
  type FlowNode,
  type Msg,
} from './flow-helper';

/** ThingsBoard's OtaPackageInfo, as far as these specs look at it. */
interface PackageInfo {
  id: { entityType: string; id: string };
  deviceProfileId: { entityType: string; id: string };
  type: string;
  title: string;
  version: string;
  hasData: boolean;
  fileName: string | null;
  contentType: string | null;
  checksumAlgorithm: string | null;
  checksum: string | null;
  dataSize: number | null;
}

interface Page {
  data: PackageInfo[];
  totalPages: number;
  totalElements: number;
  hasNext: boolean;
}

interface CaughtError {
  message: string;
  source: { id: string; type: string };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const FIRMWARE = Buffer.from('firmware image v1.0\n'.repeat(100));

describe('ota-package-store node', function () {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-package-store-node-'));
    await helper.startServer();
    await registerCatalogs('ota-server', 'ota-package-store');
  });

  afterEach(async () => {
    await helper.unload();
    await helper.stopServer();
    await rm(dir, { recursive: true, force: true });
  });

  const flow = (store: Record<string, unknown> = {}, server: Record<string, unknown> = {}): FlowNode[] => [
    { id: 'tab', type: 'tab' },
    { id: 'srv', type: 'ota-server', dataDir: path.join(dir, 'data'), httpPort: '0', httpHost: '127.0.0.1', ...server },
    { id: 'store', z: 'tab', type: 'ota-package-store', name: 'packages', server: 'srv', operation: 'msg', wires: [['out']], ...store },
    { id: 'out', z: 'tab', type: 'helper' },
    { id: 'catcher', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', z: 'tab', type: 'helper' },
  ];

  let outcomes: ReturnType<typeof arrivals>;
  async function start(store?: Record<string, unknown>, server?: Record<string, unknown>): Promise<void> {
    await helper.load(translated(otaServer, otaPackageStore), flow(store, server), { srv: { adminPassword: 'secret-pw' } });
    outcomes = arrivals('out', 'caught');
  }

  const node = (id: string): Node => {
    const n = helper.getNode(id);
    if (!n) throw new Error(`no node ${id} in the flow`);
    return n;
  };
  const store = (): Node => node('store');
  const server = (): OtaServerNode => node('srv') as unknown as OtaServerNode;

  /** Sends `msg` to the store: the message on its output, or a rejection with what a Catch node got. */
  async function run(msg: Msg): Promise<Msg> {
    store().receive(msg);
    const { at, msg: result } = await outcomes.next();
    if (at === 'caught') throw new Error(`the store failed: ${(result.error as CaughtError).message}`);
    return result;
  }

  /** Sends `msg` to the store, expecting it to fail: the error a Catch node got, after nothing on the output. */
  async function fail(msg: Msg): Promise<CaughtError> {
    const sentBefore = sentBy(store()).length;
    store().receive(msg);
    const { at, msg: result } = await outcomes.next();
    if (at === 'out') throw new Error(`expected a failure, got ${JSON.stringify(result.payload)}`);
    expect(sentBy(store()).length).to.equal(sentBefore);
    return result.error as CaughtError;
  }

  const payloadOf = async <T = PackageInfo>(msg: Msg): Promise<T> => (await run(msg)).payload as T;

  async function defaultProfileId(): Promise<string> {
    const engine = await server().engine;
    const profile = await engine.profiles.findByName(await server().tenantId(), 'default');
    if (!profile) throw new Error('the tenant has no default profile');
    return profile.id;
  }

  const info = (title: string, version = '1.0'): Record<string, string> => ({ title, version, type: 'FIRMWARE', deviceProfile: 'default' });

  const create = (title: string, version?: string): Promise<PackageInfo> => payloadOf({ operation: 'create', payload: info(title, version) });

  async function storedBytes(engine: OtaEngine, id: string): Promise<Buffer> {
    const pkg = await engine.packages.get(await server().tenantId(), id);
    const chunks: Buffer[] = [];
    for await (const chunk of engine.packages.openData(pkg)) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  const countStatus = (text: string) => (s: { fill?: string; text?: string }) => s.fill === 'green' && s.text === text;

  describe('operations', function () {
    beforeEach(() => start());

    it('creates a package for the device profile named in deviceProfile', async () => {
      const pkg = await create('sensor-fw', '1.0.0');
      expect(pkg.id.entityType).to.equal('OTA_PACKAGE');
      expect(pkg).to.include({ type: 'FIRMWARE', title: 'sensor-fw', version: '1.0.0', hasData: false });
      expect(pkg.deviceProfileId).to.deep.equal({ entityType: 'DEVICE_PROFILE', id: await defaultProfileId() });
    });

    it('creates a package for the device profile given by id', async () => {
      const profileId = await defaultProfileId();
      const pkg = await payloadOf({ operation: 'create', payload: { title: 'app', version: '2.1', type: 'software', deviceProfileId: profileId } });
      expect(pkg).to.include({ type: 'SOFTWARE', title: 'app', version: '2.1' });
      expect(pkg.deviceProfileId.id).to.equal(profileId);
    });

    it('uploads a Buffer into an existing package', async () => {
      const created = await create('sensor-fw');
      const pkg = await payloadOf({ operation: 'upload', packageId: created.id.id, payload: FIRMWARE, fileName: 'sensor.bin', checksumAlgorithm: 'SHA256' });
      expect(pkg.id).to.deep.equal(created.id);
      expect(pkg).to.include({
        hasData: true,
        fileName: 'sensor.bin',
        contentType: 'application/octet-stream',
        checksumAlgorithm: 'SHA256',
        checksum: sha256(FIRMWARE),
        dataSize: FIRMWARE.length,
      });
      expect(await storedBytes(await server().engine, created.id.id)).to.deep.equal(FIRMWARE);
    });

    it('creates a package with its bytes in one step from msg.package', async () => {
      const pkg = await payloadOf({
        operation: 'upload',
        package: { title: 'app', version: '3.0', type: 'SOFTWARE', deviceProfile: 'default' },
        payload: FIRMWARE,
        fileName: 'app.tar',
        contentType: 'application/x-tar',
        checksumAlgorithm: 'md5',
        checksum: md5(FIRMWARE),
      });
      expect(pkg).to.include({
        type: 'SOFTWARE',
        title: 'app',
        version: '3.0',
        hasData: true,
        fileName: 'app.tar',
        contentType: 'application/x-tar',
        checksumAlgorithm: 'MD5',
        checksum: md5(FIRMWARE),
      });
      expect(await storedBytes(await server().engine, pkg.id.id)).to.deep.equal(FIRMWARE);
    });

    it('uploads the file at msg.filename, named after it', async () => {
      const file = path.join(dir, 'sensor-1.1.bin');
      await writeFile(file, FIRMWARE);
      const created = await create('sensor-fw', '1.1');
      const pkg = await payloadOf({ operation: 'upload', packageId: created.id.id, filename: file });
      expect(pkg).to.include({ hasData: true, fileName: 'sensor-1.1.bin', checksumAlgorithm: 'SHA256', checksum: sha256(FIRMWARE), dataSize: FIRMWARE.length });
    });

    it('lists packages a page at a time, sorted and searched as ThingsBoard does', async () => {
      for (const title of ['alpha', 'bravo', 'charlie']) await create(title);
      const page = await payloadOf<Page>({ operation: 'list', payload: { pageSize: 2, page: 0, sortProperty: 'title', sortOrder: 'DESC' } });
      expect(page.data.map((p) => p.title)).to.deep.equal(['charlie', 'bravo']);
      expect(page).to.include({ totalPages: 2, totalElements: 3, hasNext: true });

      const found = await payloadOf<Page>({ topic: 'list', payload: { textSearch: 'RAV' } });
      expect(found.data.map((p) => p.title)).to.deep.equal(['bravo']);
      expect(found).to.include({ totalElements: 1, hasNext: false });
    });

    it('reads only the paging options from a list payload', async () => {
      const created = await create('sensor-fw');
      await create('other-fw');
      const page = await payloadOf<Page>({ operation: 'list', payload: { op: 'delete', packageId: created.id.id, pageSize: '1', sortProperty: 'title' } });
      expect(page.data.map((p) => p.title)).to.deep.equal(['other-fw']);
      expect(page).to.include({ totalElements: 2, hasNext: true });
    });

    it('gets a package by msg.packageId, keeping the rest of the message', async () => {
      const created = await create('sensor-fw');
      const out = await run({ operation: 'get', packageId: created.id.id, correlation: 'job-7' });
      expect(out.payload).to.deep.equal(created);
      expect(out).to.include({ operation: 'get', correlation: 'job-7' });
    });

    it('takes the id reference that its own output carries as msg.packageId', async () => {
      const created = await create('sensor-fw');
      expect(await payloadOf({ operation: 'get', packageId: created.id })).to.deep.equal(created);
    });

    it('deletes a package', async () => {
      const created = await create('sensor-fw');
      expect(await payloadOf({ operation: 'delete', packageId: created.id.id })).to.deep.equal({ deleted: created.id.id });
      expect((await fail({ operation: 'get', packageId: created.id.id })).message).to.equal(`OtaError: Ota package with id [${created.id.id}] is not found`);
    });

    it('shows how many packages its tenant has', async () => {
      expect(await statusWhen(store(), countStatus('0 packages'))).to.include({ shape: 'dot' });
      const created = await create('sensor-fw');
      await statusWhen(store(), countStatus('1 package'));
      await create('other-fw');
      await statusWhen(store(), countStatus('2 packages'));
      await run({ operation: 'delete', packageId: created.id.id });
      await statusWhen(store(), countStatus('1 package'));
    });

    it('shows each running operation by a key of its catalog', async () => {
      const seen: string[] = [];
      onStatus(store(), (s) => {
        if (s.fill === 'blue' && s.text) seen.push(String(s.text));
      });
      const created = await create('sensor-fw');
      await run({ operation: 'upload', packageId: created.id.id, payload: FIRMWARE });
      await run({ operation: 'list' });
      await run({ operation: 'get', packageId: created.id.id });
      await run({ operation: 'delete', packageId: created.id.id });
      await statusWhen(store(), countStatus('0 packages'));
      const keys = ['create', 'upload', 'list', 'get', 'delete'].map((op) => `ota-package-store.status.${op}`);
      expect(seen).to.deep.equal(keys);
      expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
    });
  });

  describe('its own operation', function () {
    it('runs the operation it is set to, whatever msg.operation says', async () => {
      await start({ operation: 'create' });
      const pkg = await payloadOf({ operation: 'delete', topic: 'delete', payload: info('sensor-fw') });
      expect(pkg).to.include({ title: 'sensor-fw', hasData: false });
      expect(await (await server().engine).packages.count(await server().tenantId())).to.equal(1);
    });
  });

  describe('errors', function () {
    beforeEach(() => start());

    const failedStatus = { fill: 'red', shape: 'ring', text: 'ota-package-store.status.failed' };

    it("sends a duplicate title and version to Catch with ThingsBoard's message", async () => {
      await create('sensor-fw', '1.0');
      const error = await fail({ operation: 'create', payload: info('sensor-fw', '1.0') });
      expect(error.message).to.equal('OtaError: OtaPackage with such title and version already exists!');
      expect(error.source).to.include({ id: 'store', type: 'ota-package-store' });
      expect(statusOf(store())).to.deep.equal(failedStatus);
      expect(hasMessage(failedStatus.text)).to.equal(true);
    });

    it('sends an unknown operation to Catch', async () => {
      const error = await fail({ operation: 'rename', payload: {} });
      expect(error.message).to.equal("Error: Unknown operation 'rename': use create, upload, list, get or delete");
      expect(error.source.id).to.equal('store');
    });

    it('sends a get without msg.packageId to Catch', async () => {
      const error = await fail({ operation: 'get', payload: {} });
      expect(error.message).to.equal("Error: The 'get' operation needs msg.packageId");
      expect(error.source.id).to.equal('store');
    });

    it('sends bytes that do not match msg.checksum to Catch, and keeps the package empty', async () => {
      const created = await create('sensor-fw');
      const error = await fail({ operation: 'upload', packageId: created.id.id, payload: FIRMWARE, checksumAlgorithm: 'SHA256', checksum: sha256(Buffer.from('other')) });
      expect(error.message).to.equal('OtaError: Wrong otaPackage file!');
      expect(error.source.id).to.equal('store');
      expect(await payloadOf({ operation: 'get', packageId: created.id.id })).to.include({ hasData: false, checksum: null });
    });
  });

  describe('without a working server', function () {
    it('shows a red status and logs an error when no server is configured', async () => {
      await helper.load(
        translated(otaPackageStore),
        flow({ server: '' }).filter((n) => n.type !== 'ota-server'),
      );
      expect(statusOf(store())).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-package-store.status.no-server' });
      expect(hasMessage('ota-package-store.status.no-server')).to.equal(true);
      expect(logged(store(), 'error')).to.deep.equal(['No OTA server configured']);
    });

    it('shows a red status and sends operations to Catch when its server did not start', async () => {
      await start({}, { httpPort: 'eighty' });
      const status = await statusWhen(store(), (s) => s.fill === 'red');
      expect(status).to.deep.equal({ fill: 'red', shape: 'ring', text: 'ota-package-store.status.engine-error' });
      expect(hasMessage(status.text as string)).to.equal(true);
      const error = await fail({ operation: 'list' });
      expect(error.source.id).to.equal('store');
    });
  });
});

describe('ota-package-store editor', function () {
  const { html, keys } = editorFile('ota-package-store');
  const operations = ['msg', 'create', 'upload', 'list', 'get', 'delete'];

  before(() => helper.startServer().then(() => registerCatalogs('ota-package-store')));
  after(() => helper.stopServer());

  it('offers "from msg.operation" first, then every operation, each with a hint', () => {
    const options = [...html.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);
    expect(options).to.deep.equal(operations);
    const missing = operations.flatMap((op) => [`ota-package-store.operation.${op}`, `ota-package-store.hint.${op}`]).filter((k) => !hasMessage(k));
    expect(missing).to.deep.equal([]);
  });

  it('names only messages its catalog defines', () => {
    expect(keys).to.have.length.above(5);
    expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
  });

  it('points at an ota-server config node', () => {
    expect(html).to.match(/server: \{ value: "", type: "ota-server", required: true \}/);
    expect(html).to.match(/category: "OTA"/);
  });

  it('documents itself in the sections of the help style guide', () => {
    expect(helpSections(html, 'ota-package-store')).to.deep.equal(['Inputs', 'Outputs', 'Details', 'References']);
    expect(html).to.not.match(/<(b|i|strong)>/);
  });
});
