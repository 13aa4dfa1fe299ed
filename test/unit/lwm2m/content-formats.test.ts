import { expect } from 'chai';
import { encode } from 'cbor';
import { ContentFormat, decodeContent, decodeValue, encodeContent, writeFormatFor } from '../../../server/transports/lwm2m/content-formats';
import { ContentFormatError } from '../../../server/transports/lwm2m/content-errors';
import { formatPath, parsePath } from '../../../server/transports/lwm2m/paths';
import type { Lwm2mNode } from '../../../server/transports/lwm2m/values';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const flat = (nodes: Lwm2mNode[]): Record<string, unknown> => Object.fromEntries(nodes.map((n) => [formatPath(n.path), n.value]));

// Vectors written from the encoding rules of OMA-TS-LightweightM2M-Core V1.1 §7.4.3 (TLV), in
// the shape of its Device Object examples.
describe('LwM2M content formats', () => {
  describe('TLV (11542)', () => {
    // Resource, 8-bit id, length in the type byte: 0b11_0_00_011 = C3; id 3; "1.0".
    const firmwareVersion = hex('C3 03 31 2E 30');
    // Resource, 8-bit id, 8-bit length field: C8; id 0; 20 bytes "Open Mobile Alliance".
    const manufacturer = Buffer.concat([hex('C8 00 14'), Buffer.from('Open Mobile Alliance')]);
    // Multiple Resource 6 (Available Power Sources) with instances 0=1 and 1=5: 86 06 | 41 00 01 | 41 01 05.
    const powerSources = hex('86 06 41 00 01 41 01 05');
    // Resource 13 (Current Time), 4-byte integer 0x5182428F.
    const currentTime = hex('C4 0D 51 82 42 8F');

    it('reads the Resources of a Device Object Instance', () => {
      const nodes = decodeContent(ContentFormat.TLV, Buffer.concat([manufacturer, firmwareVersion, powerSources, currentTime]), parsePath('/3/0'));
      expect(flat(nodes)).to.deep.equal({
        '/3/0/0': 'Open Mobile Alliance',
        '/3/0/3': '1.0',
        '/3/0/6/0': 1,
        '/3/0/6/1': 5,
        '/3/0/13': 1367491215,
      });
    });

    it('reads an Instance wrapped in its Object Instance entry', () => {
      // Object Instance 0 holding 5 bytes: 0b00_0_00_101 = 05.
      const nodes = decodeContent(ContentFormat.TLV, Buffer.concat([hex('05 00'), firmwareVersion]), parsePath('/3/0'));
      expect(flat(nodes)).to.deep.equal({ '/3/0/3': '1.0' });
    });

    it('reads a whole Object as its Instances', () => {
      const state = hex('C1 03 02'); // /5/0/3 = 2 (Downloaded)
      const nodes = decodeContent(ContentFormat.TLV, Buffer.concat([hex('03 00'), state]), parsePath('/5'));
      expect(flat(nodes)).to.deep.equal({ '/5/0/3': 2 });
    });

    it('reads a single integer Resource as a number, of each size', () => {
      expect(decodeValue(ContentFormat.TLV, hex('C1 05 01'), parsePath('/5/0/5'))).to.equal(1);
      expect(decodeValue(ContentFormat.TLV, hex('C2 03 FF FE'), parsePath('/5/0/3'))).to.equal(-2);
      expect(decodeValue(ContentFormat.TLV, hex('C8 09 08 00 00 00 00 00 00 01 00'), parsePath('/5/0/9'))).to.equal(256);
    });

    it('reads a 16-bit identifier and a 16-bit length', () => {
      // 0b11_1_10_000 = F0: Resource, 16-bit id 0x0100, 16-bit length 0x0100 (256 bytes).
      const body = Buffer.alloc(256, 0xab);
      const nodes = decodeContent(ContentFormat.TLV, Buffer.concat([hex('F0 01 00 01 00'), body]), parsePath('/42/0'));
      expect(nodes).to.have.length(1);
      expect(formatPath(nodes[0]!.path)).to.equal('/42/0/256');
      expect(nodes[0]!.value).to.deep.equal(body); // unknown resource: opaque
    });

    it('refuses a value cut short, naming the byte', () => {
      expect(() => decodeContent(ContentFormat.TLV, hex('C8 00 14 4F 70'), parsePath('/3/0'))).to.throw(ContentFormatError, /byte 0 says 20 bytes, 2 remain/);
    });

    it('refuses an integer of 3 bytes', () => {
      expect(() => decodeContent(ContentFormat.TLV, hex('C3 03 00 00 01'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /not an integer/);
    });

    it('refuses Object Instances where Resources are expected', () => {
      expect(() => decodeContent(ContentFormat.TLV, hex('03 00 C1 03 02'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /Object Instance where Resources/);
    });

    it('writes a string Resource and reads it back', () => {
      const uri = 'coap://127.0.0.1:5685/tbfw/0b7c1f3e-4b2a-4c8e-9a55-3d1f6c2b9e10';
      const tlv = encodeContent(ContentFormat.TLV, parsePath('/5/0/1'), uri);
      expect(tlv.subarray(0, 3)).to.deep.equal(hex(`C8 01 ${uri.length.toString(16)}`));
      expect(decodeValue(ContentFormat.TLV, tlv, parsePath('/5/0/1'))).to.equal(uri);
    });

    it('writes integers in their shortest size', () => {
      expect(encodeContent(ContentFormat.TLV, parsePath('/5/0/3'), 2)).to.deep.equal(hex('C1 03 02'));
      expect(encodeContent(ContentFormat.TLV, parsePath('/3/0/13'), 1367491215)).to.deep.equal(hex('C4 0D 51 82 42 8F'));
    });

    it('writes a package of 70,000 bytes with a 24-bit length', () => {
      const tlv = encodeContent(ContentFormat.TLV, parsePath('/5/0/0'), Buffer.alloc(70_000, 1));
      expect(tlv.subarray(0, 5)).to.deep.equal(hex('D8 00 01 11 70')); // 0b11_0_11_000, id 0, 0x011170
      expect((decodeValue(ContentFormat.TLV, tlv, parsePath('/5/0/0')) as Buffer).length).to.equal(70_000);
    });
  });

  describe('text/plain (0) and opaque (42)', () => {
    it('reads a state as an integer and a name as text', () => {
      expect(decodeValue(ContentFormat.TEXT, Buffer.from('3'), parsePath('/5/0/3'))).to.equal(3);
      expect(decodeValue(ContentFormat.TEXT, Buffer.from('fw-1.2'), parsePath('/5/0/7'))).to.equal('fw-1.2');
    });

    it('refuses text where an integer is expected', () => {
      expect(() => decodeContent(ContentFormat.TEXT, Buffer.from('two'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /"two" of \/5\/0\/3 is not an integer/);
    });

    it('refuses text/plain for a whole Instance', () => {
      expect(() => decodeContent(ContentFormat.TEXT, Buffer.from('1'), parsePath('/5/0'))).to.throw(ContentFormatError, /not a Resource/);
    });

    it('reads an opaque package resource as bytes and writes bytes only', () => {
      expect(decodeValue(ContentFormat.OPAQUE, hex('00 01 02'), parsePath('/5/0/0'))).to.deep.equal(hex('00 01 02'));
      expect(encodeContent(ContentFormat.OPAQUE, parsePath('/5/0/0'), hex('0a 0b'))).to.deep.equal(hex('0a 0b'));
      expect(() => encodeContent(ContentFormat.OPAQUE, parsePath('/5/0/1'), 'coap://x')).to.throw(ContentFormatError, /bytes only/);
    });

    it('writes booleans as "0"/"1"', () => {
      expect(encodeContent(ContentFormat.TEXT, parsePath('/9/0/12'), true).toString()).to.equal('1');
    });
  });

  describe('SenML JSON (110)', () => {
    it('reads records with a base name, each value type', () => {
      const payload = JSON.stringify([
        { bn: '/5/0/', n: '3', v: 1 },
        { n: '6', vs: 'fw' },
        { n: '4', vb: false },
        { n: '0', vd: Buffer.from([1, 2, 250]).toString('base64url') },
      ]);
      expect(flat(decodeContent(ContentFormat.SENML_JSON, Buffer.from(payload), parsePath('/5')))).to.deep.equal({
        '/5/0/3': 1,
        '/5/0/6': 'fw',
        '/5/0/4': false,
        '/5/0/0': Buffer.from([1, 2, 250]),
      });
      expect(decodeValue(ContentFormat.SENML_JSON, Buffer.from('[{"bn":"/9/0/5","vlo":"3:0"}]'), parsePath('/9/0/5'))).to.deep.equal({ objectId: 3, instanceId: 0 });
    });

    it('refuses a record outside the path that was read', () => {
      const payload = JSON.stringify([
        { bn: '/5/0/', n: '3', v: 1 },
        { bn: '/9/0/', n: '5', vlo: '3:0' },
      ]);
      expect(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from(payload), parsePath('/5'))).to.throw(ContentFormatError, /names \/9\/0\/5, not a Resource under \/5/);
    });

    it('writes one record and reads it back', () => {
      const out = encodeContent(ContentFormat.SENML_JSON, parsePath('/5/0/1'), 'http://h/p');
      expect(JSON.parse(out.toString())).to.deep.equal([{ bn: '/5/0/1', vs: 'http://h/p' }]);
      expect(decodeValue(ContentFormat.SENML_JSON, out, parsePath('/5/0/1'))).to.equal('http://h/p');
    });

    it('refuses a record with two values or none', () => {
      expect(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from('[{"bn":"/5/0/3","v":1,"vs":"1"}]'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /exactly one/);
      expect(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from('[{"bn":"/5/0/3"}]'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /exactly one/);
    });

    it('refuses what is not JSON or not an array', () => {
      expect(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from('[{'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /not JSON/);
      expect(() => decodeContent(ContentFormat.SENML_JSON, Buffer.from('{}'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /array/);
    });
  });

  describe('SenML CBOR (112)', () => {
    it('reads records keyed by the RFC 8428 integer labels', () => {
      // [{-2: "/5/0/", 0: "3", 2: 2}, {0: "7", 3: "1.1"}, {0: "0", 8: h'0102'}]
      const payload = hex('83 A3 21 65 2F 35 2F 30 2F 00 61 33 02 02 A2 00 61 37 03 63 31 2E 31 A2 00 61 30 08 42 01 02');
      expect(flat(decodeContent(ContentFormat.SENML_CBOR, payload, parsePath('/5/0')))).to.deep.equal({ '/5/0/3': 2, '/5/0/7': '1.1', '/5/0/0': hex('0102') });
    });

    it('writes one record and reads it back, bytes and object links included', () => {
      for (const [path, value] of [
        ['/5/0/1', 'coap://a/b'],
        ['/5/0/0', hex('ff00')],
        ['/9/0/12', true],
        ['/9/0/5', { objectId: 3, instanceId: 0 }],
      ] as const) {
        const out = encodeContent(ContentFormat.SENML_CBOR, parsePath(path), value);
        expect(decodeValue(ContentFormat.SENML_CBOR, out, parsePath(path))).to.deep.equal(value);
      }
    });

    it('refuses a map where the array belongs, and trailing bytes', () => {
      expect(() => decodeContent(ContentFormat.SENML_CBOR, encode(new Map([[0, 'x']])), parsePath('/5/0/3'))).to.throw(ContentFormatError, /array of records/);
      expect(() => decodeContent(ContentFormat.SENML_CBOR, Buffer.concat([encode([]), hex('00')]), parsePath('/5/0/3'))).to.throw(ContentFormatError, /2 CBOR items/);
      expect(() => decodeContent(ContentFormat.SENML_CBOR, hex('83 A3 21'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /not CBOR/);
    });
  });

  describe('LwM2M 1.0 JSON (11543, read only)', () => {
    it('reads entries relative to the base name', () => {
      const payload = Buffer.from(
        JSON.stringify({
          bn: '/5/0/',
          e: [
            { n: '3', v: 3 },
            { n: '6', sv: 'fw' },
            { n: '4', bv: true },
          ],
        }),
      );
      expect(flat(decodeContent(ContentFormat.JSON, payload, parsePath('/5/0')))).to.deep.equal({ '/5/0/3': 3, '/5/0/6': 'fw', '/5/0/4': true });
    });
  });

  it('names the formats it reads when given another', () => {
    expect(() => decodeContent(50, Buffer.from('{}'), parsePath('/5/0/3'))).to.throw(ContentFormatError, /Content format 50 is not one LwM2M reads/);
  });

  it('writes opaque as octet-stream, others as TLV to 1.0 clients and text to 1.1 clients', () => {
    expect(writeFormatFor({ version: '1.0' }, 'opaque')).to.equal(ContentFormat.OPAQUE);
    expect(writeFormatFor({ version: '1.0' }, 'string')).to.equal(ContentFormat.TLV);
    expect(writeFormatFor({ version: '1.1' }, 'string')).to.equal(ContentFormat.TEXT);
  });
});
