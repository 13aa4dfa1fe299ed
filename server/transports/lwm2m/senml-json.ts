import { ContentFormatError } from './content-errors';
import type { Lwm2mPath } from './paths';
import type { Lwm2mValue } from './resource-types';
import { nodeToRecord, recordsToNodes, type SenmlRecord } from './senml';
import type { Lwm2mNode } from './values';

const BASE64URL = /^[A-Za-z0-9_-]*={0,2}$/;

/** application/senml+json (110; LwM2M 1.1 §7.4.5, RFC 8428 §5). vd is base64url (RFC 8428 §4.3). */
export function decodeSenmlJson(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString('utf8'));
  } catch {
    throw new ContentFormatError('SenML JSON payload is not JSON');
  }
  if (!Array.isArray(parsed)) throw new ContentFormatError('SenML JSON payload must be an array of records');
  const records = parsed.map((raw, i): SenmlRecord => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ContentFormatError(`SenML record ${i} is not an object`);
    const o = raw as Record<string, unknown>;
    const r: SenmlRecord = {};
    const str = (k: 'bn' | 'n' | 'vs' | 'vlo'): void => {
      if (o[k] === undefined) return;
      if (typeof o[k] !== 'string') throw new ContentFormatError(`SenML record ${i}: "${k}" must be a string`);
      r[k] = o[k] as string;
    };
    str('bn');
    str('n');
    str('vs');
    str('vlo');
    if (o.v !== undefined) {
      if (typeof o.v !== 'number') throw new ContentFormatError(`SenML record ${i}: "v" must be a number`);
      r.v = o.v;
    }
    if (o.vb !== undefined) {
      if (typeof o.vb !== 'boolean') throw new ContentFormatError(`SenML record ${i}: "vb" must be true or false`);
      r.vb = o.vb;
    }
    if (o.vd !== undefined) {
      if (typeof o.vd !== 'string' || !BASE64URL.test(o.vd)) throw new ContentFormatError(`SenML record ${i}: "vd" must be base64url text`);
      r.vd = Buffer.from(o.vd, 'base64url');
    }
    return r;
  });
  return recordsToNodes(records, path);
}

export function encodeSenmlJson(path: Lwm2mPath, value: Lwm2mValue): Buffer {
  const r = nodeToRecord(path, value);
  const json: Record<string, unknown> = { ...r };
  if (r.vd) json.vd = r.vd.toString('base64url');
  return Buffer.from(JSON.stringify([json]), 'utf8');
}
