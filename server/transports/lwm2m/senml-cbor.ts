import { decodeAllSync, encode } from 'cbor';
import { ContentFormatError } from './content-errors';
import type { Lwm2mPath } from './paths';
import type { Lwm2mValue } from './resource-types';
import { CBOR_LABELS, nodeToRecord, recordsToNodes, type SenmlRecord } from './senml';
import type { Lwm2mNode } from './values';

/** The one CBOR data item of a payload (a second item or trailing bytes are an error). */
export function decodeCborItem(buf: Buffer, what: string): unknown {
  let items: unknown[];
  try {
    items = decodeAllSync(buf, { preferMap: true });
  } catch (err) {
    throw new ContentFormatError(`${what} payload is not CBOR: ${(err as Error).message}`);
  }
  if (items.length !== 1) throw new ContentFormatError(`${what} payload holds ${items.length} CBOR items, expected 1`);
  return items[0];
}

/**
 * application/senml+cbor (112; LwM2M 1.1 §7.4.6, RFC 8428 §6): an array of maps keyed by the
 * integer labels of RFC 8428 Table 6, plus the text key "vlo" LwM2M adds for object links.
 */
export function decodeSenmlCbor(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  const item = decodeCborItem(buf, 'SenML CBOR');
  if (!Array.isArray(item)) throw new ContentFormatError('SenML CBOR payload must be an array of records');
  const records = item.map((raw, i): SenmlRecord => {
    if (!(raw instanceof Map)) throw new ContentFormatError(`SenML record ${i} is not a map`);
    const r: SenmlRecord = {};
    for (const [key, value] of raw as Map<unknown, unknown>) {
      const label = typeof key === 'number' ? CBOR_LABELS[key] : key === 'vlo' ? 'vlo' : undefined;
      const expect = (ok: boolean, type: string): void => {
        if (!ok) throw new ContentFormatError(`SenML record ${i}: "${String(label)}" must be ${type}`);
      };
      switch (label) {
        case 'bn':
        case 'n':
        case 'vs':
        case 'vlo':
          expect(typeof value === 'string', 'a text string');
          r[label] = value as string;
          break;
        case 'v':
          expect(typeof value === 'number', 'a number');
          r.v = value as number;
          break;
        case 'vb':
          expect(typeof value === 'boolean', 'true or false');
          r.vb = value as boolean;
          break;
        case 'vd':
          expect(Buffer.isBuffer(value), 'a byte string');
          r.vd = value as Buffer;
          break;
        default:
          break; // bt, t, u, ...: not used by the LwM2M reads we make
      }
    }
    return r;
  });
  return recordsToNodes(records, path);
}

export function encodeSenmlCbor(path: Lwm2mPath, value: Lwm2mValue): Buffer {
  const r = nodeToRecord(path, value);
  const m = new Map<number | string, unknown>([[-2, r.bn]]);
  if (r.v !== undefined) m.set(2, r.v);
  if (r.vs !== undefined) m.set(3, r.vs);
  if (r.vb !== undefined) m.set(4, r.vb);
  if (r.vd !== undefined) m.set(8, r.vd);
  if (r.vlo !== undefined) m.set('vlo', r.vlo);
  return encode([m]);
}
