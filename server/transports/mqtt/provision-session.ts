import type { IConnectPacket, IPublishPacket } from 'mqtt-packet';
import type { ProvisionRequest } from '../../devices/device-provisioning';
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
 * A PUBLISH in a provisioning session: the JSON request on `/provision/request` is answered on
 * `/provision/response` (after the PUBACK, as ThingsBoard does); anything else, or a payload that
 * is no JSON object, closes the connection.
 */
export async function handleProvisionPublish(s: PublishingSession, host: PublishHost, p: IPublishPacket): Promise<void> {
  if (p.topic !== PROVISION_REQUEST_TOPIC) return s.close('protocol-error', REASON.topicNameInvalid);
  const payload = typeof p.payload === 'string' ? Buffer.from(p.payload) : p.payload;
  if (payload.length > host.config.maxChunkSize) return s.close('packet-too-large', REASON.packetTooLarge);
  let request: unknown;
  try {
    request = JSON.parse(payload.toString('utf8'));
  } catch {
    return s.close('invalid-payload', REASON.payloadFormatInvalid);
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) return s.close('invalid-payload', REASON.payloadFormatInvalid);
  const provisioning = host.ctx.provisioning;
  const answer = provisioning ? await provisioning.provision(request as ProvisionRequest) : { status: 'NOT_FOUND', errorMsg: 'Provision data was not found!' };
  if (s.closing) return;
  s.ack(p);
  s.publish(PROVISION_RESPONSE_TOPIC, Buffer.from(JSON.stringify(answer)));
}
