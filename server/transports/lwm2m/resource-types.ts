import type { Lwm2mPath } from './paths';

/** LwM2M data types (OMA-TS-LightweightM2M-Core V1.1 Appendix C). */
export type ResourceType = 'string' | 'integer' | 'unsigned' | 'float' | 'boolean' | 'opaque' | 'time' | 'objlnk' | 'corelnk' | 'none';

/** An Object Link value (Appendix C): `objectId:instanceId`. */
export interface ObjectLinkValue {
  objectId: number;
  instanceId: number;
}

/** One resource (instance) value as decoded: numbers for integer/float/time, Buffers for opaque. */
export type Lwm2mValue = string | number | boolean | Buffer | ObjectLinkValue;

/**
 * The types of the resources the OTA logic reads and writes: Device (Object 3, V1.1), Firmware
 * Update (Object 5, V1.0/1.1) and Software Management (Object 9, V1.0), from their OMA object
 * definitions. Formats that carry no types (TLV, text/plain) are decoded with this table; a
 * resource not in it decodes as opaque (TLV) or string (text/plain).
 */
const TYPES: Record<number, Record<number, ResourceType>> = {
  3: {
    0: 'string',
    1: 'string',
    2: 'string',
    3: 'string',
    4: 'none',
    5: 'none',
    6: 'integer',
    7: 'integer',
    8: 'integer',
    9: 'integer',
    10: 'integer',
    11: 'integer',
    12: 'none',
    13: 'time',
    14: 'string',
    15: 'string',
    16: 'string',
    17: 'string',
    18: 'string',
    19: 'string',
    20: 'integer',
    21: 'integer',
    22: 'string',
  },
  5: { 0: 'opaque', 1: 'string', 2: 'none', 3: 'integer', 4: 'boolean', 5: 'integer', 6: 'string', 7: 'string', 8: 'integer', 9: 'integer' },
  9: {
    0: 'string',
    1: 'string',
    2: 'opaque',
    3: 'string',
    4: 'none',
    5: 'objlnk',
    6: 'none',
    7: 'integer',
    8: 'boolean',
    9: 'integer',
    10: 'none',
    11: 'none',
    12: 'boolean',
    13: 'objlnk',
    14: 'string',
    15: 'string',
  },
};

export function resourceType(path: Lwm2mPath): ResourceType | undefined {
  if (path.resourceId === undefined) return undefined;
  return TYPES[path.objectId]?.[path.resourceId];
}
