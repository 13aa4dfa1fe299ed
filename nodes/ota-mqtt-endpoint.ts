import { readFileSync } from 'node:fs';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { DEFAULT_VERIFIED_CACHE_SIZE, MQTT_DEFAULTS, MqttTransport, type MqttOptions } from '../server';
import type { OtaServerNode } from './server-ref';
import { settingPicker } from './settings';
import { superviseEndpoint } from './endpoint-lifecycle';

export interface MqttEndpointDef extends NodeDef {
  server: string;
  port: string;
  host: string;
  maxChunkSize: string;
}

export interface MqttEndpointCredentials {
  tlsCert?: string;
  tlsKey?: string;
  /** PEM CA that device (X.509) client certificates must chain to. */
  tlsCa?: string;
}

/** What ota-mqtt nodes get from their `endpoint` property. */
export interface OtaMqttEndpointNode extends Node<MqttEndpointCredentials> {
  /** The listening transport; rejects when the server or the endpoint could not start. */
  transport: Promise<MqttTransport>;
}

/**
 * Where each setting comes from, first found wins: the node's field, then settings.js
 * (`otaMqttEndpointPort`, ...), then the environment (`OTA_MQTT_PORT`, ...), then the default.
 * Throws, naming the field, when a value is not usable.
 */
export function resolveEndpointOptions(
  def: Partial<MqttEndpointDef>,
  creds: MqttEndpointCredentials,
  settings: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): MqttOptions & { port: number; host: string } {
  const pick = settingPicker(settings, env);
  const port = Number(pick(def.port, 'otaMqttEndpointPort', 'OTA_MQTT_PORT') ?? MQTT_DEFAULTS.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`Invalid MQTT port: ${pick(def.port, 'otaMqttEndpointPort', 'OTA_MQTT_PORT')} (use 0-65535, 0 for any free port)`);
  const maxChunkSize = Number(pick(def.maxChunkSize, 'otaMqttEndpointMaxChunkSize', 'OTA_MQTT_MAX_CHUNK_SIZE') ?? MQTT_DEFAULTS.maxChunkSize);
  if (!Number.isInteger(maxChunkSize) || maxChunkSize <= 0) throw new Error(`Invalid maximum chunk size: ${def.maxChunkSize} (use a positive number of bytes)`);
  // PEM text from the node's credentials, else a file named by settings.js or the environment.
  const pem = (text: string | undefined, setting: string, variable: string): string | undefined => {
    if (text?.trim()) return text.trim();
    const file = pick(undefined, setting, variable);
    if (!file) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new Error(`Cannot read ${variable} ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  const cert = pem(creds.tlsCert, 'otaMqttEndpointTlsCertFile', 'OTA_MQTT_TLS_CERT_FILE');
  const key = pem(creds.tlsKey, 'otaMqttEndpointTlsKeyFile', 'OTA_MQTT_TLS_KEY_FILE');
  const ca = pem(creds.tlsCa, 'otaMqttEndpointTlsCaFile', 'OTA_MQTT_TLS_CA_FILE');
  if (Boolean(cert) !== Boolean(key)) throw new Error('TLS needs both a certificate and its private key');
  if (ca && !cert) throw new Error('A client CA needs TLS: give the server certificate and key too');
  const cacheSetting = pick(undefined, 'otaMqttEndpointAuthCacheSize', 'OTA_MQTT_AUTH_CACHE_SIZE');
  const authCacheSize = Number(cacheSetting ?? DEFAULT_VERIFIED_CACHE_SIZE);
  if (!Number.isInteger(authCacheSize) || authCacheSize < 0) throw new Error(`Invalid OTA_MQTT_AUTH_CACHE_SIZE: ${cacheSetting} (use 0 or more verified passwords to remember)`);
  return {
    port,
    host: pick(def.host, 'otaMqttEndpointHost', 'OTA_MQTT_HOST') ?? MQTT_DEFAULTS.host,
    maxChunkSize,
    ...(cacheSetting !== undefined ? { authCacheSize } : {}),
    ...(cert && key ? { tls: { cert, key, ...(ca ? { ca } : {}) } } : {}),
  };
}

export default function init(RED: NodeAPI): void {
  function OtaMqttEndpoint(this: OtaMqttEndpointNode, def: MqttEndpointDef): void {
    RED.nodes.createNode(this, def);
    const server = def.server ? (RED.nodes.getNode(def.server) as OtaServerNode | null) : null;
    let unregister: (() => void) | null = null;
    this.transport = (async () => {
      if (!server) throw new Error(RED._('ota-mqtt-endpoint.errors.no-server'));
      const options = resolveEndpointOptions(def, this.credentials ?? {}, RED.settings as unknown as Record<string, unknown>, process.env);
      const engine = await server.engine;
      const transport = new MqttTransport(engine.deviceContext, options);
      const address = await transport.start();
      unregister = engine.registerEndpoint({
        transport: 'MQTT',
        host: address.address,
        port: address.port,
        tls: transport.tls,
        connections: (tenantId) => (tenantId === undefined ? transport.connections : transport.connectionsOf(tenantId)),
        deliver: (n) => transport.deliver(n),
      });
      this.log(RED._('ota-mqtt-endpoint.log.listening', { scheme: transport.tls ? 'mqtts' : 'mqtt', address: `${address.address}:${address.port}` }));
      return transport;
    })();
    superviseEndpoint(RED, this, this.transport, () => unregister);
  }

  // The typings do not let a constructor add fields to its node; the cast says so once, here.
  RED.nodes.registerType('ota-mqtt-endpoint', OtaMqttEndpoint as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { tlsCert: { type: 'text' }, tlsKey: { type: 'password' }, tlsCa: { type: 'text' } },
  });
}
