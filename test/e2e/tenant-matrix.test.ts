import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Agent } from 'coap';
import { coapObserve, coapRequest } from '../support/coap-clients';
import { eventually } from '../support/eventually';
import { MqttDevice } from '../support/mqtt-clients';
import { ADMIN_PASSWORD, ADMIN_USER, startServer, stopServer, type Running } from '../support/standalone';

const SYSADMIN_PASSWORD = 'e2e-sysadmin-password';
const METRICS_TOKEN = 'e2e-metrics-token';

type Ref = { id: { id: string } };

/** One tenant as a user of the REST API sees it, with everything it made. */
interface World {
  name: 'A' | 'B';
  tenantId: string;
  email: string;
  password: string;
  token: string;
  packageId: string;
  bytes: Buffer;
  title: string;
  devices: Record<'http' | 'mqtt' | 'coap', { id: string; name: string; token: string }>;
}

/**
 * The tenant-isolation matrix over everything `npm start` serves (issue 10): two tenants made
 * through the sysadmin's API, each with a package whose bytes carry a marker, and a device per
 * transport. Every byte tenant B's admin and devices receive (REST, dashboard API and live stream,
 * /metrics, the editor's login, HTTP, MQTT, CoAP, the LwM2M server's package resource) is
 * collected and searched for anything of A's: ids, names, titles, tokens, marker bytes.
 */
describe('tenant isolation matrix (npm start, two tenants made through the API)', function () {
  let dataDir: string;
  let server: Running;
  let socket: Socket;
  let agent: Agent;
  let ports: Record<string, number>;
  let a: World;
  let b: World;
  /** Everything B received, from every endpoint. */
  const seenByB: Buffer[] = [];
  /** B's answers to requests that name A's ids or title themselves (a refusal may echo what was asked). */
  const probedByB: Buffer[] = [];

  const call = async (token: string | null, method: string, p: string, body?: unknown): Promise<{ status: number; text: string; json: unknown }> => {
    const res = await fetch(`${server.api}${p}`, {
      method,
      headers: { ...(token ? { 'X-Authorization': `Bearer ${token}` } : {}), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, text, json };
  };
  const okJson = async <T>(token: string | null, method: string, p: string, body?: unknown): Promise<T> => {
    const r = await call(token, method, p, body);
    if (r.status !== 200) throw new Error(`${method} ${p}: ${r.status} ${r.text}`);
    return r.json as T;
  };
  const login = async (username: string, password: string): Promise<string> => (await okJson<{ token: string }>(null, 'POST', '/api/auth/login', { username, password })).token;
  /** A request of B's: its answer goes into what B has seen. */
  const asB = async (method: string, p: string, body?: unknown): Promise<{ status: number; text: string; json: unknown }> => {
    const r = await call(b.token, method, p, body);
    seenByB.push(Buffer.from(r.text));
    return r;
  };

  async function makeTenant(sys: string, name: 'A' | 'B'): Promise<World> {
    const tenant = await okJson<Ref>(sys, 'POST', '/api/tenant', { title: `Tenant ${name} ${randomBytes(3).toString('hex')}` });
    const email = `admin-${name.toLowerCase()}-${randomBytes(3).toString('hex')}@example.org`;
    const user = await okJson<Ref>(sys, 'POST', '/api/user?sendActivationMail=false', { email, authority: 'TENANT_ADMIN', tenantId: { entityType: 'TENANT', id: tenant.id.id } });
    const link = await call(sys, 'GET', `/api/user/${user.id.id}/activationLink`);
    const activateToken = new URL(link.text).searchParams.get('activateToken') as string;
    const password = `pw-${name}-${randomBytes(4).toString('hex')}`;
    await okJson(null, 'POST', '/api/noauth/activate', { activateToken, password });
    const token = await login(email, password);
    const profiles = await okJson<{ data: Array<Ref & { default: boolean }> }>(token, 'GET', '/api/deviceProfiles?pageSize=10&page=0');
    const profileId = (profiles.data.find((p) => p.default) as Ref).id.id;
    const title = `fw-${name}-${randomBytes(3).toString('hex')}`;
    const bytes = Buffer.concat([Buffer.from(`MARKER-OF-${name}-${randomBytes(8).toString('hex')}`), randomBytes(3000)]);
    const info = await okJson<Ref>(token, 'POST', '/api/otaPackage', { title, version: '1.0', type: 'FIRMWARE', deviceProfileId: { entityType: 'DEVICE_PROFILE', id: profileId } });
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(bytes)]), 'fw.bin');
    const up = await fetch(`${server.api}/api/otaPackage/${info.id.id}?checksumAlgorithm=SHA256`, {
      method: 'POST',
      headers: { 'X-Authorization': `Bearer ${token}` },
      body: form,
    });
    expect(up.status, await up.text()).to.equal(200);
    const devices = {} as World['devices'];
    for (const t of ['http', 'mqtt', 'coap'] as const) {
      const deviceToken = `${name}-${t}-${randomBytes(6).toString('hex')}`;
      const deviceName = `${name}-${t}-device-${randomBytes(3).toString('hex')}`;
      const d = await okJson<Ref>(token, 'POST', `/api/device?accessToken=${deviceToken}`, { name: deviceName });
      devices[t] = { id: d.id.id, name: deviceName, token: deviceToken };
    }
    return { name, tenantId: tenant.id.id, email, password, token, packageId: info.id.id, bytes, title, devices };
  }

  const assign = async (w: World): Promise<void> => {
    for (const d of Object.values(w.devices)) {
      const device = await okJson<Record<string, unknown>>(w.token, 'GET', `/api/device/${d.id}`);
      await okJson(w.token, 'POST', '/api/device', { ...device, firmwareId: { entityType: 'OTA_PACKAGE', id: w.packageId } });
    }
  };

  before(async function () {
    this.timeout(120_000);
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-tenant-matrix-'));
    server = await startServer(dataDir, {
      OTA_SYSADMIN_PASSWORD: SYSADMIN_PASSWORD,
      OTA_METRICS_TOKEN: METRICS_TOKEN,
      TB_QUEUE_CORE_OTA_PACK_SIZE: '100',
      TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '50',
    });
    const sys = await login('sysadmin@thingsboard.org', SYSADMIN_PASSWORD);
    a = await makeTenant(sys, 'A');
    b = await makeTenant(sys, 'B');
    const endpoints = await eventually(async () => {
      const list = await okJson<Array<{ transport: string; port: number }>>(b.token, 'GET', '/api/ota/endpoints');
      return ['MQTT', 'COAP', 'LWM2M'].every((t) => list.some((e) => e.transport === t)) && list;
    }, 'the MQTT, CoAP and LwM2M endpoints');
    ports = Object.fromEntries(endpoints.map((e) => [e.transport, e.port]));
    socket = createSocket('udp4');
    agent = new Agent({ socket });
  });

  after(async () => {
    agent?.close();
    await new Promise<void>((resolve) => (socket ? socket.close(() => resolve()) : resolve()));
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it("gives B's devices B's update only, on every transport, while A's devices are updated beside them", async function () {
    this.timeout(60_000);
    // B's sessions are open before anything is assigned: whatever the server sends, they record.
    const mqtt = await MqttDevice.connect(`mqtt://127.0.0.1:${ports.MQTT}`, b.devices.mqtt.token);
    mqtt.client.on('message', (topic, payload) => seenByB.push(Buffer.from(topic), payload));
    const aMqtt = await MqttDevice.connect(`mqtt://127.0.0.1:${ports.MQTT}`, a.devices.mqtt.token);
    try {
      await mqtt.client.subscribeAsync('v1/devices/me/attributes');
      await aMqtt.client.subscribeAsync('v1/devices/me/attributes');
      const obs = await coapObserve(agent, ports.COAP as number, { pathname: `/api/v1/${b.devices.coap.token}/attributes` });
      const poll = fetch(`${server.api}/api/v1/${b.devices.http.token}/attributes/updates?timeout=20000`).then((r) => r.text());
      // The connection counts of GET /api/ota/endpoints: a tenant admin's are its own devices', the sysadmin's every tenant's.
      const counts = async (token: string): Promise<Record<string, number>> =>
        Object.fromEntries(
          (await okJson<Array<{ transport: string; tls?: boolean; connections: number }>>(token, 'GET', '/api/ota/endpoints'))
            .filter((e) => !e.tls)
            .map((e) => [e.transport, e.connections]),
        );
      await eventually(async () => (await counts(b.token)).HTTP === 1, "B's long poll to wait");
      expect(await counts(b.token)).to.deep.include({ HTTP: 1, MQTT: 1, COAP: 1, LWM2M: 0 });
      expect(await counts(a.token)).to.deep.include({ HTTP: 0, MQTT: 1, COAP: 0, LWM2M: 0 });
      expect(await counts(await login('sysadmin@thingsboard.org', SYSADMIN_PASSWORD))).to.deep.include({ HTTP: 1, MQTT: 2, COAP: 1 });
      // The dashboard's live stream of B, open while both tenants' states change.
      const ticket = (await asB('POST', '/api/ota/events/ticket')).json as { ticket: string };
      const stream = await fetch(`${server.api}/api/ota/events?ticket=${ticket.ticket}`);
      const reader = (stream.body as ReadableStream<Uint8Array>).getReader();
      const streamed: Buffer[] = [];
      const reading = (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          streamed.push(Buffer.from(value));
        }
      })();

      await assign(a);
      await assign(b);

      // A's own device is told of A's package: the notifications flow, to the right tenant.
      const aUpdate = JSON.parse((await aMqtt.next('v1/devices/me/attributes', 10_000)).payload.toString()) as Record<string, unknown>;
      expect(aUpdate.fw_title).to.equal(a.title);
      const bUpdate = JSON.parse((await mqtt.next('v1/devices/me/attributes', 10_000)).payload.toString()) as Record<string, unknown>;
      expect(bUpdate.fw_title).to.equal(b.title);
      let coapUpdate: Record<string, unknown> = {};
      while (typeof coapUpdate.fw_title !== 'string') {
        const n = await obs.next();
        seenByB.push(n.payload);
        coapUpdate = JSON.parse(n.payload.toString()) as Record<string, unknown>;
      }
      obs.stream.close();
      seenByB.push(obs.first.payload);
      expect(coapUpdate.fw_title).to.equal(b.title);
      const polled = await poll;
      seenByB.push(Buffer.from(polled));
      expect(polled).to.include(b.title);

      // B's devices download: B's bytes, over each transport, and nothing else whatever they ask for.
      const http = Buffer.from(await (await fetch(`${server.api}/api/v1/${b.devices.http.token}/firmware?title=${b.title}&version=1.0`)).arrayBuffer());
      expect(http.equals(b.bytes)).to.equal(true);
      seenByB.push(Buffer.from(await (await fetch(`${server.api}/api/v1/${b.devices.http.token}/firmware`)).arrayBuffer()));
      probedByB.push(Buffer.from(await (await fetch(`${server.api}/api/v1/${b.devices.http.token}/firmware?title=${a.title}&version=1.0`)).arrayBuffer()));
      const coap = await coapRequest(agent, ports.COAP as number, { pathname: `/fw/${b.devices.coap.token}`, query: `title=${b.title}&version=1.0` });
      expect(coap.payload.equals(b.bytes)).to.equal(true);
      probedByB.push((await coapRequest(agent, ports.COAP as number, { pathname: `/fw/${b.devices.coap.token}`, query: `title=${a.title}&version=1.0` })).payload);
      seenByB.push((await coapRequest(agent, ports.COAP as number, { pathname: `/api/v1/${b.devices.coap.token}/attributes` })).payload);
      const chunk = await mqtt.download(b.bytes.length, 1024);
      expect(chunk.equals(b.bytes)).to.equal(true);
      // The LwM2M server's package resource: A's package id from B's side (and from anyone) is 4.04.
      const lwm2m = await coapRequest(agent, ports.LWM2M as number, { pathname: `/tbfw/${a.packageId}` });
      expect(lwm2m.code).to.equal('4.04');
      probedByB.push(lwm2m.payload);

      // B's devices report states; A's too: B's live stream carries B's rows only.
      await mqtt.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADED' }));
      await aMqtt.publish('v1/devices/me/telemetry', JSON.stringify({ fw_state: 'DOWNLOADED' }));
      await eventually(() => Buffer.concat(streamed).includes(b.devices.mqtt.id), "B's live stream showing B's device");
      await reader.cancel();
      await reading;
      seenByB.push(...streamed);
    } finally {
      await mqtt.end();
      await aMqtt.end();
    }
  });

  it("answers B's admin nothing of A's on the REST and dashboard APIs", async () => {
    const aDevice = a.devices.mqtt.id;
    for (const p of [
      `/api/device/${aDevice}`,
      `/api/device/${aDevice}/credentials`,
      `/api/otaPackage/info/${a.packageId}`,
      `/api/otaPackage/${a.packageId}`,
      `/api/otaPackage/${a.packageId}/download`,
      `/api/tenant/${a.tenantId}`,
      `/api/ota/devices/${aDevice}`,
      `/api/ota/devices/${aDevice}/history?type=FIRMWARE`,
      `/api/ota/device/${aDevice}/downloadProgress`,
      `/api/plugins/telemetry/DEVICE/${aDevice}/values/timeseries?keys=fw_state`,
      `/api/tenant/${a.tenantId}/users?pageSize=10&page=0`,
      '/api/tenants?pageSize=10&page=0',
    ]) {
      const r = await call(b.token, 'GET', p);
      probedByB.push(Buffer.from(r.text));
      expect([403, 404], `${p}: ${r.status} ${r.text}`).to.include(r.status);
    }
    for (const p of [
      '/api/otaPackages?pageSize=100&page=0',
      '/api/deviceProfiles?pageSize=100&page=0',
      '/api/tenant/devices?pageSize=100&page=0',
      '/api/users?pageSize=100&page=0',
      '/api/ota/devices?pageSize=100&page=0',
      '/api/ota/failures?pageSize=100&page=0',
      '/api/ota/distribution?type=FIRMWARE',
      '/api/ota/metrics',
      '/api/ota/signingKey',
      '/api/ota/policy',
      `/api/tenant/${b.tenantId}`,
      '/api/auth/user',
    ]) {
      const r = await asB('GET', p);
      expect([200, 404], `${p}: ${r.status} ${r.text}`).to.include(r.status);
    }
    for (const [method, p, body] of [
      ['POST', `/api/ota/devices/${aDevice}/retry`, { type: 'FIRMWARE' }],
      ['DELETE', `/api/device/${aDevice}`, undefined],
      ['DELETE', `/api/tenant/${a.tenantId}`, undefined],
      ['DELETE', `/api/otaPackage/${a.packageId}`, undefined],
    ] as const) {
      const r = await call(b.token, method, p, body);
      probedByB.push(Buffer.from(r.text));
      expect([403, 404], `${method} ${p}: ${r.status} ${r.text}`).to.include(r.status);
    }
    // A is untouched.
    expect((await call(a.token, 'GET', `/api/device/${aDevice}`)).status).to.equal(200);
  });

  it("refuses B's admin /metrics (the operator's, behind OTA_METRICS_TOKEN) and the embedded editor", async () => {
    const metrics = await fetch(`${server.api}/metrics`, { headers: { Authorization: `Bearer ${b.token}` } });
    seenByB.push(Buffer.from(await metrics.text()));
    expect(metrics.status).to.equal(401);
    const operator = await fetch(`${server.api}/metrics`, { headers: { Authorization: `Bearer ${METRICS_TOKEN}` } });
    expect(operator.status).to.equal(200);
    await operator.text();

    const editorLogin = async (username: string, password: string): Promise<{ status: number; text: string }> => {
      const res = await fetch(`${server.editor}/auth/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ client_id: 'node-red-editor', grant_type: 'password', scope: '*', username, password }),
      });
      return { status: res.status, text: await res.text() };
    };
    const refused = await editorLogin(b.email, b.password);
    seenByB.push(Buffer.from(refused.text));
    expect(refused.status, refused.text).to.equal(403);
    expect((await editorLogin(a.email, a.password)).status).to.equal(403);
    expect((await editorLogin(ADMIN_USER, ADMIN_PASSWORD)).status).to.equal(200);
    expect((await editorLogin('sysadmin@thingsboard.org', SYSADMIN_PASSWORD)).status).to.equal(200);
    // The editor's admin routes without a token: Node-RED's 401, no flows.
    const flows = await fetch(`${server.editor}/flows`);
    seenByB.push(Buffer.from(await flows.text()));
    expect(flows.status).to.equal(401);
  });

  it("ends A's device sessions when the sysadmin deletes A, and B goes on", async function () {
    this.timeout(30_000);
    const mqtt = await MqttDevice.connect(`mqtt://127.0.0.1:${ports.MQTT}`, a.devices.mqtt.token);
    const poll = fetch(`${server.api}/api/v1/${a.devices.http.token}/attributes/updates?timeout=25000`).then((r) => r.status);
    const sys = await login('sysadmin@thingsboard.org', SYSADMIN_PASSWORD);
    const deleted = await call(sys, 'DELETE', `/api/tenant/${a.tenantId}`);
    expect(deleted.status, deleted.text).to.equal(200);
    await mqtt.closed;
    // CoAP observations of a deleted device end with 4.04 on the same event (coap-transport tests).
    expect((await coapRequest(agent, ports.COAP as number, { pathname: `/api/v1/${a.devices.coap.token}/attributes` })).code).to.equal('4.01');
    expect(await poll).to.not.equal(200);
    expect((await call(a.token, 'GET', '/api/auth/user')).status).to.equal(401);
    expect((await fetch(`${server.api}/api/v1/${a.devices.http.token}/attributes`)).status).to.equal(401);
    // B is untouched: its admin, its devices.
    expect((await asB('GET', '/api/auth/user')).status).to.equal(200);
    const bMqtt = await MqttDevice.connect(`mqtt://127.0.0.1:${ports.MQTT}`, b.devices.mqtt.token);
    await bMqtt.end();
  });

  it('let 0 bytes of A reach B', () => {
    const all = Buffer.concat(seenByB);
    const probed = Buffer.concat(probedByB);
    expect(all.length).to.be.greaterThan(b.bytes.length);
    // What B never named itself: in nothing B received.
    const unnamed: Array<[string, Buffer | string]> = [
      ["A's package bytes (marker)", a.bytes.subarray(0, 30)],
      ["A's admin", a.email],
      ...Object.values(a.devices).flatMap((d): Array<[string, string]> => [
        [`A's device name ${d.name}`, d.name],
        [`A's device token ${d.name}`, d.token],
      ]),
      [`A's device id ${a.devices.http.name}`, a.devices.http.id],
      [`A's device id ${a.devices.coap.name}`, a.devices.coap.id],
    ];
    for (const [what, needle] of unnamed) {
      expect(all.includes(needle), what).to.equal(false);
      expect(probed.includes(needle), `${what} (answering a probe)`).to.equal(false);
    }
    // What B's probes named (A's ids and title): never in an answer to anything else.
    const named: Array<[string, string]> = [
      ["A's package title", a.title],
      ["A's package id", a.packageId],
      ["A's tenant id", a.tenantId],
      [`A's device id ${a.devices.mqtt.name}`, a.devices.mqtt.id],
    ];
    for (const [what, needle] of named) expect(all.includes(needle), what).to.equal(false);
    // And B did see its own: the check can find what it looks for.
    expect(all.includes(b.title)).to.equal(true);
  });
});
