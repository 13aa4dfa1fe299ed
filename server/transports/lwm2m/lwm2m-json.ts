import { ContentFormatError } from './content-errors';
import type { Lwm2mPath } from './paths';
import { recordsToNodes, type SenmlRecord } from './senml';
import type { Lwm2mNode } from './values';

/**
 * The LwM2M 1.0 JSON format (application/vnd.oma.lwm2m+json, 11543; OMA-TS-LightweightM2M-V1_0
 * §6.4.4), read only: `{"bn": "/3/0/", "e": [{"n": "0", "sv": "..."}, {"n": "9", "v": 95}]}` with
 * v (number), sv (string), bv (boolean) and ov (object link "3:0"). Opaque values are base64 in sv.
 */
export function decodeLwm2mJson(buf: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString('utf8'));
  } catch {
    throw new ContentFormatError('LwM2M JSON payload is not JSON');
  }
  const doc = parsed as { bn?: unknown; e?: unknown };
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray(doc.e)) throw new ContentFormatError('LwM2M JSON payload must be an object with an "e" array');
  if (doc.bn !== undefined && typeof doc.bn !== 'string') throw new ContentFormatError('LwM2M JSON "bn" must be a string');
  const bn = (doc.bn as string | undefined) ?? '';
  const records = (doc.e as unknown[]).map((raw, i): SenmlRecord => {
    if (typeof raw !== 'object' || raw === null) throw new ContentFormatError(`LwM2M JSON entry ${i} is not an object`);
    const e = raw as Record<string, unknown>;
    const r: SenmlRecord = { bn: i === 0 ? bn : undefined, n: typeof e.n === 'string' ? e.n : '' };
    if (r.bn === undefined) delete r.bn;
    if (typeof e.v === 'number') r.v = e.v;
    if (typeof e.sv === 'string') r.vs = e.sv;
    if (typeof e.bv === 'boolean') r.vb = e.bv;
    if (typeof e.ov === 'string') r.vlo = e.ov;
    return r;
  });
  return recordsToNodes(records, path);
}
