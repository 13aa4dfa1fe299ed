import { ContentFormatError } from './content-errors';
import { decodeLwm2mJson } from './lwm2m-json';
import { formatPath, pathIds, type Lwm2mPath } from './paths';
import { decodeOpaque, decodePlainText, encodeOpaque, encodePlainText } from './plain-formats';
import { resourceType, type Lwm2mValue, type ResourceType } from './resource-types';
import { decodeCborItem, decodeSenmlCbor, encodeSenmlCbor } from './senml-cbor';
import { decodeSenmlJson, encodeSenmlJson } from './senml-json';
import { decodeTlv, encodeTlv } from './tlv';
import type { Lwm2mNode } from './values';
import type { Lwm2mVersion } from './registrations';

/** CoAP Content-Format numbers LwM2M uses (LwM2M 1.1 §7.4, IANA CoAP Content-Formats). */
export const ContentFormat = {
  TEXT: 0,
  LINK: 40,
  OPAQUE: 42,
  CBOR: 60,
  SENML_JSON: 110,
  SENML_CBOR: 112,
  TLV: 11542,
  JSON: 11543,
  /** Pre-registration numbers some LwM2M 1.0 clients still send (Leshan reads them too). */
  OLD_TLV: 1542,
  OLD_JSON: 1543,
} as const;
export type ContentFormat = (typeof ContentFormat)[keyof typeof ContentFormat];

/** Every resource value in `payload`, a response to a request on `path` in content format `format`. */
export function decodeContent(format: number, payload: Buffer, path: Lwm2mPath): Lwm2mNode[] {
  switch (format) {
    case ContentFormat.TEXT:
      return decodePlainText(payload, path);
    case ContentFormat.OPAQUE:
      return decodeOpaque(payload, path);
    case ContentFormat.CBOR:
      return [{ path, value: cborSingle(payload, path) }];
    case ContentFormat.TLV:
    case ContentFormat.OLD_TLV:
      return decodeTlv(payload, path);
    case ContentFormat.SENML_JSON:
      return decodeSenmlJson(payload, path);
    case ContentFormat.SENML_CBOR:
      return decodeSenmlCbor(payload, path);
    case ContentFormat.JSON:
    case ContentFormat.OLD_JSON:
      return decodeLwm2mJson(payload, path);
    default:
      throw new ContentFormatError(`Content format ${format} is not one LwM2M reads (0, 42, 60, 110, 112, 11542, 11543)`);
  }
}

/** The value at exactly `path` (a Resource or Resource Instance), or undefined if the payload lacks it. */
export function decodeValue(format: number, payload: Buffer, path: Lwm2mPath): Lwm2mValue | undefined {
  const want = formatPath(path);
  return decodeContent(format, payload, path).find((n) => formatPath(n.path) === want)?.value;
}

/** `value` for a Write on `path` in `format`. */
export function encodeContent(format: number, path: Lwm2mPath, value: Lwm2mValue): Buffer {
  if (pathIds(path).length < 3) throw new ContentFormatError(`A Write of one value needs a Resource path, got ${formatPath(path)}`);
  switch (format) {
    case ContentFormat.TEXT:
      return encodePlainText(path, value);
    case ContentFormat.OPAQUE:
      return encodeOpaque(path, value);
    case ContentFormat.TLV:
    case ContentFormat.OLD_TLV:
      return encodeTlv(path, value, resourceType(path) ?? 'opaque');
    case ContentFormat.SENML_JSON:
      return encodeSenmlJson(path, value);
    case ContentFormat.SENML_CBOR:
      return encodeSenmlCbor(path, value);
    default:
      throw new ContentFormatError(`Content format ${format} is not one LwM2M writes (0, 42, 110, 112, 11542)`);
  }
}

/**
 * The format to write one value of `type` in, from what the client must support: opaque bytes as
 * application/octet-stream (ThingsBoard writes /5/0/0 so, reference §6); other values as TLV for
 * LwM2M 1.0 (the format a 1.0 client must support, V1_0 §6.4) and as text/plain for 1.1 (which
 * every 1.1 client must support, Core V1.1 §7.4).
 */
export function writeFormatFor(client: { version: Lwm2mVersion }, type: ResourceType): ContentFormat {
  if (type === 'opaque') return ContentFormat.OPAQUE;
  if (client.version === '1.0') return ContentFormat.TLV;
  return ContentFormat.TEXT;
}

function cborSingle(payload: Buffer, path: Lwm2mPath): Lwm2mValue {
  const v = decodeCborItem(payload, 'CBOR');
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' || Buffer.isBuffer(v)) return v;
  throw new ContentFormatError(`CBOR value of ${formatPath(path)} is not a single string, number, boolean or byte string`);
}
