/**
 * An LwM2M path `/object[/instance[/resource[/resourceInstance]]]` (OMA-TS-LightweightM2M-Core
 * V1.1 §7.1): ids are 16-bit unsigned integers; 65535 is reserved (§7.2, "MAX_ID").
 */
export interface Lwm2mPath {
  objectId: number;
  instanceId?: number;
  resourceId?: number;
  resourceInstanceId?: number;
}

export class Lwm2mPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Lwm2mPathError';
  }
}

const MAX_ID = 65534;

/** `"/5/0/3"` -> `{objectId: 5, instanceId: 0, resourceId: 3}`; anything else is a Lwm2mPathError. */
export function parsePath(text: string): Lwm2mPath {
  if (!text.startsWith('/')) throw new Lwm2mPathError(`LwM2M path "${text}" must start with "/"`);
  const parts = text.slice(1).split('/');
  if (parts.length > 4 || parts[0] === '') throw new Lwm2mPathError(`LwM2M path "${text}" must have 1 to 4 numeric segments`);
  const ids = parts.map((p) => {
    if (!/^(0|[1-9][0-9]{0,4})$/.test(p) || Number(p) > MAX_ID) throw new Lwm2mPathError(`LwM2M path "${text}": "${p}" is not an id from 0 to ${MAX_ID}`);
    return Number(p);
  });
  return fromIds(ids);
}

export function fromIds(ids: readonly number[]): Lwm2mPath {
  const [objectId, instanceId, resourceId, resourceInstanceId] = ids;
  const path: Lwm2mPath = { objectId: objectId as number };
  if (instanceId !== undefined) path.instanceId = instanceId;
  if (resourceId !== undefined) path.resourceId = resourceId;
  if (resourceInstanceId !== undefined) path.resourceInstanceId = resourceInstanceId;
  return path;
}

export function pathIds(p: Lwm2mPath): number[] {
  return [p.objectId, p.instanceId, p.resourceId, p.resourceInstanceId].filter((x): x is number => x !== undefined);
}

export function formatPath(p: Lwm2mPath): string {
  return `/${pathIds(p).join('/')}`;
}

export const isResourcePath = (p: Lwm2mPath): boolean => p.resourceId !== undefined && p.resourceInstanceId === undefined;
