import type { Request, Response } from 'express';
import type { NodeAPI } from 'node-red';
import { OTA_PACKAGE_TYPES, hasData, type DeviceProfileId, type OtaEngine, type OtaPackageType, type PageData, type PageLink, type TenantId } from '../server';
import type { OtaServerNode } from './server-ref';

/**
 * What the editor's dialogs pick from: the packages, device profiles and devices of an ota-server's
 * engine, on Node-RED's admin app (so behind its login) and guarded by `ota-server.read`
 * (conventions A8). The editor calls them with relative URLs, e.g. `ota-server/<id>/packages`.
 *
 *   GET ota-server/:id/packages?text=&type=FIRMWARE|SOFTWARE&deviceProfile=<name or id>
 *   GET ota-server/:id/profiles?text=
 *   GET ota-server/:id/devices?text=&deviceProfile=<name or id>
 *
 * Each answers `{data: [...], totalElements, hasNext}` (the first page, `pageSize` up to 100,
 * default 50); 404 when `:id` is no deployed ota-server node; 503 when its engine did not start.
 */

/** One package as a picker lists it. */
export interface PackageChoice {
  id: string;
  title: string;
  version: string;
  type: OtaPackageType;
  tag: string | null;
  deviceProfileId: string;
  deviceProfileName: string | null;
  hasData: boolean;
  url: string | null;
  dataSize: number | null;
  checksumAlgorithm: string | null;
  createdTime: number;
}

export interface ProfileChoice {
  id: string;
  name: string;
  isDefault: boolean;
  firmwareId: string | null;
  softwareId: string | null;
  /** How its devices may provision themselves (`DISABLED`, `ALLOW_CREATE_NEW_DEVICES`, `CHECK_PRE_PROVISIONED_DEVICES`); never the key or secret. */
  provisionType: string;
}

export interface DeviceChoice {
  id: string;
  name: string;
  deviceProfileId: string;
  deviceProfileName: string | null;
  firmwareId: string | null;
  softwareId: string | null;
  /** How it authenticates (`ACCESS_TOKEN`, `MQTT_BASIC`, `X509_CERTIFICATE`, `LWM2M_CREDENTIALS`); never the secret itself. */
  credentialsType: string;
}

export type Choices<T> = Pick<PageData<T>, 'data' | 'totalElements' | 'hasNext'>;

const MAX_PAGE = 100;
const DEFAULT_PAGE = 50;

/** Node-RED runs a module's init again for every load in the test helper; each admin app gets the routes once. */
const registered = new WeakSet<object>();

export function registerAdminRoutes(RED: NodeAPI): void {
  const app = RED.httpAdmin;
  if (!app || registered.has(app)) return;
  registered.add(app);
  const read = RED.auth.needsPermission('ota-server.read');

  /** Runs `answer` with the engine and tenant of the ota-server `:id`, or answers 404/503. */
  const withEngine =
    <T>(answer: (engine: OtaEngine, tenantId: TenantId, req: Request) => Promise<T>) =>
    (req: Request, res: Response): void => {
      const id = String(req.params.id);
      const node = RED.nodes.getNode(id) as OtaServerNode | null;
      if (!node || node.type !== 'ota-server') {
        res.status(404).json({ error: RED._('ota-server.errors.not-deployed', { id }) });
        return;
      }
      node.engine
        .then(async (engine) => answer(engine, await node.tenantId(), req))
        .then(
          (body) => res.json(body),
          (err: Error) => res.status(503).json({ error: RED._('ota-server.errors.start-failed', { error: err.message }) }),
        );
    };

  app.get(
    '/ota-server/:id/packages',
    read,
    withEngine(async (engine, tenantId, req): Promise<Choices<PackageChoice>> => {
      const type = text(req.query.type)?.toUpperCase();
      const profile = await profileFilter(engine, tenantId, req);
      if (profile === null) return empty();
      const link = pageLink(req, 'title');
      const page =
        type && OTA_PACKAGE_TYPES.includes(type as OtaPackageType) && profile
          ? await engine.packages.pageForProfile(tenantId, profile, type as OtaPackageType, link)
          : await engine.packages.page(tenantId, link);
      const names = await profileNames(
        engine,
        tenantId,
        page.data.map((p) => p.deviceProfileId),
      );
      // SQL orders by title alone; versions of one title follow in version order (1.9 before 1.10).
      const byVersion = [...page.data].sort((a, b) => a.title.localeCompare(b.title) || a.version.localeCompare(b.version, undefined, { numeric: true }));
      const data = byVersion
        .filter((p) => (type ? p.type === type : true) && (profile ? p.deviceProfileId === profile : true))
        .map((p) => ({
          id: p.id,
          title: p.title,
          version: p.version,
          type: p.type,
          tag: p.tag,
          deviceProfileId: p.deviceProfileId,
          deviceProfileName: names.get(p.deviceProfileId) ?? null,
          hasData: hasData(p),
          url: p.url,
          dataSize: p.dataSize,
          checksumAlgorithm: p.checksumAlgorithm,
          createdTime: p.createdTime,
        }));
      // Filtered here (the repository filters by type only together with a profile): the total is what is listed.
      const filtered = data.length !== page.data.length;
      return { data, totalElements: filtered ? data.length : page.totalElements, hasNext: page.hasNext };
    }),
  );

  app.get(
    '/ota-server/:id/profiles',
    read,
    withEngine(async (engine, tenantId, req): Promise<Choices<ProfileChoice>> => {
      const page = await engine.profiles.page(tenantId, pageLink(req, 'name'));
      const data = page.data.map((p) => ({
        id: p.id,
        name: p.name,
        isDefault: p.isDefault,
        firmwareId: p.firmwareId,
        softwareId: p.softwareId,
        provisionType: typeof p.extra.provisionType === 'string' ? p.extra.provisionType : 'DISABLED',
      }));
      return { data, totalElements: page.totalElements, hasNext: page.hasNext };
    }),
  );

  app.get(
    '/ota-server/:id/devices',
    read,
    withEngine(async (engine, tenantId, req): Promise<Choices<DeviceChoice>> => {
      const profile = await profileFilter(engine, tenantId, req);
      if (profile === null) return empty();
      const page = await engine.devices.page(tenantId, pageLink(req, 'name'), profile ? { deviceProfileId: profile } : {});
      const names = await profileNames(
        engine,
        tenantId,
        page.data.map((d) => d.deviceProfileId),
      );
      const data = page.data.map((d) => ({
        id: d.id,
        name: d.name,
        deviceProfileId: d.deviceProfileId,
        deviceProfileName: names.get(d.deviceProfileId) ?? null,
        firmwareId: d.firmwareId,
        softwareId: d.softwareId,
        credentialsType: d.credentialsType ?? 'ACCESS_TOKEN',
      }));
      return { data, totalElements: page.totalElements, hasNext: page.hasNext };
    }),
  );
}

const text = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined);

const empty = <T>(): Choices<T> => ({ data: [], totalElements: 0, hasNext: false });

function pageLink(req: Request, sortProperty: string): PageLink {
  const size = Number(req.query.pageSize);
  const pageSize = Number.isInteger(size) && size > 0 ? Math.min(size, MAX_PAGE) : DEFAULT_PAGE;
  const search = text(req.query.text);
  return { pageSize, page: 0, sortProperty, sortOrder: 'ASC', ...(search ? { textSearch: search } : {}) };
}

/** `?deviceProfile=` by name or id: undefined when absent, null when it names no profile. */
async function profileFilter(engine: OtaEngine, tenantId: TenantId, req: Request): Promise<DeviceProfileId | undefined | null> {
  const wanted = text(req.query.deviceProfile);
  if (!wanted) return undefined;
  const byName = await engine.profiles.findByName(tenantId, wanted);
  if (byName) return byName.id;
  try {
    return (await engine.profiles.get(tenantId, wanted)).id;
  } catch {
    return null;
  }
}

/** Profile names for the ids a page refers to (a page names few distinct profiles). */
async function profileNames(engine: OtaEngine, tenantId: TenantId, ids: string[]): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const id of new Set(ids)) {
    try {
      names.set(id, (await engine.profiles.get(tenantId, id)).name);
    } catch {
      // deleted meanwhile: the picker shows the id
    }
  }
  return names;
}
