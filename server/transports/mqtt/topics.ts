import type { OtaPackageType } from '../../store/ota-packages';

/**
 * ThingsBoard's device MQTT topics (reference §3.2-3.4, `MqttTopics.java`), and what a device may
 * subscribe to. `v1/devices/me/...` always means the connection's own device.
 *
 * Three topic families carry the same JSON: `v1` (`v1/devices/me/...`), `v2` (`v2/a`, `v2/t`, ...)
 * and `v2j`, the "force JSON" short topics (`v2/a/j`, `v2/t/j`, `v2/a/req/j/{id}`, ...). The
 * "force protobuf" topics (`.../p`) are not served: this server speaks JSON only.
 */
export type TopicFamily = 'v1' | 'v2' | 'v2j';

interface FamilyTopics {
  /** Client attributes in, shared attribute updates out; also the update subscription filter. */
  attributes: string;
  telemetry: string;
  attributeRequest: string;
  attributeResponse: string;
  /** Client-side RPC: the device's request in, our answer out. */
  rpcRequest: string;
  rpcResponse: string;
}

export const FAMILY: Readonly<Record<TopicFamily, FamilyTopics>> = {
  v1: {
    attributes: 'v1/devices/me/attributes',
    telemetry: 'v1/devices/me/telemetry',
    attributeRequest: 'v1/devices/me/attributes/request/',
    attributeResponse: 'v1/devices/me/attributes/response/',
    rpcRequest: 'v1/devices/me/rpc/request/',
    rpcResponse: 'v1/devices/me/rpc/response/',
  },
  v2: { attributes: 'v2/a', telemetry: 'v2/t', attributeRequest: 'v2/a/req/', attributeResponse: 'v2/a/res/', rpcRequest: 'v2/r/req/', rpcResponse: 'v2/r/res/' },
  v2j: { attributes: 'v2/a/j', telemetry: 'v2/t/j', attributeRequest: 'v2/a/req/j/', attributeResponse: 'v2/a/res/j/', rpcRequest: 'v2/r/req/j/', rpcResponse: 'v2/r/res/j/' },
};

/** Errors of a firmware or software download: always this topic, also for software (§3.4, §10.3). */
export const OTA_ERROR_TOPIC = 'v2/fw/error';

const typeSegment = (type: OtaPackageType): 'fw' | 'sw' => (type === 'FIRMWARE' ? 'fw' : 'sw');

/** `v2/fw/response/{requestId}/chunk/{n}`: the request id as the device wrote it, the index as a number (§3.4). */
export const chunkResponseTopic = (type: OtaPackageType, requestId: string, chunk: number): string => `v2/${typeSegment(type)}/response/${requestId}/chunk/${chunk}`;

/** What a PUBLISH from a device asks for, by its topic. */
export type DevicePublish =
  | { kind: 'attributes'; family: TopicFamily }
  | { kind: 'telemetry'; family: TopicFamily }
  | { kind: 'attributeRequest'; family: TopicFamily; requestId: number }
  | { kind: 'rpcRequest'; family: TopicFamily; requestId: number }
  /** The device's answer to a server-side RPC; this server sends none, so there is nothing to match. */
  | { kind: 'rpcResponse' }
  | { kind: 'chunk'; type: OtaPackageType; requestId: string; chunk: string }
  /** A known topic whose request id is not an int: ThingsBoard's adaptor rejects the message. */
  | { kind: 'invalid'; reason: string }
  | { kind: 'unknown' };

/**
 * Java's `Integer.parseInt`, which ThingsBoard applies to request ids (and chunk sizes): an
 * optional sign, decimal digits, within 32 bits. Null for anything else.
 */
export function parseJavaInt(text: string): number | null {
  if (!/^[+-]?\d{1,10}$/.test(text)) return null;
  const n = Number(text);
  return n >= -2147483648 && n <= 2147483647 ? n : null;
}

const CHUNK_REQUEST = /^v2\/(fw|sw)\/request\/(\d+)\/chunk\/(\d+)$/;
const FAMILIES_LONGEST_FIRST: readonly TopicFamily[] = ['v2j', 'v2', 'v1'];

/**
 * Classifies a device's PUBLISH topic as `MqttTransportHandler.processDevicePublish` does. The
 * chunk pattern is anchored (ThingsBoard's `Matcher.find()` is not, which nobody relies on).
 */
export function classifyPublish(topic: string): DevicePublish {
  const chunk = CHUNK_REQUEST.exec(topic);
  if (chunk) return { kind: 'chunk', type: chunk[1] === 'fw' ? 'FIRMWARE' : 'SOFTWARE', requestId: chunk[2] as string, chunk: chunk[3] as string };
  for (const family of FAMILIES_LONGEST_FIRST) {
    const t = FAMILY[family];
    if (topic === t.attributes) return { kind: 'attributes', family };
    if (topic === t.telemetry) return { kind: 'telemetry', family };
  }
  if (topic.startsWith('v2/a/req/p/') || topic.startsWith('v2/r/req/p/')) return { kind: 'unknown' };
  for (const family of FAMILIES_LONGEST_FIRST) {
    const t = FAMILY[family];
    for (const [prefix, kind] of [
      [t.attributeRequest, 'attributeRequest'],
      [t.rpcRequest, 'rpcRequest'],
    ] as const) {
      if (!topic.startsWith(prefix)) continue;
      const requestId = parseJavaInt(topic.slice(prefix.length));
      return requestId === null ? { kind: 'invalid', reason: `request id of ${topic} is not a number` } : { kind, family, requestId };
    }
    if (topic.startsWith(t.rpcResponse)) return { kind: 'rpcResponse' };
  }
  return { kind: 'unknown' };
}

/** What a subscription filter is, when this server accepts it. */
export type Subscription = { accepted: true; attributeUpdates: TopicFamily | null } | { accepted: false };

const ACCEPTED_FILTERS: ReadonlyMap<string, TopicFamily | null> = new Map<string, TopicFamily | null>([
  ...(Object.entries(FAMILY) as Array<[TopicFamily, FamilyTopics]>).flatMap(([family, t]): Array<[string, TopicFamily | null]> => [
    [t.attributes, family],
    [`${t.attributeResponse}+`, null],
    [`${t.rpcRequest}+`, null],
    [`${t.rpcResponse}+`, null],
  ]),
  // Only these four OTA filters, string-equal; `v2/fw/response/+` or `v2/fw/#` are refused (§3.4).
  ['v2/fw/response/+/chunk/+', null],
  ['v2/fw/error', null],
  ['v2/sw/response/+/chunk/+', null],
  ['v2/sw/error', null],
]);

/**
 * ThingsBoard's `processSubscribe`: a fixed list of filters, compared as strings; every other
 * filter (wildcards over our topics, gateway and provisioning topics, anything unrelated) is
 * refused, as ThingsBoard's `default:` branch does. Answers to requests are sent whether the
 * device subscribed or not, so a refused filter costs a device nothing it relies on.
 */
export function classifySubscription(filter: string): Subscription {
  const family = ACCEPTED_FILTERS.get(filter);
  return family === undefined ? { accepted: false } : { accepted: true, attributeUpdates: family };
}

/** MQTT topic matching (`+` one level, `#` the rest) of a topic against a subscription filter. */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === topic) return true;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
