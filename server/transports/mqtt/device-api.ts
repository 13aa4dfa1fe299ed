import type { IPublishPacket } from 'mqtt-packet';
import type { Device } from '../../store/devices';
import { parseTelemetry } from '../../store/telemetry';
import { ProtoPayloadError, ProtoPayloads } from '../proto-payloads';
import type { AttributeMap } from '../../store/attributes';
import { attributeKeys, parseAttributeRequest, parseJson, parseAttributes, parseRpcRequest, parseTelemetryPayload, readAttributes, sessionLimits } from './device-requests';
import type { ChunkAnswer, OtaErrorStatus } from './firmware-chunks';
import { publishHeader, pubackSuccess } from './packets';
import { REASON } from './reason-codes';
import type { PublishHost, PublishingSession } from './publish-context';
import { classifyPublish, FAMILY, OTA_ERROR_TOPIC, type DevicePublish, type TopicFamily } from './topics';

/** A chunk answer this big or smaller is read at once and sent in one write; larger ones (whole files) stream. */
const INLINE_CHUNK = 1024 * 1024;
/**
 * A chunk answer this big or smaller goes out with its PUBACK and PUBLISH header in one buffer
 * (one `write`, which costs less than a corked `writev` of three); larger ones are not copied
 * (at 16 KiB the copy cost more than the writev saves: less server CPU per request without it, in
 * interleaved runs of bench/mqtt.ts's downloads).
 */
const COPY_CHUNK = 4 * 1024;
/** The pieces a streamed answer is read and written in. */
const STREAM_PIECE = 256 * 1024;

/**
 * What a device's PUBLISH does, topic by topic, as ThingsBoard's `processDevicePublish` (reference
 * §3.2-3.4): client attributes and telemetry are saved and emitted as uplink events, attribute
 * and RPC requests answered, firmware and software chunks sent. Answers go to the requesting
 * connection whether or not it subscribed to them. `v1/devices/me` is the session's own device.
 */
export function handlePublish(s: PublishingSession, host: PublishHost, p: IPublishPacket): Promise<void> | void {
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  if (payload.length > host.config.maxChunkSize) return s.close('packet-too-large', REASON.packetTooLarge);
  const target = classifyPublish(p.topic);
  // A chunk request is answered without a promise when it can be (its id bound, its bytes read ahead).
  return target.kind === 'chunk' ? chunkRequest(s, host, p, target, payload) : handleOther(s, host, p, target, payload);
}

async function handleOther(s: PublishingSession, host: PublishHost, p: IPublishPacket, target: Exclude<DevicePublish, { kind: 'chunk' }>, payload: Buffer): Promise<void> {
  const device = s.device as Device;
  const { ctx } = host;
  const now = host.timers.now();
  switch (target.kind) {
    case 'attributes': {
      const proto = protoUplink(s, target.family);
      const attributes = proto ? (objectOrNull(proto((p) => p.decodeAttributes(payload), payload)) as AttributeMap | null) : parseAttributes(payload);
      if (!attributes) return invalid(s, p);
      await ctx.attributes.save(device.id, 'CLIENT', attributes, now);
      host.uplink({ ...uplinkBase(device, now), kind: 'attributes', attributes });
      return s.ack(p);
    }
    case 'telemetry': {
      const proto = protoUplink(s, target.family);
      const entries = proto
        ? (parseTelemetry(
            proto((p) => p.decodeTelemetry(payload), payload),
            now,
          ) ?? null)
        : parseTelemetryPayload(payload, now);
      if (!entries) return invalid(s, p);
      await ctx.telemetry.save(device.id, entries);
      host.uplink({ ...uplinkBase(device, now), kind: 'telemetry', entries });
      return s.ack(p);
    }
    case 'attributeRequest': {
      const proto = protoUplink(s, target.family);
      const keys = proto ? attributeKeys(proto(() => ProtoPayloads.decodeAttributeRequest(payload), payload)) : parseAttributeRequest(payload);
      if (!keys) return invalid(s, p);
      const found = await readAttributes(ctx.attributes, device.id, keys);
      s.ack(p);
      // Sent whether or not the device subscribed to responses, as ThingsBoard does.
      const answer = protoDownlink(s, target.family) ? ProtoPayloads.encodeAttributeResponse(target.requestId, found, now) : Buffer.from(JSON.stringify(found));
      return s.publish(`${FAMILY[target.family].attributeResponse}${target.requestId}`, answer);
    }
    case 'rpcRequest': {
      const rpc = parseRpcRequest(payload);
      if (!rpc) return invalid(s, p);
      s.ack(p);
      // ThingsBoard answers getSessionLimits itself and hands other methods to its rule engine;
      // there is none here, so the device gets an error now rather than waiting for a timeout.
      const answer =
        rpc.method === 'getSessionLimits' ? sessionLimits(host.config.maxChunkSize, host.config.maxInflightMessages) : { error: `Unsupported RPC method: ${rpc.method}` };
      return s.publish(`${FAMILY[target.family].rpcResponse}${target.requestId}`, Buffer.from(JSON.stringify(answer)));
    }
    case 'invalid':
      return invalid(s, p);
    case 'rpcResponse':
      return s.ack(p);
    case 'unknown':
      // Acknowledged and ignored; MQTT 5 says why (ThingsBoard's TOPIC_NAME_INVALID).
      return s.ack(p, REASON.topicNameInvalid);
  }
}

/**
 * How a protobuf profile's uplink on this topic family is read (`DeviceSessionCtx.getPayloadAdaptor`):
 * null when it is JSON (a JSON profile, or the force-JSON `v2/.../j` topics); else a reader that
 * decodes protobuf and, with `enableCompatibilityWithJsonPayloadFormat`, falls back to JSON
 * (`BackwardCompatibilityAdaptor`). A reader answers undefined for a payload neither accepts.
 */
function protoUplink(s: PublishingSession, family: TopicFamily): ((decode: (p: ProtoPayloads) => unknown, payload: Buffer) => unknown) | null {
  const payloads = s.payloads;
  if (!payloads || family === 'v2j') return null;
  return (decode, payload) => {
    // A profile whose schema does not compile has no descriptor: ThingsBoard refuses every such payload.
    if (payloads === 'invalid') return undefined;
    try {
      return decode(payloads);
    } catch (err) {
      if (!(err instanceof ProtoPayloadError)) throw err;
      return payloads.settings.enableCompatibilityWithJsonPayloadFormat ? parseJson(payload) : undefined;
    }
  };
}

/** Whether answers and updates on this family go out as protobuf (`DeviceSessionCtx.getAdaptor`). */
export function protoDownlink(s: Pick<PublishingSession, 'payloads'>, family: TopicFamily): boolean {
  const payloads = s.payloads;
  if (!payloads || family === 'v2j') return false;
  return !(family === 'v1' && payloads !== 'invalid' && payloads.settings.useJsonPayloadFormatForDefaultDownlinkTopics);
}

const objectOrNull = (v: unknown): Record<string, unknown> | null => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null);

/**
 * A payload ThingsBoard's adaptor rejects: in MQTT 5 a QoS 1 message gets PUBACK 0x99 and the
 * connection stays; otherwise the connection is closed (`sendResponseForAdaptorErrorOrCloseContext`).
 */
function invalid(s: PublishingSession, p: IPublishPacket): void {
  if (s.version === 5 && p.qos > 0) return s.ack(p, REASON.payloadFormatInvalid);
  s.close('invalid-payload', REASON.payloadFormatInvalid);
}

/** A firmware or software chunk request (§3.4): PUBACK and the chunk, or the error on `v2/fw/error`. */
function chunkRequest(s: PublishingSession, host: PublishHost, p: IPublishPacket, target: Extract<DevicePublish, { kind: 'chunk' }>, payload: Buffer): Promise<void> | void {
  const device = s.device as Device;
  // The package effective now (the device or its profile may have changed since CONNECT), through
  // the lookup cache, on the first request of an id; later ones are answered from what it bound.
  const answer = s
    .firmwareChunks()
    .answer({ type: target.type, requestId: target.requestId, chunk: target.chunk, payload }, (type) => host.ctx.lookups.packageOf(device.tenantId, device.id, type));
  if (answer instanceof Promise) return answer.then((a) => (s.closing ? undefined : respond(s, host, p, a)));
  return respond(s, host, p, answer);
}

function respond(s: PublishingSession, host: PublishHost, p: IPublishPacket, answer: ChunkAnswer): Promise<void> | void {
  if (!answer.ok) return otaError(s, host, answer.status, answer.detail);
  const length = answer.end - answer.start;
  // A chunk of a window read ahead, or the empty chunk past the end: sent now.
  const bytes = !length ? EMPTY : length <= INLINE_CHUNK ? s.readAhead().cached(answer.pkg.blobSha256, answer.start, answer.end, answer.pkg.dataSize) : undefined;
  if (!bytes) return sendChunk(s, host, p, answer);
  writeChunk(s, p, answer, bytes);
  if (length) downloaded(s, host, answer);
}

const EMPTY = Buffer.alloc(0);

/** PUBACK, header and the chunk's bytes: one write for a small chunk, else one writev, never a copy of a large one. */
function writeChunk(s: PublishingSession, p: IPublishPacket, answer: Extract<ChunkAnswer, { ok: true }>, bytes: Buffer): void {
  const qos = s.qosFor(answer.topic);
  const header = publishHeader(answer.topic, bytes.length, qos, qos ? s.nextMessageId() : 0, s.version);
  if (p.qos === 1 && bytes.length <= COPY_CHUNK) {
    // PUBACK, header and bytes in one buffer: one write, one TCP segment.
    s.write(Buffer.concat([pubackSuccess(p.messageId ?? 0), header, bytes]));
  } else {
    // One writev for PUBACK, header and bytes.
    s.socket.cork();
    s.ack(p);
    s.write(header);
    if (bytes.length) s.write(bytes);
    s.socket.uncork();
  }
}

/** PUBACK, then the chunk on `v2/fw/response/{id}/chunk/{n}` (§3.4), read from the blob store now. */
async function sendChunk(s: PublishingSession, host: PublishHost, p: IPublishPacket, answer: Extract<ChunkAnswer, { ok: true }>): Promise<void> {
  const { reader } = host;
  const { blobSha256: sha } = answer.pkg;
  const length = answer.end - answer.start;
  const firstEnd = Math.min(answer.end, answer.start + (length <= INLINE_CHUNK ? length : STREAM_PIECE));
  let first: Buffer;
  try {
    // A chunk (sent whole) through the connection's read-ahead; the first piece of a streamed whole file as it comes.
    first = firstEnd === answer.end ? await s.readAhead().read(sha, answer.start, firstEnd, answer.pkg.dataSize) : await reader.read(sha, answer.start, firstEnd);
  } catch (err) {
    return otaError(s, host, 'NOT_FOUND', `package bytes unreadable: ${(err as Error).message}`);
  }
  if (s.closing) return;
  if (firstEnd === answer.end) writeChunk(s, p, answer, first);
  else {
    const qos = s.qosFor(answer.topic);
    const header = publishHeader(answer.topic, length, qos, qos ? s.nextMessageId() : 0, s.version);
    s.ack(p);
    await stream(s, host, header, first, sha, firstEnd, answer.end);
  }
  downloaded(s, host, answer);
}

/**
 * The `download` uplink of a chunk sent (download progress, /metrics, the flow). One per chunk, so
 * it is written out flat: spreading `uplinkBase` costs more than the rest of the event.
 */
function downloaded(s: PublishingSession, host: PublishHost, answer: Extract<ChunkAnswer, { ok: true }>): void {
  const d = s.device as Device;
  host.uplink({
    tenantId: d.tenantId,
    deviceId: d.id,
    deviceName: d.name,
    transport: 'MQTT',
    ts: host.timers.now(),
    kind: 'download',
    type: answer.type,
    packageId: answer.pkg.id,
    bytes: answer.end - answer.start,
    offset: answer.start,
    size: answer.pkg.dataSize,
  });
}

/** A large answer (a whole file): header, then the bytes piece by piece as the socket takes them; other packets wait. */
async function stream(s: PublishingSession, host: PublishHost, header: Buffer, first: Buffer, sha: string, from: number, end: number): Promise<void> {
  const { socket } = s;
  s.hold();
  try {
    socket.write(header);
    let piece: Buffer | null = first;
    for (let pos = from; piece;) {
      if (s.closing) return;
      if (!socket.write(piece)) await new Promise<void>((resolve) => socket.once('drain', resolve).once('close', resolve));
      piece = pos < end ? await host.reader.read(sha, pos, Math.min(pos + STREAM_PIECE, end)) : null;
      pos += piece?.length ?? 0;
    }
  } catch {
    // The PUBLISH is cut mid-payload: the connection cannot carry anything after it.
    socket.destroy();
  } finally {
    s.release();
  }
}

/** The error as ASCII on `v2/fw/error` (also for software), then the connection is closed (§3.4). */
function otaError(s: PublishingSession, host: PublishHost, status: OtaErrorStatus, detail: string): void {
  host.ctx.logger.warn(`MQTT device '${(s.device as Device).name}': ${status}, ${detail}`);
  s.publish(OTA_ERROR_TOPIC, Buffer.from(status, 'ascii'));
  // ThingsBoard's closeCtx sends MQTT 5 clients IMPLEMENTATION_SPECIFIC_ERROR; the reason string is ours.
  s.close('ota-error', REASON.implementationSpecificError, `${status}: ${detail}`);
}

const uplinkBase = (d: Device, ts: number) => ({ tenantId: d.tenantId, deviceId: d.id, deviceName: d.name, transport: 'MQTT' as const, ts });
