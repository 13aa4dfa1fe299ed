import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { OtaEngine } from '../../server/engine';
import { trackTimers } from '../nodes/flow-helper';
import { quietLogger } from './pipeline-support';

describe('engine that cannot start', () => {
  let dir: string;
  let taken: net.Server;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'ota-engine-open-'));
    taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  });
  afterEach(async () => {
    await new Promise((resolve) => taken.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  // The dashboard's watcher, made with the engine, polls every few seconds for good: an engine whose
  // port was taken (ota-server's red status) left it running, and it later showed in other tests.
  it('fails on a taken port and leaves no timer running', async () => {
    const timers = trackTimers();
    const port = (taken.address() as net.AddressInfo).port;
    const opening = OtaEngine.open({ dataDir: dir, http: { port, host: '127.0.0.1' }, admin: { username: 'tenant@thingsboard.org' }, logger: quietLogger });
    await opening.then(
      () => expect.fail('the engine started on a taken port'),
      (err: NodeJS.ErrnoException) => expect(err.code).to.equal('EADDRINUSE'),
    );
    expect(await timers.live()).to.deep.equal([]);
  });
});
