import { invalid } from '../errors';
import type { TenantId } from '../ids';
import { validateBody } from '../admin/schemas';
import { abortSchema, rolloutInputOf, rolloutJson } from './rollout-json';
import type { RolloutEvent, RolloutService } from './rollout-service';

/** What the ota-rollout node (or any caller outside HTTP) can ask of the rollouts. */
export const ROLLOUT_COMMANDS = ['create', 'start', 'pause', 'resume', 'cancel', 'abort', 'get'] as const;
export type RolloutCommand = (typeof ROLLOUT_COMMANDS)[number];

export const isRolloutCommand = (v: unknown): v is RolloutCommand => typeof v === 'string' && (ROLLOUT_COMMANDS as readonly string[]).includes(v);

/**
 * Runs one command for a tenant, with the REST API's rules and errors: `create` takes the body of
 * `POST /api/ota/rollouts`; the others the rollout's id (`payload.id`, or the payload itself as a
 * string), `abort` also `payload.rollback`. Answers the rollout's JSON, as the REST API does.
 */
export async function runRolloutCommand(rollouts: RolloutService, tenantId: TenantId, command: RolloutCommand, payload: unknown): Promise<Record<string, unknown>> {
  if (command === 'create') return rolloutJson(await rollouts.view(await rollouts.create(tenantId, rolloutInputOf(await withIds(rollouts, tenantId, payload)))));
  const id = typeof payload === 'string' ? payload : typeof payload === 'object' && payload !== null ? idOf((payload as { id?: unknown }).id) : null;
  if (!id) throw invalid(`${command} needs the rollout's id: msg.payload = "<id>" or {"id": "<id>"}`);
  const r =
    command === 'get'
      ? await rollouts.get(tenantId, id)
      : command === 'abort'
        ? await rollouts.abort(
            tenantId,
            id,
            validateBody<{ rollback?: boolean }>(abortSchema, { rollback: (payload as { rollback?: unknown }).rollback ?? false }).rollback === true,
          )
        : await rollouts[command](tenantId, id);
  return rolloutJson(await rollouts.view(r));
}

/**
 * A flow may name the package and the profile instead of giving their ids:
 * `"package": {"title": "...", "version": "..."}` for `packageId`, and
 * `"target": {"deviceProfile": "name"}` for `target.deviceProfileId`.
 */
async function withIds(rollouts: RolloutService, tenantId: TenantId, payload: unknown): Promise<unknown> {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return payload;
  const { package: named, ...body } = payload as Record<string, unknown>;
  const target = body.target as Record<string, unknown> | undefined;
  const profileName = typeof target === 'object' && target !== null && typeof target.deviceProfile === 'string' ? target.deviceProfile : undefined;
  const pkg = isTitleVersion(named) ? named : undefined;
  if (named !== undefined && !pkg) throw invalid('package must be {"title": "...", "version": "..."}');
  const ids = await rollouts.idsByName(tenantId, { ...(pkg ? { package: pkg } : {}), ...(profileName !== undefined ? { deviceProfile: profileName } : {}) });
  const out: Record<string, unknown> = { ...body };
  if (ids.packageId) out.packageId = { entityType: 'OTA_PACKAGE', id: ids.packageId };
  if (ids.deviceProfileId) {
    const { deviceProfile: _name, ...rest } = target as Record<string, unknown>;
    out.target = { ...rest, deviceProfileId: { entityType: 'DEVICE_PROFILE', id: ids.deviceProfileId } };
  }
  return out;
}

const isTitleVersion = (v: unknown): v is { title: string; version: string } =>
  typeof v === 'object' && v !== null && typeof (v as { title?: unknown }).title === 'string' && typeof (v as { version?: unknown }).version === 'string';

/** An id as a string or as ThingsBoard's `{entityType, id}` reference. */
function idOf(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { id?: unknown }).id === 'string') return (v as { id: string }).id;
  return null;
}

/** A wave or state event as the ota-rollout node sends it: the topic, and the rollout's JSON with its waves counted. */
export async function rolloutEventMessage(rollouts: RolloutService, ev: RolloutEvent): Promise<{ topic: string; payload: Record<string, unknown> }> {
  const payload = rolloutJson(await rollouts.view(ev.rollout));
  return ev.kind === 'wave' ? { topic: 'wave', payload: { ...payload, wave: ev.wave, waveState: ev.state } } : { topic: 'state', payload };
}
