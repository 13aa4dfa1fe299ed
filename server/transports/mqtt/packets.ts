import { generate, type Packet } from 'mqtt-packet';
import type { ProtocolVersion } from './reason-codes';

/**
 * Outgoing packets. mqtt-packet encodes the control packets; PUBLISH headers are written here so
 * a package's bytes can follow from the blob store (streamed, for a whole-file answer) without
 * being copied into one buffer, and so a notification to thousands of devices costs one small
 * header each.
 */

/** Encodes a control packet for the connection's protocol version. */
export const encode = (packet: Packet, version: ProtocolVersion): Buffer => generate(packet, { protocolVersion: version });

/** The MQTT variable byte integer [MQTT-1.5.5], as the remaining length is written. */
function varIntSize(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : 4;
}

function writeVarInt(buf: Buffer, offset: number, n: number): number {
  let value = n;
  do {
    let byte = value % 0x80;
    value = Math.floor(value / 0x80);
    if (value > 0) byte |= 0x80;
    buf[offset++] = byte;
  } while (value > 0);
  return offset;
}

/**
 * Everything of a PUBLISH before its payload [MQTT-3.3]: fixed header, topic, packet id (QoS 1),
 * and an empty property list in MQTT 5. `payloadLength` bytes must follow.
 */
export function publishHeader(topic: string, payloadLength: number, qos: 0 | 1, messageId: number, version: ProtocolVersion): Buffer {
  const topicLength = Buffer.byteLength(topic);
  const variable = 2 + topicLength + (qos ? 2 : 0) + (version === 5 ? 1 : 0);
  const remaining = variable + payloadLength;
  const header = Buffer.allocUnsafe(1 + varIntSize(remaining) + variable);
  header[0] = 0x30 | (qos << 1);
  let o = writeVarInt(header, 1, remaining);
  header.writeUInt16BE(topicLength, o);
  o += 2;
  o += header.write(topic, o, 'utf8');
  if (qos) {
    header.writeUInt16BE(messageId, o);
    o += 2;
  }
  if (version === 5) header[o] = 0;
  return header;
}

/**
 * PUBACK (success) of a QoS 1 PUBLISH, the same 4 bytes in every version: MQTT 5 leaves out the
 * reason code and property length when the code is 0x00 and there are no properties
 * [MQTT-3.4.2.1], as mqtt-packet does too. Written here because a chunk request acknowledges
 * thousands of times a second, and mqtt-packet's generic encoder costs more than the rest of it.
 */
export function pubackSuccess(messageId: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b[0] = 0x40;
  b[1] = 2;
  b.writeUInt16BE(messageId, 2);
  return b;
}

/** Whether `data` is nothing but successful PUBACKs (as `pubackSuccess` writes them). */
export function onlyPubacks(data: Buffer): boolean {
  if (data.length === 0 || data.length % 4 !== 0) return false;
  for (let o = 0; o < data.length; o += 4) if (data[o] !== 0x40 || data[o + 1] !== 2) return false;
  return true;
}

/** A whole PUBLISH with a small payload, in one buffer (one write, one TCP segment). */
export function encodePublish(topic: string, payload: Buffer, qos: 0 | 1, messageId: number, version: ProtocolVersion): Buffer {
  const header = publishHeader(topic, payload.length, qos, messageId, version);
  return Buffer.concat([header, payload], header.length + payload.length);
}

/**
 * One payload published to many connections (a notification to a batch's devices): its PUBLISH is
 * encoded once per topic, QoS and protocol version; a connection whose packet id differs gets a
 * copy with its id written in. Connections that need the very same bytes share one buffer, as a
 * socket only reads what it is given to write.
 */
export class SharedPublish {
  private readonly encoded = new Map<string, Map<number, Buffer>>();

  constructor(private readonly payload: Buffer) {}

  packet(topic: string, qos: 0 | 1, messageId: number, version: ProtocolVersion): Buffer {
    const key = `${version}/${qos}/${topic}`;
    let byId = this.encoded.get(key);
    if (!byId) this.encoded.set(key, (byId = new Map()));
    let packet = byId.get(messageId);
    if (packet) return packet;
    const first: Buffer | undefined = byId.values().next().value;
    if (first) {
      packet = Buffer.allocUnsafe(first.length);
      first.copy(packet);
      // The packet id is the last field before the payload (and MQTT 5's empty property list) [MQTT-3.3.2].
      packet.writeUInt16BE(messageId, first.length - this.payload.length - (version === 5 ? 1 : 0) - 2);
    } else packet = encodePublish(topic, this.payload, qos, messageId, version);
    byId.set(messageId, packet);
    return packet;
  }
}
