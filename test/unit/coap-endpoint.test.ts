import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer, type IncomingMessage, type OutgoingMessage, type Server } from 'coap';
import { CoapEndpoint, type RequestHandler } from '../../server/transports/coap/endpoint';
import type { CoapResponse } from '../../server/transports/coap/client';
import { encodeBlock } from '../../server/transports/coap/block-wise';
import { Code, type Peer, type Reply } from '../../server/transports/coap/messages';
import { optionOf, RawPeer, uintOf, uriOptions } from '../support/coap-clients';
import { realTimers } from '../../server/timers';

/** Bytes that differ from block to block, so a block out of place shows. */
const pattern = (size: number): Buffer => Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

/** The CoAP endpoint core: the client role against third-party servers, and the message layer's bounds. */
describe('CoAP endpoint', function () {
  const endpoints: CoapEndpoint[] = [];
  const rawPeers: RawPeer[] = [];

  async function endpoint(
    handler: RequestHandler | null = null,
    options: Partial<ConstructorParameters<typeof CoapEndpoint>[0]> = {},
  ): Promise<{ ep: CoapEndpoint; port: number }> {
    const ep = new CoapEndpoint({ port: 0, host: '127.0.0.1', ...options }, handler);
    endpoints.push(ep);
    return { ep, port: (await ep.start()).port };
  }

  afterEach(async () => {
    for (const ep of endpoints.splice(0)) await ep.stop();
    for (const p of rawPeers.splice(0)) await p.close();
  });

  describe("client role against libcoap's coap-server-notls", function () {
    let server: ChildProcess;
    let peer: Peer;

    before(async function () {
      const port = await freeUdpPort();
      // -d lets clients create resources with PUT (block-wise, Block1) and read them back (Block2).
      server = spawn('coap-server-notls', ['-A', '127.0.0.1', '-p', String(port), '-d', '8'], { stdio: 'ignore' });
      peer = { address: '127.0.0.1', port };
      const { ep } = await endpoint(null, { ackTimeoutMs: 100, ackRandomFactor: 1 });
      // Up once it answers (the server may take a moment to bind).
      for (let attempt = 0; ; attempt++) {
        try {
          await ep.request(peer, { method: 'GET', path: '/' }, { timeoutMs: 500 });
          break;
        } catch (err) {
          if (attempt >= 20) throw err;
        }
      }
    });

    after(() => {
      server.kill('SIGKILL');
    });

    it('sends a confirmable GET and resolves with the response', async () => {
      const { ep } = await endpoint();
      const res = await ep.request(peer, { method: 'GET', path: '/' });
      expect(res.code).to.equal('2.05');
      expect(res.payload.toString()).to.match(/libcoap/);
    });

    it('PUTs a body block-wise (Block1) and GETs it back block-wise (Block2), byte for byte, at 64 and 1024-byte blocks', async () => {
      const { ep } = await endpoint();
      for (const blockSize of [64, 1024]) {
        const body = pattern(20_000 + blockSize);
        const put = await ep.request(peer, { method: 'PUT', path: `/upload-${blockSize}`, payload: body, contentFormat: 42 }, { blockSize });
        expect(put.code, `PUT at ${blockSize}`).to.be.oneOf(['2.01', '2.04']);
        const got = await ep.request(peer, { method: 'GET', path: `/upload-${blockSize}` }, { blockSize });
        expect(got.code).to.equal('2.05');
        expect(got.payload.equals(body), `GET at ${blockSize} gives the bytes PUT`).to.equal(true);
      }
    });

    it('sends a non-confirmable request and takes its non-confirmable response', async () => {
      const { ep } = await endpoint();
      const res = await ep.request(peer, { method: 'GET', path: '/', confirmable: false });
      expect(res.code).to.equal('2.05');
    });

    it('observes /time: notifications in order with rising Observe values, until cancelled', async function () {
      this.timeout(15_000);
      const { ep } = await endpoint();
      const seen: CoapResponse[] = [];
      let twoMore: () => void = () => undefined;
      const gotTwo = new Promise<void>((resolve) => (twoMore = resolve));
      const obs = await ep.observe(peer, { method: 'GET', path: '/time' }, (n) => {
        seen.push(n);
        if (seen.length === 2) twoMore();
      });
      expect(obs.first.code).to.equal('2.05');
      expect(obs.first.observe).to.be.a('number');
      expect(obs.active).to.equal(true);
      await gotTwo;
      const values = [obs.first.observe as number, ...seen.map((n) => n.observe as number)];
      expect(values[1]).to.be.greaterThan(values[0] as number);
      expect(values[2]).to.be.greaterThan(values[1] as number);
      const last = await obs.cancel();
      expect(last?.code).to.equal('2.05');
      expect(last?.observe, 'the deregistering GET is answered without Observe').to.equal(null);
      expect(obs.active).to.equal(false);
    });
  });

  describe("client role against the coap package's server", function () {
    let server: Server;
    let peer: Peer;
    let handle: (req: IncomingMessage, res: OutgoingMessage) => void;

    beforeEach(async () => {
      server = createServer({ type: 'udp4' });
      server.on('request', (req: IncomingMessage, res: OutgoingMessage) => handle(req, res));
      const port = await freeUdpPort();
      await new Promise<void>((resolve, reject) => server.listen(port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve())));
      peer = { address: '127.0.0.1', port };
    });

    afterEach(() => {
      server.close();
    });

    it('uploads a body block-wise (Block1) that the server reassembles, and reads a 5 KB answer sent in Block2 blocks', async () => {
      const big = pattern(5000);
      handle = (req, res) => {
        res.end(req.url === '/big' ? big : Buffer.from(`got ${req.payload.length} bytes`));
      };
      const { ep } = await endpoint();
      const posted = await ep.request(peer, { method: 'POST', path: '/upload', payload: pattern(3000) }, { blockSize: 256 });
      expect(posted.code).to.equal('2.05');
      expect(posted.payload.toString()).to.equal('got 3000 bytes');
      const got = await ep.request(peer, { method: 'GET', path: '/big' });
      expect(got.payload.equals(big)).to.equal(true);
    });

    it('takes a separate response after an empty ACK [RFC 7252 §5.2.2]', async () => {
      // The package sends its empty ACK after 50 ms.
      handle = (_req, res) => void setTimeout(() => res.end('late'), 300);
      const { ep } = await endpoint();
      const res = await ep.request(peer, { method: 'GET', path: '/slow' });
      expect(res.payload.toString()).to.equal('late');
    });

    it('receives every notification of an observed resource, and cancels', async () => {
      let write: ((s: string) => void) | null = null;
      handle = (req, res) => {
        if (req.headers.Observe !== 0) return void res.end('plain');
        res.write('n0');
        write = (s) => res.write(s);
      };
      const { ep } = await endpoint();
      const got: string[] = [];
      let onNext: () => void = () => undefined;
      const obs = await ep.observe(peer, { method: 'GET', path: '/obs' }, (n) => {
        got.push(n.payload.toString());
        onNext();
      });
      expect(obs.first.payload.toString()).to.equal('n0');
      for (const s of ['n1', 'n2', 'n3']) {
        const arrived = new Promise<void>((resolve) => (onNext = resolve));
        (write as unknown as (s: string) => void)(s);
        await arrived;
      }
      expect(got).to.deep.equal(['n1', 'n2', 'n3']);
      await obs.cancel();
      expect(obs.active).to.equal(false);
    });
  });

  describe('client role: failures', function () {
    it('retransmits an unanswered confirmable request MAX_RETRANSMIT times, then rejects with a timeout [RFC 7252 §4.2]', async () => {
      const silent = await RawPeer.open(1);
      rawPeers.push(silent);
      const { ep } = await endpoint(null, { ackTimeoutMs: 20, ackRandomFactor: 1, maxRetransmit: 3 });
      const sent: number[] = [];
      const outcome = ep.request({ address: '127.0.0.1', port: silent.port }, { method: 'GET', path: '/x' }).then(
        () => 'answered',
        (err: Error) => err.message,
      );
      for (let i = 0; i < 4; i++) sent.push((await silent.next()).messageId);
      expect(await outcome).to.match(/did not acknowledge/);
      expect(new Set(sent).size, 'the same message, sent 1 + 3 times').to.equal(1);
    });

    it('rejects when the peer answers the request with a RST', async () => {
      const { ep, port } = await endpoint();
      const rude = await RawPeer.open(port);
      rawPeers.push(rude);
      const outcome = ep.request({ address: '127.0.0.1', port: rude.port }, { method: 'GET', path: '/x' }).then(
        () => 'answered',
        (err: Error) => err.message,
      );
      const req = await rude.next();
      rude.send({ code: '0.00', reset: true, messageId: req.messageId, token: Buffer.alloc(0) });
      expect(await outcome).to.match(/reset/);
    });
  });

  describe('server role: replies answered at once (the block path)', function () {
    it('sends a reply the handler answers at once without arming the piggyback timer', async () => {
      let timersArmed = 0;
      const timers = { ...realTimers, setTimeout: (fn: () => void, ms: number) => (timersArmed++, realTimers.setTimeout(fn, ms)) };
      const ep = new CoapEndpoint({ port: 0, host: '127.0.0.1' }, () => ({ code: Code.CONTENT, payload: Buffer.from('now') }), timers);
      endpoints.push(ep);
      const p = await RawPeer.open((await ep.start()).port);
      rawPeers.push(p);
      p.send({ code: 'GET', confirmable: true, messageId: 7, token: Buffer.from([1]), options: uriOptions('/r') });
      const answer = await p.next();
      expect([answer.code, answer.ack, answer.messageId, answer.payload.toString()]).to.deep.equal(['2.05', true, 7, 'now']);
      expect(timersArmed).to.equal(0);
      expect(ep.load.exchanges).to.equal(0);
    });

    it('serves a retransmitted GET again rather than remembering its answer, and a POST once [RFC 7252 §4.5]', async () => {
      const served: string[] = [];
      const { ep, port } = await endpoint((req) => (served.push(req.code), { code: req.code === '0.01' ? Code.CONTENT : Code.CHANGED }));
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      for (const code of ['GET', 'GET', 'POST', 'POST'] as const) {
        p.send({ code, confirmable: true, messageId: code === 'GET' ? 1 : 2, token: Buffer.from([3]), options: uriOptions('/r') });
        expect((await p.next()).code).to.equal(code === 'GET' ? '2.05' : '2.04');
      }
      expect(served).to.deep.equal(['0.01', '0.01', '0.02']);
      expect(ep.load.dedup).to.equal(1);
    });

    it('answers 5.00 when the handler throws at once, and goes on serving', async () => {
      const { port } = await endpoint((req) => {
        if (req.path[0] === 'bad') throw new Error('broken');
        return { code: Code.CONTENT };
      });
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      p.send({ code: 'GET', confirmable: true, messageId: 1, token: Buffer.alloc(0), options: uriOptions('/bad') });
      expect((await p.next()).code).to.equal('5.00');
      p.send({ code: 'GET', confirmable: true, messageId: 2, token: Buffer.alloc(0), options: uriOptions('/good') });
      expect((await p.next()).code).to.equal('2.05');
    });
  });

  describe('server role: bounds', function () {
    it('answers 4.29 with Max-Age to a peer past its requests in progress, serving the rest [RFC 8516]', async () => {
      const release: (() => void)[] = [];
      const handler: RequestHandler = () => new Promise<Reply>((resolve) => release.push(() => resolve({ code: Code.CONTENT })));
      const { port } = await endpoint(handler, { maxExchangesPerPeer: 4 });
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      for (let id = 1; id <= 20; id++) p.send({ code: 'GET', confirmable: false, messageId: id, token: Buffer.from([id]), options: uriOptions('/r') });
      const refused = [];
      for (let i = 0; i < 16; i++) refused.push(await p.next());
      expect(refused.map((r) => r.code)).to.deep.equal(Array(16).fill('4.29'));
      expect(uintOf(optionOf(refused[0] as NonNullable<(typeof refused)[0]>, 'Max-Age'))).to.be.greaterThan(0);
      expect(release).to.have.length(4);
      for (const r of release) r();
      const served = [];
      for (let i = 0; i < 4; i++) served.push((await p.next()).code);
      expect(served).to.deep.equal(['2.05', '2.05', '2.05', '2.05']);
    });

    it('keeps at most dedupEntries answers for retransmissions, however many requests come', async () => {
      const { ep, port } = await endpoint(async () => ({ code: Code.CONTENT }), { dedupEntries: 100 });
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      for (let id = 1; id <= 2000; id++) {
        p.send({ code: 'GET', confirmable: true, messageId: id, token: Buffer.alloc(0), options: uriOptions('/r') });
        await p.next();
      }
      expect(ep.load.dedup).to.be.at.most(100);
      expect(ep.load.exchanges).to.equal(0);
    });

    it('answers 5.03 to a block of an upload past uploadBytes held in all, keeping what it holds within it', async () => {
      const { ep, port } = await endpoint(async (req) => ({ code: Code.CREATED, payload: Buffer.from(String(req.payload.length)) }), { uploadBytes: 2048 });
      const a = await RawPeer.open(port);
      const b = await RawPeer.open(port);
      rawPeers.push(a, b);
      const block = (p: RawPeer, num: number, messageId: number): void =>
        void p.send({
          code: 'PUT',
          confirmable: true,
          messageId,
          token: Buffer.from([num]),
          options: [...uriOptions('/up'), { name: 'Block1', value: encodeBlock({ num, more: true, size: 1024 }) }],
          payload: Buffer.alloc(1024, num),
        });
      block(a, 0, 1);
      expect((await a.next()).code).to.equal('2.31');
      block(a, 1, 2);
      expect((await a.next()).code).to.equal('2.31');
      block(b, 0, 3);
      expect((await b.next()).code).to.equal('5.03');
      expect(ep.load.uploadBytes).to.equal(2048);
    });

    it('answers a request in a datagram it cannot parse with 4.02, and a CON ping with a RST', async () => {
      const { port } = await endpoint(async () => ({ code: Code.CONTENT }));
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      // GET, token 'ab', then an option delta of 15 without the payload marker's meaning: malformed.
      p.send(Buffer.from([0x42, 0x01, 0x00, 0x07, 0x61, 0x62, 0xf1]));
      const bad = await p.next();
      expect(bad).to.deep.include({ code: '4.02', messageId: 7 });
      p.send(Buffer.from([0x40, 0x00, 0x00, 0x08]));
      expect(await p.next()).to.deep.include({ code: '0.00', reset: true, messageId: 8 });
    });

    it('answers 4.02 to a Max-Age longer than 4 bytes and goes on serving (a 201-byte one once hung the process)', async () => {
      const { port } = await endpoint(async () => ({ code: Code.CONTENT }));
      const p = await RawPeer.open(port);
      rawPeers.push(p);
      // CON GET, token 'ab', option 14 (Max-Age): delta 13 + extended 1, length 14 + extended (201 - 269 < 0: use 13 + 188).
      const value = Buffer.alloc(201, 0xff);
      p.send(Buffer.concat([Buffer.from([0x42, 0x01, 0x00, 0x09, 0x61, 0x62, 0xdd, 0x01, 201 - 13]), value]));
      expect(await p.next()).to.deep.include({ code: '4.02', messageId: 9 });
      p.send(Buffer.from([0x42, 0x01, 0x00, 0x0a, 0x61, 0x62]));
      expect(await p.next()).to.deep.include({ code: '2.05', messageId: 10 });
    });
  });
});
