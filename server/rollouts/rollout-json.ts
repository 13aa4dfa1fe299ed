import { uuid, validateBody } from '../admin/schemas';
import type { DeviceId, DeviceProfileId, OtaPackageId } from '../ids';
import type { AbortRule, Gate, MaintenanceWindow, RolloutSpec, WaveSpec } from '../store/rollouts';
import type { RolloutInput, RolloutView } from './rollout-service';

/**
 * A rollout as the REST API and the ota-rollout node take it in and give it out: the JSON schema
 * of `POST /api/ota/rollouts`, its defaults, and the JSON of a rollout with its waves counted.
 */

const refOf = (entityType: string) => ({
  type: 'object',
  properties: { id: uuid, entityType: { const: entityType } },
  required: ['id'],
});
const percent = { type: 'number', minimum: 0, maximum: 100 } as const;
const hhmm = { type: 'string', pattern: '^([01][0-9]|2[0-3]):[0-5][0-9]$' } as const;
/** Devices a `deviceIds` target may list. */
export const MAX_TARGET_DEVICES = 10_000;

export const rolloutSchema = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 255 },
    packageId: refOf('OTA_PACKAGE'),
    target: {
      oneOf: [
        {
          type: 'object',
          properties: { deviceProfileId: refOf('DEVICE_PROFILE'), nameFilter: { type: 'string', minLength: 1, maxLength: 255 } },
          required: ['deviceProfileId'],
          additionalProperties: false,
        },
        {
          type: 'object',
          properties: { deviceIds: { type: 'array', minItems: 1, maxItems: MAX_TARGET_DEVICES, items: { anyOf: [uuid, refOf('DEVICE')] } } },
          required: ['deviceIds'],
          additionalProperties: false,
        },
      ],
    },
    waves: {
      type: 'array',
      minItems: 1,
      maxItems: 100,
      items: {
        oneOf: [
          { type: 'object', properties: { percent: { type: 'number', exclusiveMinimum: 0, maximum: 100 } }, required: ['percent'], additionalProperties: false },
          { type: 'object', properties: { count: { type: 'integer', minimum: 1, maximum: 1_000_000 } }, required: ['count'], additionalProperties: false },
        ],
      },
    },
    gate: {
      type: 'object',
      properties: { minSuccessRate: percent, minFinished: { type: 'integer', minimum: 0 }, waitSeconds: { type: 'integer', minimum: 0, maximum: 30 * 86400 } },
      additionalProperties: false,
    },
    abort: {
      type: 'object',
      properties: { maxFailureRate: percent, minFinished: { type: 'integer', minimum: 0 } },
      additionalProperties: false,
    },
    window: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          properties: {
            days: { type: 'array', minItems: 1, maxItems: 7, uniqueItems: true, items: { enum: ['MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT', 'SUN'] } },
            from: hhmm,
            to: hhmm,
            timeZone: { type: 'string', minLength: 1, maxLength: 64 },
          },
          required: ['days', 'from', 'to', 'timeZone'],
          additionalProperties: false,
        },
      ],
    },
    forceDowngrade: { type: 'boolean' },
  },
  required: ['name', 'packageId', 'target', 'waves'],
  additionalProperties: false,
};
export const abortSchema = { type: 'object', properties: { rollback: { type: 'boolean' } }, additionalProperties: false };

export interface RolloutBody {
  name: string;
  packageId: { id: string };
  target: { deviceProfileId: { id: string }; nameFilter?: string } | { deviceIds: Array<string | { id: string }> };
  waves: WaveSpec[];
  gate?: Partial<Gate>;
  abort?: Partial<AbortRule>;
  window?: MaintenanceWindow | null;
  forceDowngrade?: boolean;
}

/** Without a gate or an abort rule in the body: every device must update, nothing aborts by itself. */
const DEFAULT_GATE: Gate = { minSuccessRate: 100, minFinished: 1, waitSeconds: 0 };
const DEFAULT_ABORT: AbortRule = { maxFailureRate: 100, minFinished: 1 };

function specOf(body: RolloutBody): RolloutSpec {
  const t = body.target;
  return {
    target:
      'deviceIds' in t
        ? { deviceIds: t.deviceIds.map((d) => (typeof d === 'string' ? d : d.id).toLowerCase() as DeviceId) }
        : { deviceProfileId: t.deviceProfileId.id.toLowerCase() as DeviceProfileId, ...(t.nameFilter ? { nameFilter: t.nameFilter } : {}) },
    waves: body.waves,
    gate: { ...DEFAULT_GATE, ...body.gate },
    abort: { ...DEFAULT_ABORT, ...body.abort },
    window: body.window ?? null,
    forceDowngrade: body.forceDowngrade === true,
  };
}

/** A wave's state and device counts as the REST API and the dashboard show them (a wave not started yet: PENDING, zeros). */
export function waveFigures(w: RolloutView['waveViews'][number] | undefined) {
  return {
    state: w?.state ?? ('PENDING' as const),
    devices: w?.devices ?? 0,
    updated: w?.updated ?? 0,
    failed: w?.failed ?? 0,
    inProgress: w?.inProgress ?? 0,
    pending: w?.pending ?? 0,
    skipped: w?.skipped ?? 0,
  };
}

/** A rollout in the API's JSON: ThingsBoard-style references, the spec as sent, waves with their counts. */
export function rolloutJson(v: RolloutView): Record<string, unknown> {
  const t = v.spec.target;
  return {
    id: { entityType: 'OTA_ROLLOUT', id: v.id },
    createdTime: v.createdTime,
    tenantId: { entityType: 'TENANT', id: v.tenantId },
    name: v.name,
    packageId: { entityType: 'OTA_PACKAGE', id: v.packageId },
    type: v.type,
    target:
      'deviceIds' in t
        ? { deviceIds: t.deviceIds }
        : { deviceProfileId: { entityType: 'DEVICE_PROFILE', id: t.deviceProfileId }, ...(t.nameFilter ? { nameFilter: t.nameFilter } : {}) },
    waves: v.spec.waves.map((spec, i) => {
      const w = v.waveViews[i];
      return { ...spec, ...waveFigures(w), startedTime: w?.startedTime ?? null };
    }),
    gate: v.spec.gate,
    abort: v.spec.abort,
    window: v.spec.window,
    forceDowngrade: v.spec.forceDowngrade,
    state: v.state,
    reason: v.reason,
    currentWave: v.currentWave,
    startedTime: v.startedTime,
    finishedTime: v.finishedTime,
  };
}

/** A validated body as the service takes it (400 in ThingsBoard's JSON when it does not fit the schema). */
export function rolloutInputOf(raw: unknown): RolloutInput {
  const body = validateBody<RolloutBody>(rolloutSchema, raw ?? {});
  return { name: body.name, packageId: body.packageId.id.toLowerCase() as OtaPackageId, spec: specOf(body) };
}
