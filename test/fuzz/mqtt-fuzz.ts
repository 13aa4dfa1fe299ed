/**
 * The MQTT endpoint under fuzzing: connections carrying well-formed packets (CONNECT with the
 * device's token or another, SUBSCRIBE, PUBLISH to every ThingsBoard topic and others, PINGREQ,
 * acknowledgements, AUTH) made by mqtt-packet and then mutated byte by byte, and connections of
 * raw random bytes. No input may crash the server or leave a session behind; raw bytes (which
 * cannot carry a CONNECT with the device's token) must change nothing stored.
 */
import fc from 'fast-check';
import { generate, type Packet } from 'mqtt-packet';
import net from 'node:net';
import { mutate, mutation, type Mutation } from './mutate';
import { count, newReport, note, pool, type FuzzReport } from './report';
import type { FuzzTarget } from './target';

const TOPICS = [
  'v1/devices/me/telemetry',
  'v1/devices/me/attributes',
  'v1/devices/me/attributes/request/1',
  'v1/devices/me/attributes/response/+',
  'v2/fw/request/1/chunk/0',
  'v2/fw/request/7/chunk/99999',
  'v2/sw/request/2/chunk/0',
  'v2/fw/request/-1/chunk/0x1',
  'v2/fw/response/+/chunk/+',
  'v1/devices/me/rpc/request/+',
  'v1/devices/me/rpc/response/1',
  'v2/a/req/1',
  'v1/devices/me/claim',
  '#',
  '+/+',
  'v1/devices/me/attributes/request/9223372036854775807',
];

const packet = (token: string): fc.Arbitrary<Packet> => {
  const version = fc.constantFrom<3 | 4 | 5>(3, 4, 5);
  const topic = fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...TOPICS) }, { weight: 1, arbitrary: fc.string({ maxLength: 40 }) });
  const payload = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
    fc
      .constantFrom('1024', '0', '-1', '99999999999', '', '{"fw_state":"UPDATED","current_fw_title":"fuzz-fw","current_fw_version":"1.0"}', '{"sharedKeys":"fw_title,fw_version"}')
      .map((s) => Buffer.from(s)),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  );
  const messageId = fc.integer({ min: 1, max: 65535 });
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .record({
          v: version,
          user: fc.oneof({ weight: 4, arbitrary: fc.constant(token) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }),
          keepalive: fc.nat({ max: 65535 }),
          clientId: fc.string({ maxLength: 30 }),
          clean: fc.boolean(),
        })
        .map(({ v, user, keepalive, clientId, clean }): Packet => ({
          cmd: 'connect',
          protocolId: v === 3 ? 'MQIsdp' : 'MQTT',
          protocolVersion: v,
          username: user,
          keepalive,
          clientId,
          clean,
        })),
    },
    {
      weight: 4,
      arbitrary: fc
        .record({ topic, payload, qos: fc.constantFrom<0 | 1 | 2>(0, 1, 2), messageId, retain: fc.boolean() })
        .map(({ topic: t, payload: p, qos, messageId: id, retain }): Packet => ({ cmd: 'publish', topic: t, payload: p, qos, messageId: id, retain, dup: false })),
    },
    {
      weight: 2,
      arbitrary: fc
        .record({ messageId, subs: fc.array(fc.record({ topic, qos: fc.constantFrom<0 | 1 | 2>(0, 1, 2) }), { minLength: 1, maxLength: 4 }) })
        .map(({ messageId: id, subs }): Packet => ({ cmd: 'subscribe', messageId: id, subscriptions: subs })),
    },
    {
      weight: 1,
      arbitrary: fc
        .record({ messageId, topics: fc.array(topic, { minLength: 1, maxLength: 3 }) })
        .map(({ messageId: id, topics }): Packet => ({ cmd: 'unsubscribe', messageId: id, unsubscriptions: topics })),
    },
    { weight: 1, arbitrary: fc.constantFrom<Packet>({ cmd: 'pingreq' }, { cmd: 'disconnect' }, { cmd: 'pingresp' }, { cmd: 'connack', returnCode: 0, sessionPresent: false }) },
    { weight: 1, arbitrary: messageId.map((id): Packet => ({ cmd: 'puback', messageId: id })) },
    { weight: 1, arbitrary: messageId.map((id): Packet => ({ cmd: 'pubrel', messageId: id })) },
  );
};

const encode = (p: Packet): Buffer => {
  try {
    return generate(p, { protocolVersion: p.cmd === 'connect' ? p.protocolVersion : 4 });
  } catch {
    return Buffer.from([0xc0, 0x00]); // a packet mqtt-packet will not make: PINGREQ instead
  }
};

/**
 * One connection: a CONNECT first (mostly the device's, mostly intact, so that what follows is
 * handled), then packets of every kind, each mutated or not.
 */
const session = (token: string): fc.Arbitrary<Buffer[]> =>
  fc
    .tuple(
      fc.record({ v: fc.constantFrom<3 | 4 | 5>(3, 4, 5), valid: fc.nat({ max: 9 }), keepalive: fc.nat({ max: 120 }) }),
      fc.oneof({ weight: 4, arbitrary: fc.constant<Mutation>({ kind: 'none' }) }, { weight: 1, arbitrary: mutation }),
      fc.array(fc.tuple(packet(token), fc.oneof(fc.constant<Mutation>({ kind: 'none' }), mutation)), { minLength: 1, maxLength: 9 }),
    )
    .map(([c, m, frames]) => [
      mutate(
        encode({
          cmd: 'connect',
          protocolId: c.v === 3 ? 'MQIsdp' : 'MQTT',
          protocolVersion: c.v,
          username: c.valid ? token : 'not-a-token',
          keepalive: c.keepalive,
          clientId: 'fuzz',
          clean: true,
        }),
        m,
      ),
      ...frames.map(([p, fm]) => mutate(encode(p), fm)),
    ]);

const raw = fc.array(
  fc.uint8Array({ minLength: 1, maxLength: 200 }).map((a) => Buffer.from(a)),
  { minLength: 1, maxLength: 10 },
);

/**
 * Sends the frames on one connection, then a PINGREQ: once its PINGRESP arrives (the server has
 * handled everything before it) or after a short wait (a frame still expecting bytes swallows it),
 * half-closes and waits for the server to close.
 */
function play(port: number, frames: Buffer[]): Promise<'answered' | 'closed by server' | 'unanswered' | 'timeout'> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let outcome: 'answered' | 'closed by server' | 'unanswered' = 'closed by server';
    let tail = Buffer.alloc(0);
    socket.on('error', () => undefined);
    const finish = (why: typeof outcome): void => {
      clearTimeout(quiet);
      outcome = why;
      socket.end();
    };
    socket.on('data', (d: Buffer) => {
      tail = Buffer.concat([tail, d]).subarray(-2);
      if (tail[0] === 0xd0 && tail[1] === 0x00) finish('answered');
    });
    const quiet = setTimeout(() => finish('unanswered'), 300);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, 5000);
    socket.once('close', () => {
      clearTimeout(quiet);
      clearTimeout(timer);
      resolve(outcome);
    });
    socket.once('connect', () => {
      for (const f of frames) socket.write(f);
      socket.write(Buffer.from([0xc0, 0x00]));
    });
  });
}

/** `runs` inputs (frames): about two thirds mutated packets, a third raw bytes, 16 connections at once. */
export async function fuzzMqtt(t: FuzzTarget, runs: number, seed: number): Promise<FuzzReport> {
  const report = newReport('MQTT');
  const started = Date.now();
  const port = t.mqttPort;
  const framed = session('fuzz-device-token');
  let sent = 0;
  for (let round = 0; sent < runs; round++) {
    const packets = fc.sample(framed, { numRuns: 200, seed: seed + round });
    await pool(packets, 16, async (frames) => {
      count(report, await play(port, frames));
      report.inputs += frames.length;
    });
    sent += packets.reduce((n, f) => n + f.length, 0);
    // Raw bytes: nothing stored may change.
    const before = t.fingerprint();
    const noise = fc.sample(raw, { numRuns: 100, seed: seed + 1_000_000 + round });
    await pool(noise, 16, async (frames) => {
      count(report, `raw ${await play(port, frames)}`);
      report.inputs += frames.length;
    });
    sent += noise.reduce((n, f) => n + f.length, 0);
    if (t.fingerprint() !== before) note(report.refusedButChanged, `raw bytes of round ${round} (seed ${seed + 1_000_000 + round}) changed the stored state`);
  }
  // Every connection is closed: no session may be left counted.
  for (let i = 0; i < 100 && t.mqtt.connections > 0; i++) await new Promise((r) => setTimeout(r, 50));
  if (t.mqtt.connections !== 0) note(report.problems, `${t.mqtt.connections} MQTT sessions still counted after every connection closed`);
  report.ms = Date.now() - started;
  return report;
}
