import protobuf from 'protobufjs';
import type { AttributeMap, AttributeValue } from '../store/attributes';
import type { DeviceProfile } from '../store/device-profiles';

/**
 * Protobuf payloads, for devices whose profile says `transportPayloadType: "PROTOBUF"`
 * (ThingsBoard's ProtoTransportPayloadConfiguration inside an MQTT or CoAP transport
 * configuration). Telemetry and client attributes are the profile's own schemas (the last
 * top-level message of each, as `DynamicProtoUtils.getDynamicMessageBuilder` picks it), read to
 * JSON as protobuf's JsonFormat prints them and then taken as JSON would be. Attribute requests,
 * responses and updates are ThingsBoard's fixed messages from its queue.proto and transport.proto
 * (`ProtoMqttAdaptor`, `ProtoCoapAdaptor`).
 */

/** ThingsBoard's own messages the transports use, field numbers as in queue.proto and transport.proto. */
const FIXED = protobuf.parse(
  `syntax = "proto3";
  package transport;
  enum KeyValueType { BOOLEAN_V = 0; LONG_V = 1; DOUBLE_V = 2; STRING_V = 3; JSON_V = 4; }
  message KeyValueProto { string key = 1; KeyValueType type = 2; bool bool_v = 3; int64 long_v = 4; double double_v = 5; string string_v = 6; string json_v = 7; }
  message TsKvProto { int64 ts = 1; KeyValueProto kv = 2; optional int64 version = 3; }
  message AttributeUpdateNotificationMsg { repeated TsKvProto sharedUpdated = 1; repeated string sharedDeleted = 2; }
  message GetAttributeResponseMsg { int32 requestId = 1; repeated TsKvProto clientAttributeList = 2; repeated TsKvProto sharedAttributeList = 3; bool isMultipleAttributesRequest = 4; string error = 5; bool sharedStateMsg = 6; }
  message AttributesRequest { string clientKeys = 1; string sharedKeys = 2; }
  enum ResponseStatus { UNKNOWN = 0; SUCCESS = 1; NOT_FOUND = 2; FAILURE = 3; }
  enum CredentialsType { ACCESS_TOKEN = 0; X509_CERTIFICATE = 1; MQTT_BASIC = 2; LWM2M_CREDENTIALS = 3; }
  message ProvisionDeviceCredentialsMsg { string provisionDeviceKey = 1; string provisionDeviceSecret = 2; }
  message ValidateDeviceTokenRequestMsg { string token = 1; }
  message ValidateDeviceX509CertRequestMsg { string hash = 1; }
  message ValidateBasicMqttCredRequestMsg { string clientId = 1; string userName = 2; string password = 3; }
  message CredentialsDataProto {
    ValidateDeviceTokenRequestMsg validateDeviceTokenRequestMsg = 1;
    ValidateDeviceX509CertRequestMsg validateDeviceX509CertRequestMsg = 2;
    ValidateBasicMqttCredRequestMsg validateBasicMqttCredRequestMsg = 3;
  }
  message ProvisionDeviceRequestMsg {
    string deviceName = 1; CredentialsType credentialsType = 2; ProvisionDeviceCredentialsMsg provisionDeviceCredentialsMsg = 3;
    CredentialsDataProto credentialsDataProto = 4; bool gateway = 5;
  }
  message ProvisionDeviceResponseMsg { ResponseStatus status = 1; CredentialsType credentialsType = 2; string credentialsValue = 3; }`,
  { keepCase: true },
).root;

const KeyValueType = { BOOLEAN_V: 0, LONG_V: 1, DOUBLE_V: 2, STRING_V: 3, JSON_V: 4 } as const;
const AttributeUpdateNotificationMsg = FIXED.lookupType('AttributeUpdateNotificationMsg');
const GetAttributeResponseMsg = FIXED.lookupType('GetAttributeResponseMsg');
const AttributesRequest = FIXED.lookupType('AttributesRequest');
const ProvisionDeviceRequestMsg = FIXED.lookupType('ProvisionDeviceRequestMsg');
const ProvisionDeviceResponseMsg = FIXED.lookupType('ProvisionDeviceResponseMsg');

/** The OTA telemetry keys a device reports (reference §1.3, §8). */
const OTA_TELEMETRY_KEYS = ['fw_state', 'sw_state', 'fw_error', 'sw_error', 'current_fw_title', 'current_fw_version', 'current_sw_title', 'current_sw_version'];

/**
 * protobuf's JSON name of a field (`fw_state` -> `fwState`), which ThingsBoard's JsonFormat prints.
 * No field name prints as `fw_state`, so a protobuf device could never report its update state; the
 * JSON names of the OTA keys are therefore read back as the keys themselves (our one departure).
 */
const jsonName = (name: string): string => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
const OTA_KEY_BY_JSON_NAME: ReadonlyMap<string, string> = new Map(OTA_TELEMETRY_KEYS.map((k) => [jsonName(k), k]));

/** What a profile's transport configuration says about protobuf, ThingsBoard's names. */
export interface ProtoPayloadSettings {
  deviceTelemetryProtoSchema: string;
  deviceAttributesProtoSchema: string;
  /** Uplinks that are not protobuf are tried as JSON (`BackwardCompatibilityAdaptor`). */
  enableCompatibilityWithJsonPayloadFormat: boolean;
  /** With compatibility on: updates and responses on the v1 topics go out as JSON. */
  useJsonPayloadFormatForDefaultDownlinkTopics: boolean;
}

export class ProtoSchemaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtoSchemaError';
  }
}

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : undefined);

/**
 * The protobuf settings of a profile (MQTT `transportPayloadTypeConfiguration`, CoAP
 * `coapDeviceTypeConfiguration.transportPayloadTypeConfiguration`), or null for JSON.
 */
export function protoPayloadSettings(extra: Json): ProtoPayloadSettings | null {
  const transport = obj(obj(extra.profileData)?.transportConfiguration) ?? {};
  const config = obj(transport.transportPayloadTypeConfiguration) ?? obj(obj(transport.coapDeviceTypeConfiguration)?.transportPayloadTypeConfiguration);
  if (config?.transportPayloadType !== 'PROTOBUF') return null;
  const compatible = config.enableCompatibilityWithJsonPayloadFormat === true;
  return {
    deviceTelemetryProtoSchema: typeof config.deviceTelemetryProtoSchema === 'string' ? config.deviceTelemetryProtoSchema : '',
    deviceAttributesProtoSchema: typeof config.deviceAttributesProtoSchema === 'string' ? config.deviceAttributesProtoSchema : '',
    enableCompatibilityWithJsonPayloadFormat: compatible,
    useJsonPayloadFormatForDefaultDownlinkTopics: compatible && config.useJsonPayloadFormatForDefaultDownlinkTopics === true,
  };
}

/**
 * The message a schema's payloads are: its last top-level message. Only proto3 schemas without
 * imports or options, as `DynamicProtoUtils.validateProtoSchema` allows.
 */
const PROTO3 = /^\s*syntax\s*=\s*["']proto3["']\s*;/m;

function messageOf(schema: string, what: string): protobuf.Type {
  let parsed: protobuf.IParserResult;
  try {
    parsed = protobuf.parse(schema, { keepCase: true });
  } catch (err) {
    throw new ProtoSchemaError(`[Transport Configuration] failed to parse ${what} due to: ${(err as Error).message}`);
  }
  if (!PROTO3.test(schema)) throw new ProtoSchemaError(`[Transport Configuration] invalid schema syntax for ${what} provided! Only proto3 allowed!`);
  if (parsed.imports?.length || parsed.weakImports?.length) throw new ProtoSchemaError(`[Transport Configuration] invalid ${what} provided! Schema imports don't support!`);
  const ns = parsed.package ? parsed.root.lookup(parsed.package) : parsed.root;
  const types = ((ns as protobuf.Namespace | null)?.nestedArray ?? []).filter((t): t is protobuf.Type => t instanceof protobuf.Type);
  const last = types[types.length - 1];
  if (!last) throw new ProtoSchemaError(`[Transport Configuration] invalid ${what} provided! At least one Message definition should exists!`);
  try {
    parsed.root.resolveAll();
  } catch (err) {
    throw new ProtoSchemaError(`[Transport Configuration] failed to parse ${what} due to: ${(err as Error).message}`);
  }
  return last;
}

/**
 * A decoded message as JsonFormat prints it with `includingDefaultValueFields`: fields by their
 * JSON names, scalars without presence at their defaults, unset messages and proto3 `optional`
 * fields left out, 64-bit integers as numbers, enums by name.
 */
function toJson(type: protobuf.Type, message: protobuf.Message): Json {
  const raw = type.toObject(message, { longs: Number, enums: String, bytes: String, defaults: true, arrays: true, objects: true });
  return renamed(type, raw);
}

function renamed(type: protobuf.Type, raw: Json): Json {
  const out: Json = {};
  for (const field of type.fieldsArray) {
    const value = raw[field.name];
    if (value === undefined || value === null) continue;
    const name = jsonName(field.name);
    const key = OTA_KEY_BY_JSON_NAME.get(name) ?? name;
    const nested = field.resolvedType instanceof protobuf.Type ? field.resolvedType : null;
    if (nested && !field.map) out[key] = Array.isArray(value) ? value.map((v) => renamed(nested, v as Json)) : renamed(nested, value as Json);
    else out[key] = value;
  }
  return out;
}

/** ThingsBoard's KeyValueProto for a stored value: its type by the JSON value's kind. */
function keyValue(key: string, value: AttributeValue): Json {
  if (typeof value === 'boolean') return { key, type: KeyValueType.BOOLEAN_V, bool_v: value };
  if (typeof value === 'number') return Number.isInteger(value) ? { key, type: KeyValueType.LONG_V, long_v: value } : { key, type: KeyValueType.DOUBLE_V, double_v: value };
  if (typeof value === 'string') return { key, type: KeyValueType.STRING_V, string_v: value };
  return { key, type: KeyValueType.JSON_V, json_v: JSON.stringify(value) };
}

const tsKvList = (attributes: AttributeMap | undefined, ts: number): Json[] => Object.entries(attributes ?? {}).map(([key, value]) => ({ ts, kv: keyValue(key, value) }));

const encode = (type: protobuf.Type, value: Json): Buffer => Buffer.from(type.encode(type.fromObject(value)).finish());

/** A payload that is not what its schema says: the transport refuses it as ThingsBoard's AdaptorException. */
export class ProtoPayloadError extends Error {}

function decode(type: protobuf.Type, payload: Buffer): protobuf.Message {
  try {
    return type.decode(payload);
  } catch (err) {
    throw new ProtoPayloadError((err as Error).message);
  }
}

/** One profile's protobuf payloads: its two schemas, compiled once. */
export class ProtoPayloads {
  private readonly telemetry: protobuf.Type;
  private readonly attributes: protobuf.Type;

  constructor(readonly settings: ProtoPayloadSettings) {
    this.telemetry = messageOf(settings.deviceTelemetryProtoSchema, 'telemetry proto schema');
    this.attributes = messageOf(settings.deviceAttributesProtoSchema, 'attributes proto schema');
  }

  /** Telemetry as the JSON ThingsBoard would have read (`{...}` or `{ts, values}`). Throws ProtoPayloadError. */
  decodeTelemetry(payload: Buffer): Json {
    return toJson(this.telemetry, decode(this.telemetry, payload));
  }

  /** Client attributes as JSON. Throws ProtoPayloadError. */
  decodeAttributes(payload: Buffer): Json {
    return toJson(this.attributes, decode(this.attributes, payload));
  }

  /** `AttributesRequest {clientKeys, sharedKeys}`: comma-separated, as the JSON request. Throws ProtoPayloadError. */
  static decodeAttributeRequest(payload: Buffer): { clientKeys: string; sharedKeys: string } {
    const m = AttributesRequest.toObject(decode(AttributesRequest, payload), { defaults: true }) as { clientKeys: string; sharedKeys: string };
    return { clientKeys: m.clientKeys, sharedKeys: m.sharedKeys };
  }

  /** `GetAttributeResponseMsg` with the request id and each scope's attributes. */
  static encodeAttributeResponse(requestId: number, found: { client?: AttributeMap; shared?: AttributeMap }, ts: number): Buffer {
    return encode(GetAttributeResponseMsg, {
      requestId,
      clientAttributeList: tsKvList(found.client, ts),
      sharedAttributeList: tsKvList(found.shared, ts),
    });
  }

  /**
   * `ProvisionDeviceRequestMsg` as the JSON request ThingsBoard's JSON adaptor reads (`deviceName`,
   * `provisionDeviceKey`, ..., `credentialsType` with `token`, `clientId`/`username`/`password` or
   * `hash`). The credentials type defaults to ACCESS_TOKEN on the wire; without a token in
   * `credentialsDataProto` it asks for nothing. Throws ProtoPayloadError.
   */
  static decodeProvisionRequest(payload: Buffer): Json {
    const m = ProvisionDeviceRequestMsg.toObject(decode(ProvisionDeviceRequestMsg, payload), { enums: String, defaults: true }) as {
      deviceName: string;
      credentialsType: string;
      provisionDeviceCredentialsMsg?: { provisionDeviceKey?: string; provisionDeviceSecret?: string };
      credentialsDataProto?: {
        validateDeviceTokenRequestMsg?: { token?: string };
        validateDeviceX509CertRequestMsg?: { hash?: string };
        validateBasicMqttCredRequestMsg?: { clientId?: string; userName?: string; password?: string };
      };
    };
    const out: Json = {
      deviceName: m.deviceName,
      provisionDeviceKey: m.provisionDeviceCredentialsMsg?.provisionDeviceKey ?? '',
      provisionDeviceSecret: m.provisionDeviceCredentialsMsg?.provisionDeviceSecret ?? '',
    };
    const creds = m.credentialsDataProto ?? {};
    if (m.credentialsType === 'ACCESS_TOKEN' && creds.validateDeviceTokenRequestMsg?.token)
      return { ...out, credentialsType: 'ACCESS_TOKEN', token: creds.validateDeviceTokenRequestMsg.token };
    if (m.credentialsType === 'X509_CERTIFICATE') return { ...out, credentialsType: 'X509_CERTIFICATE', hash: creds.validateDeviceX509CertRequestMsg?.hash ?? '' };
    if (m.credentialsType === 'MQTT_BASIC') {
      const b = creds.validateBasicMqttCredRequestMsg ?? {};
      return { ...out, credentialsType: 'MQTT_BASIC', clientId: b.clientId || null, username: b.userName || null, password: b.password || null };
    }
    return out;
  }

  /** `ProvisionDeviceResponseMsg`: the status, and on success the credentials (basic ones as their JSON). */
  static encodeProvisionResponse(r: { status: string; credentialsType?: string; credentialsValue?: unknown }): Buffer {
    const value = r.credentialsValue;
    return encode(ProvisionDeviceResponseMsg, {
      status: r.status,
      ...(r.credentialsType ? { credentialsType: r.credentialsType } : {}),
      ...(value !== undefined && value !== null ? { credentialsValue: typeof value === 'string' ? value : JSON.stringify(value) } : {}),
    });
  }

  /** `AttributeUpdateNotificationMsg`: the updated shared attributes and the deleted keys. */
  static encodeUpdate(attributes: AttributeMap, deleted: readonly string[], ts: number): Buffer {
    return encode(AttributeUpdateNotificationMsg, { sharedUpdated: tsKvList(attributes, ts), sharedDeleted: [...deleted] });
  }
}

/** Profiles compiled, by id and version: a saved profile compiles again, the rest once. Profiles are few. */
const compiled = new Map<string, ProtoPayloads | null>();
const MAX_COMPILED = 256;

/**
 * A profile's protobuf payloads, or null when it speaks JSON. A schema that no longer compiles is
 * treated as ThingsBoard treats a missing descriptor: every payload of that kind is refused.
 */
export function protoPayloadsOf(profile: Pick<DeviceProfile, 'id' | 'version' | 'extra'> | null): ProtoPayloads | 'invalid' | null {
  if (!profile) return null;
  const settings = protoPayloadSettings(profile.extra);
  if (!settings) return null;
  const id = `${profile.id}:${profile.version}`;
  if (!compiled.has(id)) {
    if (compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value as string);
    let payloads: ProtoPayloads | null;
    try {
      payloads = new ProtoPayloads(settings);
    } catch {
      payloads = null;
    }
    compiled.set(id, payloads);
  }
  return compiled.get(id) ?? 'invalid';
}
