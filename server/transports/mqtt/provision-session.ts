import type { IConnectPacket, IPublishPacket } from 'mqtt-packet';
import type { ProvisionRequest } from '../../devices/device-provisioning';
import { ProtoPayloadError, ProtoPayloads } from '../proto-payloads';
import { REASON } from './reason-codes';
import type { PublishHost, PublishingSession } from './publish-context';

/** ThingsBoard's provisioning topics (`MqttTopics.DEVICE_PROVISION_REQUEST_TOPIC`, `..._RESPONSE_TOPIC`). */
export const PROVISION_REQUEST_TOPIC = '/provision/request';
export const PROVISION_RESPONSE_TOPIC = '/provision/response';

/**
 * A CONNECT with user name or client id `provision` opens a provisioning-only session (reference
 * §3.1): accepted without credentials, it may only ask `/provision/request` and subscribe to
 * `/provision/response`. It has no device; the connect timeout closes it, as ThingsBoard closes
 * a provisioning session a while after answering.
 */
export const isProvisionConnect = (p: Pick<IConnectPacket, 'username' | 'clientId'>): boolean => p.username === 'provision' || p.clientId === 'provision';

/** Whether a provisioning session may subscribe to `filter`. */
export const isProvisionFilter = (filter: string): boolean => filter === PROVISION_RESPONSE_TOPIC;

/**
 * A PUBLISH in a provisioning session: the request on `/provision/request` is answered on
 * `/provision/response` (after the PUBACK, as ThingsBoard does), in its format: JSON, or else
 * ThingsBoard's protobuf ProvisionDeviceRequestMsg, answered with a ProvisionDeviceResponseMsg
 * (`processProvisionSessionMsg`). Anything else, or a payload that is neither, closes the connection.
 */
export async function handleProvisionPublish(s: PublishingSession, host: PublishHost, p: IPublishPacket): Promise<void> {
  if (p.topic !== PROVISION_REQUEST_TOPIC) return s.close('protocol-error', REASON.topicNameInvalid);
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  if (payload.length > host.config.maxChunkSize) return s.close('packet-too-large', REASON.packetTooLarge);
  let request: unknown;
  let json = true;
  try {
    request = JSON.parse(payload.toString('utf8'));
  } catch {
    json = false;
    try {
      request = ProtoPayloads.decodeProvisionRequest(payload);
    } catch (err) {
      if (!(err instanceof ProtoPayloadError)) throw err;
      return s.close('invalid-payload', REASON.payloadFormatInvalid);
    }
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) return s.close('invalid-payload', REASON.payloadFormatInvalid);
  const provisioning = host.ctx.provisioning;
  const answer = provisioning ? await provisioning.provision(request as ProvisionRequest) : { status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' };
  if (s.closing) return;
  s.ack(p);
  s.publish(PROVISION_RESPONSE_TOPIC, json ? Buffer.from(JSON.stringify(answer)) : ProtoPayloads.encodeProvisionResponse(answer));
}
