import { readFileSync } from 'node:fs';
import type { EngineOptions } from './engine';

/**
 * Looks a setting up where the caller keeps settings (Node-RED's settings.js, then the environment
 * variable); undefined when unset.
 */
export type SettingLookup = (setting: string, variable: string) => string | undefined;

/** What a node's own fields say (its dialog, its credentials); each wins over settings and variables. */
export interface OwnHttpsFields {
  port?: string;
  host?: string;
  /** PEM text. */
  cert?: string;
  key?: string;
}

/**
 * The HTTPS listener of the REST and device HTTP API, or null when no port is set
 * (`OTA_HTTPS_PORT`). Certificate and key: the node's own PEM text, else the files
 * `OTA_HTTPS_TLS_CERT_FILE` and `OTA_HTTPS_TLS_KEY_FILE`, else the MQTT endpoint's
 * (`OTA_MQTT_TLS_CERT_FILE`, `OTA_MQTT_TLS_KEY_FILE`): one server certificate for the host. Throws,
 * naming the variable, when the port is set but no usable certificate and key are.
 */
export function resolveHttps(lookup: SettingLookup, own: OwnHttpsFields = {}): EngineOptions['https'] {
  const value = (text: string | undefined, setting: string, variable: string): string | undefined => (text?.trim() ? text.trim() : lookup(setting, variable));
  const rawPort = value(own.port, 'otaServerHttpsPort', 'OTA_HTTPS_PORT');
  if (rawPort === undefined) return null;
  const port = Number(rawPort);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`Invalid HTTPS port: ${rawPort} (use 0-65535, 0 for any free port)`);
  const pem = (text: string | undefined, files: Array<[setting: string, variable: string]>): string | undefined => {
    if (text?.trim()) return text.trim();
    for (const [setting, variable] of files) {
      const file = lookup(setting, variable);
      if (!file) continue;
      try {
        return readFileSync(file, 'utf8');
      } catch (err) {
        throw new Error(`Cannot read ${variable} ${file}: ${(err as Error).message}`, { cause: err });
      }
    }
    return undefined;
  };
  const cert = pem(own.cert, [
    ['otaServerHttpsCertFile', 'OTA_HTTPS_TLS_CERT_FILE'],
    ['otaMqttEndpointTlsCertFile', 'OTA_MQTT_TLS_CERT_FILE'],
  ]);
  const key = pem(own.key, [
    ['otaServerHttpsKeyFile', 'OTA_HTTPS_TLS_KEY_FILE'],
    ['otaMqttEndpointTlsKeyFile', 'OTA_MQTT_TLS_KEY_FILE'],
  ]);
  if (!cert || !key) throw new Error('HTTPS needs a certificate and its private key: set OTA_HTTPS_TLS_CERT_FILE and OTA_HTTPS_TLS_KEY_FILE');
  const host = value(own.host, 'otaServerHttpsHost', 'OTA_HTTPS_HOST');
  return { port, cert, key, ...(host ? { host } : {}) };
}
