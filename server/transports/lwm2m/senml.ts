import { ContentFormatError } from './content-errors';
import { formatPath, Lwm2mPathError, parsePath, pathIds, type Lwm2mPath } from './paths';
import type { Lwm2mValue, ObjectLinkValue } from './resource-types';
import type { Lwm2mNode } from './values';

/**
 * SenML records as LwM2M 1.1 uses them (§7.4.5 JSON, §7.4.6 CBOR; RFC 8428): the resource path is
 * base name + name; the value is one of v, vs, vb, vd or LwM2M's own vlo (an object link "3:0").
 */
export interface SenmlRecord {
  bn?: string;
  n?: string;
  v?: number;
  vs?: string;
  vb?: boolean;
  vd?: Buffer;
  vlo?: string;
}

/** RFC 8428 §6 Table 6: the integer labels SenML CBOR uses for the fields LwM2M reads. */
export const CBOR_LABELS: Readonly<Record<number, keyof SenmlRecord | 'bt' | 't' | 'bver' | 'bu' | 'bv' | 'bs' | 'u' | 's' | 'ut'>> = {
  [-1]: 'bver',
  [-2]: 'bn',
  [-3]: 'bt',
  [-4]: 'bu',
  [-5]: 'bv',
  [-6]: 'bs',
  0: 'n',
  1: 'u',
  2: 'v',
  3: 'vs',
  4: 'vb',
  5: 's',
  6: 't',
  7: 'ut',
  8: 'vd',
};

/** Records -> resource values under `request` (a record outside it is an error). */
export function recordsToNodes(records: readonly SenmlRecord[], request: Lwm2mPath): Lwm2mNode[] {
  let base = '';
  const nodes: Lwm2mNode[] = [];
  const prefix = pathIds(request);
  for (const [i, r] of records.entries()) {
    if (r.bn !== undefined) base = r.bn;
    const name = base + (r.n ?? '');
    let path: Lwm2mPath;
    try {
      path = parsePath(name);
    } catch (err) {
      if (err instanceof Lwm2mPathError) throw new ContentFormatError(`SenML record ${i}: ${err.message}`);
      throw err;
    }
    const ids = pathIds(path);
    if (ids.length < 3 || prefix.some((id, k) => ids[k] !== id)) {
      throw new ContentFormatError(`SenML record ${i} names ${name}, not a Resource under ${formatPath(request)}`);
    }
    nodes.push({ path, value: recordValue(r, i) });
  }
  return nodes;
}

function recordValue(r: SenmlRecord, i: number): Lwm2mValue {
  const present = (['v', 'vs', 'vb', 'vd', 'vlo'] as const).filter((k) => r[k] !== undefined);
  if (present.length !== 1) throw new ContentFormatError(`SenML record ${i} needs exactly one of v, vs, vb, vd, vlo (has ${present.length})`);
  if (r.vlo !== undefined) return parseObjectLink(r.vlo, i);
  return r.v ?? r.vs ?? r.vb ?? (r.vd as Buffer);
}

function parseObjectLink(text: string, i: number): ObjectLinkValue {
  const m = /^([0-9]{1,5}):([0-9]{1,5})$/.exec(text);
  if (!m || Number(m[1]) > 65535 || Number(m[2]) > 65535) throw new ContentFormatError(`SenML record ${i}: vlo "${text}" is not "objectId:instanceId"`);
  return { objectId: Number(m[1]), instanceId: Number(m[2]) };
}

/** The record that writes `value` to `path`. */
export function nodeToRecord(path: Lwm2mPath, value: Lwm2mValue): SenmlRecord {
  const bn = formatPath(path);
  if (Buffer.isBuffer(value)) return { bn, vd: value };
  if (typeof value === 'string') return { bn, vs: value };
  if (typeof value === 'number') return { bn, v: value };
  if (typeof value === 'boolean') return { bn, vb: value };
  return { bn, vlo: `${value.objectId}:${value.instanceId}` };
}
