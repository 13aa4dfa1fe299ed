import { expect } from 'chai';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import type { DeviceRow } from '../../server/store/fleet-read-model';
import type { LiveEvent, LiveMetrics } from '../../server/fleet/fleet-watch';
import { LiveOutbox } from '../../server/fleet/live-outbox';
import { LIVE_STREAM_DEFAULTS, LiveStreams, liveStreamSettingsFromEnv } from '../../server/fleet/live-streams';
import type { UserId } from '../../server/ids';
import { OtaError } from '../../server/errors';

/** A socket whose client reads only when told: what it was given stays in its buffer until then. */
class Client extends Writable {
  private readonly held: Array<() => void> = [];
  private text = '';

  constructor() {
    super({ highWaterMark: 1024, decodeStrings: false });
  }

  override _write(chunk: string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk;
    this.held.push(done);
  }

  /** Reads everything, including what the outbox writes on `drain` meanwhile. */
  async readAll(): Promise<void> {
    while (this.held.length) {
      while (this.held.length) (this.held.shift() as () => void)();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** The events read so far (comment lines left out). */
  events(): Array<{ event: string; data: unknown }> {
    return this.text
      .split('\n\n')
      .filter((frame) => frame.startsWith('event: '))
      .map((frame) => {
        const [head, data] = frame.split('\n') as [string, string];
        return { event: head.slice('event: '.length), data: JSON.parse(data.slice('data: '.length)) as unknown };
      });
  }

  get comments(): number {
    return this.text.split('\n\n').filter((frame) => frame.startsWith(': ')).length;
  }
}

const row = (id: string, state: string): DeviceRow => ({ id, name: id, firmware: { state } }) as unknown as DeviceRow;
const devices = (rows: DeviceRow[], removed: string[] = [], more = false): LiveEvent => ({ event: 'devices', data: { rows, removed, more } });
const metrics = (depth: number): LiveEvent => ({ event: 'metrics', data: { queue: { depth, paused: false } } as LiveMetrics });
const progress: LiveEvent = { event: 'progress', data: { devices: [] } };
/** Events of one row each until the client's buffer is full; answers how many. */
function backUp(client: Client, outbox: LiveOutbox): number {
  let n = 0;
  while (!client.writableNeedDrain) outbox.send(devices([row(`filler-${n++}`, 'QUEUED')]));
  return n;
}

describe('a live stream whose client stops reading', () => {
  it('writes every event at once while the client reads', async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    expect(outbox.send(devices([row('a', 'QUEUED')]))).to.equal(true);
    expect(outbox.send(metrics(1))).to.equal(true);
    expect(outbox.send(progress)).to.equal(true);
    await client.readAll();
    expect(client.events().map((e) => e.event)).to.deep.equal(['devices', 'metrics', 'progress']);
    expect(outbox.pendingDevices).to.equal(0);
  });

  it('keeps the latest row of each device and the latest metrics, and sends them once the client reads again', async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    const written = backUp(client, outbox);
    outbox.send(devices([row('a', 'QUEUED'), row('b', 'QUEUED')]));
    outbox.send(metrics(2));
    outbox.send(devices([row('a', 'DOWNLOADING')], ['b']));
    outbox.send(devices([row('c', 'UPDATED')]));
    outbox.send(metrics(3));
    expect(outbox.pendingDevices).to.equal(3);
    const buffered = client.writableLength;
    await client.readAll();
    const after = client.events().slice(written);
    expect(after.map((e) => e.event)).to.deep.equal(['devices', 'metrics']);
    expect(after[0]?.data).to.deep.equal({ rows: [row('a', 'DOWNLOADING'), row('c', 'UPDATED')], removed: ['b'], more: false });
    expect(after[1]?.data).to.deep.equal({ queue: { depth: 3, paused: false } });
    expect(buffered, 'nothing written while backed up').to.be.below(1024 + 200);
    expect(outbox.pendingDevices).to.equal(0);
  });

  it('refuses progress while backed up (LiveProgress offers it again, newer)', async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    backUp(client, outbox);
    expect(outbox.send(progress)).to.equal(false);
    await client.readAll();
    expect(outbox.send(progress)).to.equal(true);
  });

  it('tells the page to reload once more devices changed than it keeps, and keeps none', async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    const written = backUp(client, outbox);
    for (let i = 0; i < 10_000; i++) outbox.send(devices([row(`d-${i}`, 'QUEUED')]));
    expect(outbox.pendingDevices).to.equal(0);
    expect(client.writableLength).to.be.below(1024 + 200);
    await client.readAll();
    expect(client.events().slice(written)).to.deep.equal([{ event: 'devices', data: { rows: [], removed: [], more: true } }]);
  });

  it("turns the watcher's own reload (more) into the page's reload", async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    const written = backUp(client, outbox);
    outbox.send(devices([row('a', 'QUEUED')], [], true));
    outbox.send(devices([row('b', 'QUEUED')]));
    await client.readAll();
    expect(client.events().slice(written)).to.deep.equal([{ event: 'devices', data: { rows: [], removed: [], more: true } }]);
  });

  it('sends no keep-alive to a client that has not read what came before', async () => {
    const client = new Client();
    const outbox = new LiveOutbox(client, 10);
    outbox.comment('keep-alive');
    backUp(client, outbox);
    outbox.comment('keep-alive');
    await client.readAll();
    expect(client.comments).to.equal(1);
  });
});

describe('the open live streams', () => {
  const sink = () => new Client();

  it('OTA_DASHBOARD_STREAM_BACKLOG and OTA_DASHBOARD_STREAMS_PER_USER are 200 and 10 unless set, and refuse what is no whole number in range', () => {
    expect(liveStreamSettingsFromEnv({})).to.deep.equal(LIVE_STREAM_DEFAULTS);
    expect(LIVE_STREAM_DEFAULTS).to.deep.equal({ maxBacklog: 200, perUser: 10 });
    expect(liveStreamSettingsFromEnv({ OTA_DASHBOARD_STREAM_BACKLOG: '50', OTA_DASHBOARD_STREAMS_PER_USER: '2' })).to.deep.equal({ maxBacklog: 50, perUser: 2 });
    for (const bad of ['0', '100001', '1.5', 'lots', ' ']) {
      expect(() => liveStreamSettingsFromEnv({ OTA_DASHBOARD_STREAM_BACKLOG: bad }), bad).to.throw(
        `OTA_DASHBOARD_STREAM_BACKLOG must be a whole number of devices from 1 to 100000, not '${bad}'`,
      );
    }
    for (const bad of ['0', '1001', '-3']) {
      expect(() => liveStreamSettingsFromEnv({ OTA_DASHBOARD_STREAMS_PER_USER: bad }), bad).to.throw(
        `OTA_DASHBOARD_STREAMS_PER_USER must be a whole number of streams from 1 to 1000, not '${bad}'`,
      );
    }
  });

  it('lets a user hold as many streams as allowed, refuses the next with 429, and counts each user apart', () => {
    const streams = new LiveStreams({ maxBacklog: 10, perUser: 2 });
    const alice = randomUUID() as UserId;
    const bob = randomUUID() as UserId;
    const first = streams.open(alice, sink());
    streams.open(alice, sink());
    let refused: unknown;
    try {
      streams.open(alice, sink());
    } catch (err) {
      refused = err;
    }
    expect(refused).to.be.instanceOf(OtaError);
    expect((refused as OtaError).toJSON()).to.include({ status: 429, errorCode: 33 });
    expect((refused as OtaError).message).to.contain('OTA_DASHBOARD_STREAMS_PER_USER');
    expect(() => streams.open(bob, sink())).not.to.throw();
    expect(() => streams.checkRoom(bob, 1), 'one stream and one waiting ticket').to.throw(OtaError);
    streams.close(alice, first);
    expect(() => streams.open(alice, sink())).not.to.throw();
  });

  it('adds up what every stream holds for its client', () => {
    const streams = new LiveStreams({ maxBacklog: 100, perUser: 5 });
    const user = randomUUID() as UserId;
    const client = sink();
    const outbox = streams.open(user, client);
    backUp(client, outbox);
    outbox.send(devices([row('a', 'QUEUED'), row('b', 'QUEUED')]));
    const { bytes, devices: waiting } = streams.backlog();
    expect(waiting).to.equal(2);
    expect(bytes).to.equal(client.writableLength).and.to.be.above(1024);
  });
});
