import type { AttributeMap, AttributeRepository } from '../../store/attributes';
import type { DeviceId } from '../../ids';
import { parseTelemetry, type TelemetryEntry } from '../../store/telemetry';

/**
 * The JSON a device sends on its MQTT topics, read as ThingsBoard's `JsonMqttAdaptor` reads it
 * (reference §3.2, §3.3). Each parser answers null for a payload ThingsBoard's adaptor rejects;
 * the session then refuses the message as ThingsBoard does (PUBACK 0x99 in MQTT 5, else close).
 */

export function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Client attributes: a JSON object. */
export function parseAttributes(payload: Buffer): AttributeMap | null {
  const body = parseJson(payload);
  return isObject(body) ? (body as AttributeMap) : null;
}

/** Telemetry: an object, `{ts, values}`, or an array of either (the HTTP API's parser). */
export function parseTelemetryPayload(payload: Buffer, now: number): TelemetryEntry[] | null {
  return parseTelemetry(parseJson(payload), now) ?? null;
}

export interface AttributeKeys {
  clientKeys?: string[];
  sharedKeys?: string[];
}

/**
 * Comma-separated keys (ThingsBoard splits the string; an array of strings is taken too). An
 * empty list is no list, as over HTTP: both absent or empty asks for everything.
 */
function keyList(v: unknown): string[] | undefined | null {
  if (v === undefined || v === null) return undefined;
  const parts = typeof v === 'string' ? v.split(',') : Array.isArray(v) && v.every((k) => typeof k === 'string') ? (v as string[]).flatMap((k) => k.split(',')) : null;
  if (parts === null) return null;
  const keys = parts.map((k) => k.trim()).filter((k) => k !== '');
  return keys.length ? keys : undefined;
}

/**
 * `{"clientKeys": "a,b", "sharedKeys": "c,d"}`, both optional. An empty payload asks for
 * everything (ThingsBoard's JSON parser rejects it; being lenient here costs nothing).
 */
export function parseAttributeRequest(payload: Buffer): AttributeKeys | null {
  if (payload.length === 0) return {};
  return attributeKeys(parseJson(payload));
}

/** The keys of a request already read (JSON, or protobuf's `AttributesRequest`). */
export function attributeKeys(body: unknown): AttributeKeys | null {
  if (!isObject(body)) return null;
  const clientKeys = keyList(body.clientKeys);
  const sharedKeys = keyList(body.sharedKeys);
  if (clientKeys === null || sharedKeys === null) return null;
  return { ...(clientKeys ? { clientKeys } : {}), ...(sharedKeys ? { sharedKeys } : {}) };
}

/** `{"client": {...}, "shared": {...}}`, each section left out when empty, so nothing found is `{}`. */
export async function readAttributes(repo: AttributeRepository, deviceId: DeviceId, keys: AttributeKeys): Promise<Record<string, AttributeMap>> {
  const all = keys.clientKeys === undefined && keys.sharedKeys === undefined;
  const out: Record<string, AttributeMap> = {};
  if (all || keys.clientKeys) {
    const client = await repo.get(deviceId, 'CLIENT', keys.clientKeys);
    if (Object.keys(client).length) out.client = client;
  }
  if (all || keys.sharedKeys) {
    const shared = await repo.get(deviceId, 'SHARED', keys.sharedKeys);
    if (Object.keys(shared).length) out.shared = shared;
  }
  return out;
}

/** A client-side RPC request: `{"method": "...", "params": ...}`. */
export function parseRpcRequest(payload: Buffer): { method: string; params: unknown } | null {
  const body = parseJson(payload);
  if (!isObject(body) || typeof body.method !== 'string') return null;
  return { method: body.method, params: body.params };
}

/** What ThingsBoard answers to the `getSessionLimits` RPC its SDK sends on connect. */
export interface SessionLimits {
  maxPayloadSize: number;
  maxInflightMessages: number;
  /** Rate limits as ThingsBoard writes them (`"100:1,3000:60"`); null: none (this server has none). */
  rateLimits: { messages: string | null; telemetryMessages: string | null; telemetryDataPoints: string | null };
}

export const sessionLimits = (maxPayloadSize: number, maxInflightMessages: number): SessionLimits => ({
  maxPayloadSize,
  maxInflightMessages,
  rateLimits: { messages: null, telemetryMessages: null, telemetryDataPoints: null },
});
