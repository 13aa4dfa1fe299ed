/**
 * The CoAP endpoint under fuzzing, black-box (its internals are being rewritten): datagrams made
 * by coap-packet for every ThingsBoard path (telemetry, attributes, firmware, software, rpc) with
 * hostile options (Observe, Block1/Block2, queries) and then mutated byte by byte, and raw random
 * datagrams. After every batch a well-formed request must still be answered; raw datagrams must
 * change nothing stored.
 */
import fc from 'fast-check';
import { generate, parse, type OptionName, type Packet } from 'coap-packet';
import { createSocket, type Socket } from 'node:dgram';
import { mutate, mutation, type Mutation } from './mutate';
import { count, newReport, note, type FuzzReport } from './report';
import type { FuzzTarget } from './target';

const LAST_SEGMENTS = ['telemetry', 'attributes', 'firmware', 'software', 'rpc', 'claim', 'provision', 'x'];
const QUERIES = [
  'title=fuzz-fw',
  'version=1.0',
  'size=1024',
  'size=0',
  'size=-1',
  'chunk=0',
  'chunk=0x1',
  'chunk=99999999999',
  'clientKeys=a',
  'sharedKeys=fw_title',
  'timeout=1',
  '',
];

const option = fc.oneof(
  fc.record({ name: fc.constantFrom<OptionName>('Observe'), value: fc.constantFrom(Buffer.alloc(0), Buffer.from([1]), Buffer.from([0xff, 0xff, 0xff, 0xff])) }),
  fc.record({ name: fc.constantFrom<OptionName>('Block2', 'Block1'), value: fc.uint8Array({ maxLength: 4 }).map((a) => Buffer.from(a)) }),
  fc.record({
    name: fc.constantFrom<OptionName>('Content-Format', 'Accept', 'Size1', 'Size2', 'Max-Age', 'ETag', 'If-None-Match'),
    value: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
  }),
  fc.record({ name: fc.constant<OptionName>('Uri-Query'), value: fc.oneof(fc.constantFrom(...QUERIES), fc.string({ maxLength: 20 })).map((s) => Buffer.from(s)) }),
);

const request = (token: string): fc.Arbitrary<Packet> =>
  fc
    .record({
      code: fc.oneof({ weight: 5, arbitrary: fc.constantFrom('0.01', '0.02', '0.03', '0.04') }, { weight: 1, arbitrary: fc.constantFrom('0.00', '0.05', '2.05', '7.31') }),
      confirmable: fc.boolean(),
      reset: fc.boolean().map((b) => b && Math.random() < 0.05),
      ack: fc.boolean().map((b) => b && Math.random() < 0.05),
      messageId: fc.integer({ min: 0, max: 65535 }),
      token: fc.uint8Array({ maxLength: 8 }).map((a) => Buffer.from(a)),
      path: fc.tuple(
        fc.constantFrom('api', 'x'),
        fc.constantFrom('v1', 'v2'),
        fc.oneof({ weight: 5, arbitrary: fc.constant(token) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }),
        fc.constantFrom(...LAST_SEGMENTS),
        fc.option(fc.constantFrom('updates', 'request', '1', 'x'), { nil: undefined }),
      ),
      options: fc.array(option, { maxLength: 4 }),
      payload: fc.oneof(
        fc.constant(Buffer.alloc(0)),
        fc.jsonValue({ maxDepth: 2 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
        fc.constantFrom('{"fw_state":"DOWNLOADING"}', '{"temperature":1}').map((s) => Buffer.from(s)),
        fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
      ),
    })
    .map((r): Packet => ({
      code: r.code,
      confirmable: r.confirmable,
      reset: r.reset,
      ack: r.ack,
      messageId: r.messageId,
      token: r.token,
      payload: r.payload,
      options: [...r.path.filter((s): s is string => s !== undefined).map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) })), ...r.options],
    }));

const datagram = (token: string): fc.Arbitrary<Buffer> =>
  fc.tuple(request(token), fc.oneof(fc.constant<Mutation>({ kind: 'none' }), mutation)).map(([p, m]) => {
    let bytes: Buffer;
    try {
      bytes = generate(p);
    } catch {
      bytes = Buffer.from([0x40, 0x00, 0x00, 0x01]); // an empty CON (a ping): coap-packet refused what was drawn
    }
    return mutate(bytes, m);
  });

const rawDatagram = fc.uint8Array({ minLength: 0, maxLength: 300 }).map((a) => Buffer.from(a));

/** A well-formed request the server must answer: GET the device's attributes, confirmable. */
async function probe(socket: Socket, port: number, token: string, messageId: number): Promise<boolean> {
  const tokenBytes = Buffer.from([0xfe, messageId & 0xff, messageId >> 8]);
  const bytes = generate({
    code: '0.01',
    confirmable: true,
    messageId,
    token: tokenBytes,
    options: ['api', 'v1', token, 'attributes'].map((s) => ({ name: 'Uri-Path' as const, value: Buffer.from(s) })),
  });
  return new Promise((resolve) => {
    const onMessage = (m: Buffer): void => {
      try {
        const p = parse(m);
        // Any answer (the device has no attributes yet: 4.04) shows the server is still serving.
        if (p.token.equals(tokenBytes) && p.code !== '0.00') done(true);
      } catch {
        /* not ours */
      }
    };
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      clearInterval(resend);
      socket.off('message', onMessage);
      resolve(ok);
    };
    socket.on('message', onMessage);
    // Datagrams may be lost; a probe is sent again, as a CoAP client retransmits [RFC 7252 §4.2].
    const resend = setInterval(() => socket.send(bytes, port, '127.0.0.1'), 500);
    const timer = setTimeout(() => done(false), 5000);
    socket.send(bytes, port, '127.0.0.1');
  });
}

/** `runs` datagrams: batches of 100 (mutated requests, then raw bytes), each followed by a probe. */
export async function fuzzCoap(t: FuzzTarget, runs: number, seed: number): Promise<FuzzReport> {
  const report = newReport('CoAP');
  const started = Date.now();
  const port = t.coapPort;
  const token = 'fuzz-device-token';
  // Several source ports: the server keeps state per peer.
  const sockets = await Promise.all(
    Array.from({ length: 9 }, async () => {
      const s = createSocket('udp4');
      s.on('error', () => undefined);
      // Answers to fuzzed datagrams: a 5.xx is the server's own failure, counted apart.
      s.on('message', (m: Buffer) => {
        try {
          const code = parse(m).code;
          if (code.startsWith('5.')) count(report, `answered ${code}`);
        } catch {
          count(report, 'unparsable answer');
        }
      });
      await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
      return s;
    }),
  );
  // The prober sends nothing else: a fuzzed datagram from its port could share a probe's message
  // id, which the server then rightly treats as a duplicate [RFC 7252 §4.5].
  const prober = sockets.pop() as Socket;
  let probeId = 1;
  for (let round = 0; report.inputs < runs; round++) {
    const raw = round % 3 === 2;
    const before = t.fingerprint();
    const batch = raw ? fc.sample(rawDatagram, { numRuns: 100, seed: seed + round }) : fc.sample(datagram(token), { numRuns: 100, seed: seed + round });
    batch.forEach((d, i) => (sockets[i % sockets.length] as Socket).send(d, port, '127.0.0.1'));
    report.inputs += batch.length;
    if (process.env.FUZZ_TRACE) console.error(`round ${round}`);
    const answered = await probe(prober, port, token, probeId++ & 0xffff);
    count(report, answered ? 'probe answered' : 'probe unanswered');
    if (!answered) note(report.problems, `no answer to a well-formed request after round ${round} (seed ${seed + round}, ${raw ? 'raw' : 'mutated'})`);
    if (raw && t.fingerprint() !== before) note(report.refusedButChanged, `raw datagrams of round ${round} (seed ${seed + round}) changed the stored state`);
  }
  await Promise.all([...sockets, prober].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  report.ms = Date.now() - started;
  return report;
}

/** The mutated datagrams of one round, to replay a finding. */
export const datagramsOfRound = (seed: number): Buffer[] => fc.sample(datagram('fuzz-device-token'), { numRuns: 100, seed });
