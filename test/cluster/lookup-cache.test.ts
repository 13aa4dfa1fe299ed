/**
 * Two engines on one PostgreSQL database, each with its own data directory: a change made on one
 * reaches the other's device lookup caches through the cluster bus (LISTEN/NOTIFY), within a
 * second, although their entries would live an hour. Runs in the PostgreSQL run only.
 */
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { OtaEngine } from '../../server/engine';
import type { TenantId } from '../../server/ids';
import type { OtaPackage } from '../../server/store/ota-packages';
import { eventually } from '../support/eventually';
import { quietLogger } from '../support/api-harness';
import { databaseUrlFor } from '../support/test-store';

describe('device lookup caches on two instances sharing PostgreSQL', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const engines: OtaEngine[] = [];
  let a: OtaEngine;
  let b: OtaEngine;
  let tenantId: TenantId;
  let profileId: string;
  const bytes1 = randomBytes(1500);
  const bytes2 = randomBytes(1200);
  let pkg1: OtaPackage;
  let pkg2: OtaPackage;

  before(async () => {
    for (let i = 0; i < 2; i++) dirs.push(await mkdtemp(path.join(os.tmpdir(), `ota-lookups-${i}-`)));
    const databaseUrl = (await databaseUrlFor(dirs[0] as string)) as string;
    for (const dataDir of dirs) {
      engines.push(
        await OtaEngine.open({
          dataDir,
          databaseUrl,
          http: { port: 0, host: '127.0.0.1' },
          admin: { password: 'lookup-cache-tests' },
          logger: quietLogger,
          lookupCache: { ttlMs: 3_600_000 },
        }),
      );
    }
    [a, b] = engines as [OtaEngine, OtaEngine];
    tenantId = a.bootstrap.admin.tenantId;
    profileId = (await a.profiles.save(tenantId, { name: 'lookups' })).id;
    const upload = async (title: string, data: Buffer): Promise<OtaPackage> =>
      a.packages.createWithData(
        tenantId,
        { deviceProfileId: profileId as OtaPackage['deviceProfileId'], type: 'FIRMWARE', title, version: '1' },
        await a.packages.stage(Readable.from([data]), 'SHA256'),
        {
          fileName: `${title}.bin`,
          contentType: 'application/octet-stream',
          checksumAlgorithm: 'SHA256',
          checksum: null,
        },
      );
    pkg1 = await upload('lookups-1', bytes1);
    pkg2 = await upload('lookups-2', bytes2);
  });

  after(async () => {
    for (const e of engines) await e.close();
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /** A device's download from instance B. */
  async function fromB(token: string, pkg: OtaPackage): Promise<{ status: number; body: Buffer }> {
    const res = await fetch(`http://127.0.0.1:${b.httpAddress?.port}/api/v1/${token}/firmware?title=${pkg.title}&version=1`);
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  }

  const newDevice = (token: string, pkg: OtaPackage) =>
    a.devices.save(tenantId, { name: `lookups-${token}`, deviceProfileId: { id: profileId }, firmwareId: { id: pkg.id } }, { accessToken: token });

  it('refuses on B, within a second, a token changed on A', async () => {
    const d = await newDevice('lookups-old', pkg1);
    expect((await fromB('lookups-old', pkg1)).body).to.deep.equal(bytes1);
    await a.devices.updateCredentials(tenantId, d.id, { credentialsType: 'ACCESS_TOKEN', credentialsId: 'lookups-new' });
    await eventually(async () => (await fromB('lookups-old', pkg1)).status === 401, 'the old token refused on B', { timeoutMs: 1000, everyMs: 20 });
    expect((await fromB('lookups-new', pkg1)).body).to.deep.equal(bytes1);
  });

  it('refuses on B, within a second, the token of a device deleted on A', async () => {
    const d = await newDevice('lookups-deleted', pkg1);
    expect((await fromB('lookups-deleted', pkg1)).status).to.equal(200);
    await a.devices.delete(tenantId, d.id);
    await eventually(async () => (await fromB('lookups-deleted', pkg1)).status === 401, 'the token refused on B', { timeoutMs: 1000, everyMs: 20 });
  });

  it('serves on B, within a second, the package a device was reassigned to on A', async () => {
    const d = await newDevice('lookups-moved', pkg1);
    expect((await fromB('lookups-moved', pkg1)).body).to.deep.equal(bytes1);
    await a.devices.save(tenantId, { id: { id: d.id }, name: d.name, deviceProfileId: { id: profileId }, firmwareId: { id: pkg2.id } });
    await eventually(async () => (await fromB('lookups-moved', pkg1)).status === 400, 'the old package refused on B', { timeoutMs: 1000, everyMs: 20 });
    expect((await fromB('lookups-moved', pkg2)).body).to.deep.equal(bytes2);
  });
});
