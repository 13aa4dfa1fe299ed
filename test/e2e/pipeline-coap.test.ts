import { createHash, randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Agent } from 'coap';
import { checksumOf } from '../../server/packages/checksum';
import { coapObserve, coapRequest, libcoap } from '../support/coap-clients';
import { adminClient, startServer, stopServer, type Admin, type Running } from '../support/standalone';
import { eventually } from '../support/eventually';

interface Ref {
  id: { id: string };
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/**
 * The example flow's CoAP path, as `npm start` deploys it: ota-notify -> ota-coap -> observing
 * devices (the `coap` package, libcoap's client) -> block-wise download -> ota-state-tracker.
 */
describe('update pipeline over CoAP (example flow, npm start)', function () {
  this.timeout(90_000);
  let dataDir: string;
  let server: Running;
  let admin: Admin;
  let port: number;
  let profileId: string;
  let packageId: string;
  let agent: Agent;
  let socket: Socket;
  const firmware = randomBytes(1024 * 1024);

  async function createDevice(name: string, profile = profileId): Promise<{ id: string; token: string }> {
    const d = await admin.request<Ref>('POST', '/device', { name, deviceProfileId: { id: profile, entityType: 'DEVICE_PROFILE' } });
    return { id: d.id.id, token: (await admin.request<{ credentialsId: string }>('GET', `/device/${d.id.id}/credentials`)).credentialsId };
  }

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'ota-coap-e2e-'));
    server = await startServer(dataDir, { TB_QUEUE_CORE_OTA_PACK_SIZE: '10', TB_QUEUE_CORE_OTA_PACK_INTERVAL_MS: '100' });
    admin = await adminClient(server.api);
    port = (await admin.endpoint('COAP')).port;
    profileId = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'coap-fleet' })).id.id;
    const info = await admin.firmware(profileId, 'coap-fw', '1.2.0', firmware);
    packageId = info.id.id;
    socket = createSocket('udp4');
    agent = new Agent({ socket });
  });

  after(async () => {
    agent?.close();
    await new Promise<void>((resolve) => (socket ? socket.close(() => resolve()) : resolve()));
    if (server) await stopServer(server);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('notifies an observing device on assignment; it downloads block-wise, verifies and reports', async () => {
    const d = await createDevice('coap-1');
    const obs = await coapObserve(agent, port, { pathname: `/api/v1/${d.token}/attributes` });
    expect(obs.first.code).to.equal('2.05');
    await admin.request('POST', `/deviceProfile/${profileId}`, { firmwareId: { id: packageId, entityType: 'OTA_PACKAGE' } });
    let update: Record<string, unknown> = {};
    while (typeof update.fw_title !== 'string') update = JSON.parse((await obs.next()).payload.toString()) as Record<string, unknown>;
    obs.stream.close();
    expect(update).to.include({ fw_title: 'coap-fw', fw_version: '1.2.0', fw_size: firmware.length, fw_checksum_algorithm: 'SHA256' });

    const report = (state: string, extra: Record<string, unknown> = {}) =>
      coapRequest(agent, port, { pathname: `/api/v1/${d.token}/telemetry`, method: 'POST', payload: JSON.stringify({ fw_state: state, ...extra }) });
    expect((await report('DOWNLOADING')).code).to.equal('2.01');
    const res = await coapRequest(agent, port, { pathname: `/fw/${d.token}`, query: 'title=coap-fw&version=1.2.0' });
    expect(res.code).to.equal('2.05');
    expect(checksumOf('SHA256', res.payload)).to.equal(update.fw_checksum);
    await report('DOWNLOADED');
    await report('VERIFIED');
    await report('UPDATING');
    await report('UPDATED', { current_fw_title: 'coap-fw', current_fw_version: '1.2.0' });
    await eventually(async () => {
      const p = (await admin.request<{ packages: Array<{ packageId: string; updated: number }> }>('GET', '/ota/metrics')).packages.find((x) => x.packageId === packageId);
      return p?.updated === 1;
    }, 'the device UPDATED in the metrics');
  });

  it("serves libcoap's client a 1 MB package block by block, at 1024 and 256 byte blocks", async () => {
    const d = await createDevice('coap-libcoap');
    for (const block of ['1024', '256']) {
      const out = path.join(dataDir, `libcoap-${block}.bin`);
      const run = await libcoap(['-m', 'get', '-b', block, '-o', out, `coap://127.0.0.1:${port}/fw/${d.token}?title=coap-fw&version=1.2.0`]);
      expect(
        run.codes.every((c) => c === '2.05'),
        run.codes.slice(0, 5).join(','),
      ).to.equal(true);
      expect(run.blocks.length).to.equal(firmware.length / Number(block));
      expect(sha256(await readFile(out))).to.equal(sha256(firmware));
    }
  });

  it('answers the error cases with 4.xx and an empty 2.05 past the end', async () => {
    const d = await createDevice('coap-errors');
    const code = async (url: string): Promise<string> => (await libcoap(['-m', 'get', url])).codes[0] as string;
    expect(await code(`coap://127.0.0.1:${port}/fw/no-such-token`)).to.equal('4.01');
    expect(await code(`coap://127.0.0.1:${port}/fw/${d.token}?title=coap-fw&version=9.9`)).to.equal('4.00');
    const empty = (await admin.request<Ref>('POST', '/deviceProfile', { name: 'coap-empty' })).id.id;
    const bare = await createDevice('coap-bare', empty);
    expect(await code(`coap://127.0.0.1:${port}/fw/${bare.token}`)).to.equal('4.04');
    const past = await coapRequest(agent, port, { pathname: `/fw/${d.token}`, query: `size=1024&chunk=${firmware.length / 1024}` });
    expect(past.code).to.equal('2.05');
    expect(past.payload.length).to.equal(0);
  });
});
