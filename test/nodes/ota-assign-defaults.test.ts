import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import otaAssign, { toRequest } from '../../nodes/ota-assign';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import {
  arrivals,
  editorFile,
  hasMessage,
  helper,
  inputsTo,
  nodeOf,
  otaFlow,
  packageWithData,
  registerCatalogs,
  registerCoreCatalog,
  statusWhen,
  translated,
  type FlowNode,
} from './flow-helper';

/** The node's own Target, Type and Package fields, which the dialog's pickers fill. */
describe('ota-assign defaults', function () {
  describe('the request made of a message and the node fields', function () {
    const own = { targetType: 'deviceProfile' as const, target: 'thermostats', otaType: 'SOFTWARE', packageTitle: 'app', packageVersion: '2.0' };

    it('takes everything from the node when the payload is no object', () => {
      for (const payload of [1718000000000, '', 'go', null, undefined, true]) {
        expect(toRequest(payload, own), String(payload)).to.deep.equal({ target: { deviceProfile: 'thermostats' }, type: 'SOFTWARE', package: { title: 'app', version: '2.0' } });
      }
    });

    it('lets each part the payload sets win over the node field', () => {
      expect(toRequest({ device: 'd-1' }, own)).to.deep.equal({ target: { device: 'd-1' }, type: 'SOFTWARE', package: { title: 'app', version: '2.0' } });
      expect(toRequest({ type: 'firmware', package: null }, own)).to.deep.equal({ target: { deviceProfile: 'thermostats' }, type: 'FIRMWARE', package: null });
      expect(toRequest({ package: { title: 'fw', version: '1' } }, { ...own, targetType: 'device', target: 'd-9' })).to.deep.equal({
        target: { device: 'd-9' },
        type: 'SOFTWARE',
        package: { title: 'fw', version: '1' },
      });
    });

    it('still needs a target and a package from one of the two', () => {
      expect(() => toRequest({ package: null }, {})).to.throw('msg.payload needs deviceProfile or device (an id or a name)');
      expect(() => toRequest({ deviceProfile: 'p' }, { packageTitle: 'app' })).to.throw('msg.payload.package is required');
      expect(() => toRequest({}, { ...own, otaType: 'BOOTLOADER' })).to.throw('msg.payload.type must be FIRMWARE or SOFTWARE, not BOOTLOADER');
      // Blank fields, as an old flow or an emptied dialog leaves them, are no defaults.
      expect(() => toRequest(5, { targetType: 'deviceProfile', target: ' ', packageTitle: 'app', packageVersion: '2.0' })).to.throw('needs deviceProfile or device');
    });
  });

  describe('in a flow', function () {
    let dir: string;

    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'ota-assign-defaults-'));
      await helper.startServer();
      await registerCatalogs('ota-server', 'ota-assign');
      await registerCoreCatalog();
    });

    afterEach(async () => {
      await helper.unload();
      await helper.stopServer();
      await rm(dir, { recursive: true, force: true });
    });

    it("assigns the node's package to the node's profile on an inject's timestamp", async () => {
      const nodes: FlowNode[] = [
        {
          id: 'assign',
          z: 'tab',
          type: 'ota-assign',
          server: 'srv',
          targetType: 'deviceProfile',
          target: 'default',
          otaType: 'FIRMWARE',
          packageTitle: 'sensor-fw',
          packageVersion: '1.0.0',
          wires: [['out']],
        },
        { id: 'out', z: 'tab', type: 'helper' },
      ];
      await helper.load(translated(otaServer, otaAssign), otaFlow(path.join(dir, 'data'), nodes, ['assign']), { srv: { adminPassword: 'secret-pw' } });
      await statusWhen(nodeOf('assign'), (s) => s.fill === 'green');
      const server = nodeOf<OtaServerNode>('srv');
      const engine = await server.engine;
      const tenantId = await server.tenantId();
      const profile = await engine.profiles.ensureDefault(tenantId);
      const device = await engine.devices.save(tenantId, { name: 'sensor-1', deviceProfileId: { id: profile.id } });
      const pkg = await packageWithData(engine, tenantId, { title: 'sensor-fw', version: '1.0.0', profileId: profile.id }, Buffer.from('fw'));
      const out = arrivals('out');

      await inputsTo('assign').run({ payload: Date.now() });
      const { msg } = await out.next();
      expect(msg.payload).to.include({ deviceId: device.id, type: 'FIRMWARE', packageId: pkg.id });
      expect((await engine.profiles.get(tenantId, profile.id)).firmwareId).to.equal(pkg.id);
    });
  });

  describe('the dialog', function () {
    const { html, keys } = editorFile('ota-assign');

    before(() => helper.startServer().then(() => registerCatalogs('ota-assign')));
    after(() => helper.stopServer());

    it('has an input for every default, with the pickers fed by the admin routes', () => {
      for (const field of ['server', 'target', 'targetType', 'otaType', 'packageTitle', 'packageVersion', 'name']) expect(html).to.include(`id="node-input-${field}"`);
      expect(html).to.include('"ota-server/" + encodeURIComponent(serverId) + "/" + what');
      for (const what of ['"profiles"', '"devices"', '"packages"']) expect(html).to.include(`lookup(${what}`);
    });

    it('names only messages its catalog defines', () => {
      expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
      expect(keys).to.include.members(['ota-assign.target.deviceProfile', 'ota-assign.picker.unavailable']);
    });
  });
});
