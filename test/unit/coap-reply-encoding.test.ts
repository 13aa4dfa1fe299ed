import { expect } from 'chai';
import fc from 'fast-check';
import { parse } from 'coap-packet';
import { BLOCK_SIZES, parseBlock } from '../../server/transports/coap/block-wise';
import { Code, emptyMessage, encodeReply, type Reply } from '../../server/transports/coap/messages';

const uint32 = fc.integer({ min: 0, max: 0xffffffff });
const reply: fc.Arbitrary<Reply> = fc.record(
  {
    code: fc.constantFrom(...Object.values(Code)),
    payload: fc.uint8Array({ maxLength: 1100 }).map((a) => Buffer.from(a)),
    etag: fc.uint8Array({ minLength: 1, maxLength: 8 }).map((a) => Buffer.from(a)),
    observe: fc.integer({ min: 0, max: 0xffffff }),
    locationPath: fc.array(fc.string({ maxLength: 300 }), { maxLength: 3 }),
    contentFormat: fc.integer({ min: 0, max: 0xffff }),
    maxAge: uint32,
    block2: fc.record({ num: fc.integer({ min: 0, max: 0xfffff }), more: fc.boolean(), size: fc.constantFrom(...BLOCK_SIZES) }),
    block1: fc.record({ num: fc.integer({ min: 0, max: 0xfffff }), more: fc.boolean(), size: fc.constantFrom(...BLOCK_SIZES) }),
    size2: uint32,
    size1: uint32,
  },
  { requiredKeys: ['code'] },
);

const uint = (b: Buffer | undefined): number | undefined => (b === undefined ? undefined : b.reduce((n, x) => n * 256 + x, 0));

/**
 * Our replies are written without coap-packet (reply-encoding.ts); coap-packet, a third-party
 * parser, must read back exactly what was meant [RFC 7252 §3].
 */
describe('CoAP reply encoding', function () {
  it('writes every reply so that coap-packet parses back its type, id, token, code, options and payload', function () {
    fc.assert(
      fc.property(
        reply,
        fc.constantFrom('ACK' as const, 'CON' as const, 'NON' as const),
        fc.integer({ min: 0, max: 0xffff }),
        fc.uint8Array({ maxLength: 8 }),
        (r, type, messageId, token) => {
          const { bytes, messageId: id } = encodeReply(r, { token: Buffer.from(token), type, messageId });
          const p = parse(bytes);
          expect(id).to.equal(messageId);
          expect(p.messageId).to.equal(messageId);
          expect([p.confirmable, p.ack, p.reset]).to.deep.equal([type === 'CON', type === 'ACK', false]);
          expect(p.token.equals(Buffer.from(token))).to.equal(true);
          expect(p.code).to.equal(r.code);
          expect(p.payload.equals(r.payload ?? Buffer.alloc(0))).to.equal(true);
          const all = (name: string): Buffer[] => p.options.filter((o) => o.name === name).map((o) => o.value);
          const one = (name: string): Buffer | undefined => all(name)[0];
          expect(one('ETag')).to.deep.equal(r.etag);
          expect(uint(one('Observe'))).to.equal(r.observe);
          expect(all('Location-Path').map((b) => b.toString('utf8'))).to.deep.equal(r.locationPath ?? []);
          expect(uint(one('Content-Format'))).to.equal(r.contentFormat);
          expect(uint(one('Max-Age'))).to.equal(r.maxAge);
          expect(one('Block2') && parseBlock(one('Block2') as Buffer)).to.deep.equal(r.block2);
          expect(one('Block1') && parseBlock(one('Block1') as Buffer)).to.deep.equal(r.block1);
          expect(uint(one('Size2'))).to.equal(r.size2);
          expect(uint(one('Size1'))).to.equal(r.size1);
          // Nothing else: coap-packet names the options it knows, numbers the others.
          expect(p.options.length).to.equal(
            ['etag', 'observe', 'contentFormat', 'maxAge', 'block2', 'block1', 'size2', 'size1'].filter((k) => r[k as keyof Reply] !== undefined).length +
              (r.locationPath?.length ?? 0),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('writes the shortest uint: Observe 0 and block 0 of 16 bytes are empty values [RFC 7252 §3.2]', function () {
    const { bytes } = encodeReply({ code: Code.CONTENT, observe: 0, block2: { num: 0, more: false, size: 16 } }, { token: Buffer.alloc(0), type: 'ACK', messageId: 1 });
    // Header, Observe (delta 6, length 0), Block2 (delta 17 = 13 + 4, length 0); no payload marker.
    expect([...bytes]).to.deep.equal([0x60, 0x45, 0x00, 0x01, 0x60, 0xd0, 0x04]);
  });

  it('numbers messages of its own one after the other, and writes empty ACKs and RSTs of four bytes', function () {
    const a = encodeReply({ code: Code.CONTENT }, { token: Buffer.alloc(0), type: 'NON' }).messageId;
    const b = encodeReply({ code: Code.CONTENT }, { token: Buffer.alloc(0), type: 'CON' }).messageId;
    expect(b).to.equal((a + 1) & 0xffff);
    expect([...emptyMessage('ACK', 0x1234)]).to.deep.equal([0x60, 0x00, 0x12, 0x34]);
    expect([...emptyMessage('RST', 7)]).to.deep.equal([0x70, 0x00, 0x00, 0x07]);
  });

  it('refuses a reply larger than a datagram may be rather than writing it', function () {
    expect(() => encodeReply({ code: Code.CONTENT, payload: Buffer.alloc(70 * 1024) }, { token: Buffer.alloc(0), type: 'ACK', messageId: 1 })).to.throw(
      RangeError,
      /Max packet size/,
    );
  });
});
