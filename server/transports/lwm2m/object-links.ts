import { LinkFormatError, paramOf, parseLinkFormat } from './link-format';

/** An Object the client has, with its version (`ver=`) and its Instances. */
export interface ObjectLink {
  objectId: number;
  /** `ver=` on the Object's link (LwM2M 1.1 §6.2.1.1); null = the version the registry defines. */
  version: string | null;
  instanceIds: number[];
}

/** What a Register or Update payload says about the client. */
export interface RegisteredObjects {
  /** Alternate root path from the `rt="oma.lwm2m"` link (§6.2.1.1); "/" when absent. */
  rootPath: string;
  /** Content formats from `ct=` on that link: what the client accepts beyond the mandatory ones. */
  contentFormats: number[];
  objects: ObjectLink[];
}

const ID = /^(0|[1-9][0-9]{0,4})$/;
const VERSION = /^[0-9]+\.[0-9]+$/;

/**
 * The Objects and Instances of a registration payload (OMA-TS-LightweightM2M-Core V1.1 §6.2.1.1):
 * `</>;rt="oma.lwm2m";ct="60 110 112",</1/0>,</3>;ver=1.1,</3/0>,</5/0>`. Strict: a link that is
 * not an Object or Instance under the root path, an id out of range or a bad `ver=`/`ct=` is a
 * LinkFormatError (4.00 Bad Request).
 */
export function parseObjectLinks(payload: string, limits: { maxLinks: number }): RegisteredObjects {
  const links = parseLinkFormat(payload);
  if (links.length > limits.maxLinks) throw new LinkFormatError(`${links.length} links, more than the ${limits.maxLinks} allowed`, 0);
  let rootPath = '/';
  let contentFormats: number[] = [];
  const root = links.find((l) => paramOf(l, 'rt') === 'oma.lwm2m');
  if (root) {
    rootPath = root.uri.endsWith('/') ? root.uri : `${root.uri}/`;
    if (!rootPath.startsWith('/')) throw new LinkFormatError(`the alternate root path "${root.uri}" must start with "/"`, 0);
    const ct = paramOf(root, 'ct');
    if (ct !== undefined) contentFormats = parseContentFormats(ct);
  }
  const objects = new Map<number, ObjectLink>();
  for (const link of links) {
    if (link === root) continue;
    if (!link.uri.startsWith(rootPath)) throw new LinkFormatError(`link <${link.uri}> is not under the root path "${rootPath}"`, 0);
    const segments = link.uri.slice(rootPath.length).split('/');
    if (segments.length > 2 || !segments.every((s) => ID.test(s) && Number(s) <= 65534)) {
      throw new LinkFormatError(`link <${link.uri}> is not an Object or Object Instance (/{objectId}[/{instanceId}], ids 0..65534)`, 0);
    }
    const [objectId, instanceId] = segments.map(Number) as [number, number | undefined];
    const entry = objects.get(objectId) ?? { objectId, version: null, instanceIds: [] };
    objects.set(objectId, entry);
    const ver = paramOf(link, 'ver');
    if (ver !== undefined) {
      if (ver === null || !VERSION.test(ver)) throw new LinkFormatError(`link <${link.uri}> has ver=${ver ?? ''}; expected "major.minor"`, 0);
      entry.version = ver;
    }
    if (instanceId !== undefined && !entry.instanceIds.includes(instanceId)) entry.instanceIds.push(instanceId);
  }
  for (const o of objects.values()) o.instanceIds.sort((a, b) => a - b);
  return { rootPath, contentFormats, objects: [...objects.values()].sort((a, b) => a.objectId - b.objectId) };
}

function parseContentFormats(ct: string | null): number[] {
  const parts = (ct ?? '').split(' ');
  if (!parts.every((p) => /^[0-9]{1,5}$/.test(p) && Number(p) <= 65535)) throw new LinkFormatError(`ct="${ct ?? ''}" is not a list of content-format numbers`, 0);
  return parts.map(Number);
}

/** Whether the client registered `objectId` (with at least one Instance when `instanceId` is given). */
export function hasObject(objects: RegisteredObjects, objectId: number, instanceId?: number): boolean {
  const o = objects.objects.find((x) => x.objectId === objectId);
  if (!o) return false;
  return instanceId === undefined || o.instanceIds.includes(instanceId);
}
