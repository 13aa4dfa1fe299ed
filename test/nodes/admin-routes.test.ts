import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { NodeAPI } from 'node-red';
import type { Choices, DeviceChoice, PackageChoice, ProfileChoice } from '../../nodes/admin-routes';
import otaServer, { type OtaServerNode } from '../../nodes/ota-server';
import type { OtaEngine } from '../../server';
import type { TenantId } from '../../server/ids';
import { helper, nodeOf, packageWithData, registerCatalogs, translate, type FlowNode, type NodeInit } from './flow-helper';

/** The part of supertest (what `helper.request()` returns) these specs use. */
interface AdminApp {
  get(url: string): PromiseLike<{ status: number; body: unknown }>;
}
const admin = (): AdminApp => (helper as unknown as { request(): AdminApp }).request();

async function get<T>(url: string, status = 200): Promise<T> {
  const res = await admin().get(url);
  expect(res.status, `${url}: ${JSON.stringify(res.body)}`).to.equal(status);
  return res.body as T;
}

/**
 * The admin routes behind the editor's pickers: `GET ota-server/:id/{packages,profiles,devices}` on
 * Node-RED's admin app, answered from the engine of the ota-server node `:id`.
 */
describe('editor admin routes (ota-server/:id/...)', function () {
  let dir: string;
  let asked: string[];
  let refuse: boolean;

  /** ota-server's init, with RED's translations and a permission check the specs can watch and turn off. */
  const serverInit: NodeInit = (RED: NodeAPI) => {
    RED._ = translate;
    const needsPermission = RED.auth.needsPermission.bind(RED.auth);
    RED.auth.needsPermission = (permission: string) => {
      asked.push(permission);
      const pass = needsPermission(permission);
      return (req, res, next) => (refuse ? res.status(403).json({ error: 'forbidden' }) : pass(req, res, next));
    };
    otaServer(RED);
  };

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-admin-routes-'));
    asked = [];
    refuse = false;
    await helper.startServer();
    await registerCatalogs('ota-server');
  });

  afterEach(async () => {
    await helper.unload();
    await helper.stopServer();
    await rm(dir, { recursive: true, force: true });
  });

  const flow = (fields: Record<string, string> = {}): FlowNode[] => [
    { id: 'tab', type: 'tab' },
    { id: 'srv', type: 'ota-server', dataDir: path.join(dir, 'data'), httpPort: '0', httpHost: '127.0.0.1', ...fields },
    { id: 'other', z: 'tab', type: 'helper' },
  ];

  async function start(fields?: Record<string, string>): Promise<{ engine: OtaEngine; tenantId: TenantId }> {
    await helper.load(serverInit, flow(fields), { srv: { adminPassword: 'secret-pw' } });
    const server = nodeOf<OtaServerNode>('srv');
    if (fields?.httpPort === 'eighty') return { engine: undefined as unknown as OtaEngine, tenantId: '' as TenantId };
    return { engine: await server.engine, tenantId: await server.tenantId() };
  }

  /** Profiles "default" and "thermostats", two devices, and three packages (one without data, one software). */
  async function catalogue(engine: OtaEngine, tenantId: TenantId): Promise<{ thermostats: string; withData: string }> {
    const def = await engine.profiles.ensureDefault(tenantId);
    const thermostats = await engine.profiles.save(tenantId, { name: 'thermostats' });
    await engine.devices.save(tenantId, { name: 'thermo-1', deviceProfileId: { id: thermostats.id } });
    await engine.devices.save(tenantId, { name: 'sensor-1', deviceProfileId: { id: def.id } });
    const withData = await packageWithData(engine, tenantId, { title: 'thermo-fw', version: '2.0', profileId: thermostats.id }, Buffer.from('firmware 2.0'));
    await engine.packages.saveInfo(tenantId, { deviceProfileId: thermostats.id, type: 'FIRMWARE', title: 'thermo-fw', version: '2.1' });
    await packageWithData(engine, tenantId, { title: 'sensor-app', version: '1.0', profileId: def.id, type: 'SOFTWARE' }, Buffer.from('app 1.0'));
    return { thermostats: thermostats.id, withData: withData.id };
  }

  it("lists the server's packages by title, with their profile's name", async () => {
    const { engine, tenantId } = await start();
    const { thermostats, withData } = await catalogue(engine, tenantId);
    const page = await get<Choices<PackageChoice>>('/ota-server/srv/packages');
    expect(page.data.map((p) => `${p.title} ${p.version}`)).to.deep.equal(['sensor-app 1.0', 'thermo-fw 2.0', 'thermo-fw 2.1']);
    expect(page).to.include({ totalElements: 3, hasNext: false });
    expect(page.data[1]).to.include({
      id: withData,
      type: 'FIRMWARE',
      deviceProfileId: thermostats,
      deviceProfileName: 'thermostats',
      hasData: true,
      dataSize: 12,
      checksumAlgorithm: 'SHA256',
    });
    expect(page.data[2]).to.include({ hasData: false, dataSize: null });
  });

  it('lists only the packages a profile can be given: its own, of the type asked, with data', async () => {
    const { engine, tenantId } = await start();
    await catalogue(engine, tenantId);
    const forProfile = await get<Choices<PackageChoice>>('/ota-server/srv/packages?type=FIRMWARE&deviceProfile=thermostats');
    expect(forProfile.data.map((p) => `${p.title} ${p.version}`)).to.deep.equal(['thermo-fw 2.0']);
    const software = await get<Choices<PackageChoice>>('/ota-server/srv/packages?type=software');
    expect(software.data.map((p) => p.title)).to.deep.equal(['sensor-app']);
    expect(software.totalElements).to.equal(1);
    const searched = await get<Choices<PackageChoice>>('/ota-server/srv/packages?text=THERMO');
    expect(searched.data.map((p) => p.version)).to.deep.equal(['2.0', '2.1']);
    expect((await get<Choices<PackageChoice>>('/ota-server/srv/packages?deviceProfile=no-such-profile')).data).to.deep.equal([]);
  });

  it('lists the device profiles by name, marking the default one', async () => {
    const { engine, tenantId } = await start();
    const { thermostats } = await catalogue(engine, tenantId);
    const page = await get<Choices<ProfileChoice>>('/ota-server/srv/profiles');
    expect(page.data.map((p) => [p.name, p.isDefault])).to.deep.equal([
      ['default', true],
      ['thermostats', false],
    ]);
    expect(page.data[1]).to.include({ id: thermostats, firmwareId: null, softwareId: null });
    expect((await get<Choices<ProfileChoice>>('/ota-server/srv/profiles?text=therm')).data.map((p) => p.name)).to.deep.equal(['thermostats']);
  });

  it('finds devices by part of their name, a page at a time', async () => {
    const { engine, tenantId } = await start();
    const { thermostats } = await catalogue(engine, tenantId);
    const found = await get<Choices<DeviceChoice>>('/ota-server/srv/devices?text=thermo');
    expect(found.data).to.have.length(1);
    expect(found.data[0]).to.include({ name: 'thermo-1', deviceProfileId: thermostats, deviceProfileName: 'thermostats', firmwareId: null, credentialsType: 'ACCESS_TOKEN' });
    const first = await get<Choices<DeviceChoice>>('/ota-server/srv/devices?pageSize=1');
    expect(first.data.map((d) => d.name)).to.deep.equal(['sensor-1']);
    expect(first).to.include({ totalElements: 2, hasNext: true });
    expect((await get<Choices<DeviceChoice>>('/ota-server/srv/devices?deviceProfile=default')).data.map((d) => d.name)).to.deep.equal(['sensor-1']);
  });

  it("names each device's credentials type and each profile's provisioning, never a token, password, key or secret", async () => {
    const { engine, tenantId } = await start();
    const { thermostats } = await catalogue(engine, tenantId);
    await engine.devices.saveWithCredentials(
      tenantId,
      { name: 'basic-1', deviceProfileId: { id: thermostats } },
      { credentialsType: 'MQTT_BASIC', credentialsValue: { clientId: 'c-1', userName: 'u-1', password: 'pw-secret-1' } },
    );
    await engine.profiles.save(tenantId, {
      name: 'self-made',
      provisionType: 'ALLOW_CREATE_NEW_DEVICES',
      provisionDeviceKey: 'key-secret-1',
      profileData: { provisionConfiguration: { provisionDeviceSecret: 'secret-1' } },
    });
    const devices = await get<Choices<DeviceChoice>>('/ota-server/srv/devices?text=basic');
    expect(devices.data.map((d) => [d.name, d.credentialsType])).to.deep.equal([['basic-1', 'MQTT_BASIC']]);
    const profiles = await get<Choices<ProfileChoice>>('/ota-server/srv/profiles?text=self');
    expect(profiles.data.map((p) => [p.name, p.provisionType])).to.deep.equal([['self-made', 'ALLOW_CREATE_NEW_DEVICES']]);
    const all = JSON.stringify([await get('/ota-server/srv/devices'), await get('/ota-server/srv/profiles')]);
    for (const secret of ['pw-secret-1', 'u-1', 'key-secret-1', 'secret-1']) expect(all).to.not.include(secret);
  });

  it('answers 404 for an id that is no deployed ota-server node', async () => {
    await start();
    const unknown = await get<{ error: string }>('/ota-server/nope/packages', 404);
    expect(unknown.error).to.equal('No deployed ota-server node nope: deploy the flow first');
    expect((await get<{ error: string }>('/ota-server/other/profiles', 404)).error).to.include('other');
  });

  it('answers 503 with the reason when the server did not start', async () => {
    await start({ httpPort: 'eighty' });
    await nodeOf<OtaServerNode>('srv').engine.catch(() => undefined);
    const body = await get<{ error: string }>('/ota-server/srv/devices', 503);
    expect(body.error).to.match(/^The OTA engine did not start: /);
  });

  it('asks Node-RED for the ota-server.read permission on every route, and answers nothing without it', async () => {
    await start();
    expect(asked).to.deep.equal(['ota-server.read']);
    refuse = true;
    for (const what of ['packages', 'profiles', 'devices']) {
      const res = await admin().get(`/ota-server/srv/${what}`);
      expect(res.status, what).to.equal(403);
      expect(res.body).to.deep.equal({ error: 'forbidden' });
    }
  });
});
