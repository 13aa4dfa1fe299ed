/**
 * The MQTT return and reason codes this endpoint sends, per protocol version. Versions 3 (MQTT
 * 3.1) and 4 (3.1.1) have the old one-byte CONNACK return codes and SUBACK 0x80 for every refusal;
 * version 5 has reason codes.
 */
export type ProtocolVersion = 3 | 4 | 5;

/** MQTT 5 reason codes [MQTT-5 §2.4], by name. */
export const REASON = {
  success: 0x00,
  unspecifiedError: 0x80,
  malformedPacket: 0x81,
  protocolError: 0x82,
  implementationSpecificError: 0x83,
  clientIdentifierNotValid: 0x85,
  badUserNameOrPassword: 0x86,
  notAuthorized: 0x87,
  serverShuttingDown: 0x8b,
  keepAliveTimeout: 0x8d,
  sessionTakenOver: 0x8e,
  topicFilterInvalid: 0x8f,
  topicNameInvalid: 0x90,
  packetTooLarge: 0x95,
  administrativeAction: 0x98,
  payloadFormatInvalid: 0x99,
} as const;

/** What the CONNECT carried, for choosing the refusal code. */
export interface Credentials {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
}

/**
 * The CONNACK code refusing an unknown device, as `MqttTransportHandler.onValidateDeviceResponse`
 * chooses it (reference §3.1): MQTT 5 answers 0x86 when username, password and client id were all
 * sent or exactly one of username and password, else 0x85 for a non-blank client id, else 0x87.
 * `ReturnCodeResolver` maps them for 3.1/3.1.1: 0x85 to 2 (identifier rejected), the others to 5
 * (not authorized).
 */
export function refusalCode(version: ProtocolVersion, c: Credentials): number {
  const hasUser = c.username !== undefined;
  const hasPassword = c.password !== undefined;
  let code: number = REASON.notAuthorized;
  if ((hasUser && hasPassword) || hasUser !== hasPassword) code = REASON.badUserNameOrPassword;
  else if (c.clientId.trim() !== '') code = REASON.clientIdentifierNotValid;
  if (version === 5) return code;
  return code === REASON.clientIdentifierNotValid ? 2 : 5;
}

/** SUBACK for a refused filter: 0x80 (Failure) before MQTT 5, 0x8F (Topic Filter invalid) in 5. */
export const refusedSubscription = (version: ProtocolVersion): number => (version === 5 ? REASON.topicFilterInvalid : 0x80);
