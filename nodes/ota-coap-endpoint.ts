import type { Node, NodeAPI, NodeDef } from 'node-red';
import { COAP_DEFAULTS, COAP_LIMIT_VARIABLES, CoapTransport, isBlockSize, minimum, type CoapOptions, type OtaEngine } from '../server';
import type { OtaServerNode } from './server-ref';
import { settingPicker } from './settings';
import { superviseEndpoint } from './endpoint-lifecycle';

export interface CoapEndpointDef extends NodeDef {
  server: string;
  port: string;
  host: string;
  blockSize: string;
}

/** What `ota-coap` nodes get from their `endpoint` property. */
export interface OtaCoapEndpointNode extends Node {
  /** Resolves once the endpoint listens; rejects when it cannot (no server, a bad port, the port in use). */
  transport: Promise<CoapTransport>;
}

/** A setting the user got wrong, reported by its catalog key. */
export class CoapSettingError extends Error {
  constructor(
    readonly key: 'bad-port' | 'bad-block-size' | 'bad-limit',
    readonly value: string,
  ) {
    super(`${key}: ${value}`);
  }
}

/**
 * Where each setting comes from, first found wins: the node's field, then Node-RED's settings.js
 * (`otaCoapEndpointPort`, `otaCoapEndpointHost`, `otaCoapEndpointBlockSize`), then the environment
 * (`OTA_COAP_PORT`, `OTA_COAP_HOST`), then the default (5683, 0.0.0.0, 1024).
 */
export function resolveCoapOptions(def: Partial<CoapEndpointDef>, settings: Record<string, unknown>, env: NodeJS.ProcessEnv): { port: number; host: string; blockSize: number } {
  const pick = settingPicker(settings, env);
  const portText = pick(def.port, 'otaCoapEndpointPort', 'OTA_COAP_PORT');
  const port = portText === undefined ? COAP_DEFAULTS.port : Number(portText);
  if (!/^\d+$/.test(portText ?? '0') || port > 65535) throw new CoapSettingError('bad-port', String(portText));
  const sizeText = pick(def.blockSize, 'otaCoapEndpointBlockSize');
  const blockSize = sizeText === undefined ? COAP_DEFAULTS.blockSize : Number(sizeText);
  if (!isBlockSize(blockSize)) throw new CoapSettingError('bad-block-size', String(sizeText));
  return { port, host: pick(def.host, 'otaCoapEndpointHost', 'OTA_COAP_HOST') ?? COAP_DEFAULTS.host, blockSize };
}

/**
 * The limits that bound what peers can make the endpoint hold, from the environment
 * (`OTA_COAP_MAX_OBSERVATIONS`, `OTA_COAP_MAX_OBSERVATIONS_PER_DEVICE`,
 * `OTA_COAP_MAX_EXCHANGES_PER_PEER`, `OTA_COAP_UPLOAD_BYTES`, `OTA_COAP_DEDUP_ENTRIES`, `OTA_COAP_MAX_DOWNLOADS`,
 * `OTA_COAP_PAGE_CACHE_BYTES`); unset
 * ones keep their defaults (COAP_DEFAULTS).
 */
export function resolveCoapLimits(env: NodeJS.ProcessEnv): Partial<CoapOptions> {
  const out: Partial<CoapOptions> = {};
  for (const [option, variable] of Object.entries(COAP_LIMIT_VARIABLES) as [keyof typeof COAP_LIMIT_VARIABLES, string][]) {
    const text = env[variable]?.trim();
    if (!text) continue;
    if (!/^\d+$/.test(text) || Number(text) < minimum(option) || !Number.isSafeInteger(Number(text))) throw new CoapSettingError('bad-limit', `${variable}=${text}`);
    out[option] = Number(text);
  }
  return out;
}

export default function init(RED: NodeAPI): void {
  function OtaCoapEndpoint(this: OtaCoapEndpointNode, def: CoapEndpointDef): void {
    RED.nodes.createNode(this, def);
    const server = def.server ? (RED.nodes.getNode(def.server) as OtaServerNode | null) : null;
    let unregister: (() => void) | null = null;

    this.transport = (async () => {
      if (!server) throw new Error(RED._('ota-coap-endpoint.errors.no-server'));
      let options: CoapOptions;
      try {
        options = { ...resolveCoapLimits(process.env), ...resolveCoapOptions(def, RED.settings as unknown as Record<string, unknown>, process.env) };
      } catch (err) {
        if (err instanceof CoapSettingError) throw new Error(RED._(`ota-coap-endpoint.errors.${err.key}`, { value: err.value }), { cause: err });
        throw err;
      }
      const engine: OtaEngine = await server.engine;
      const transport = new CoapTransport(engine.deviceContext, options);
      const address = await transport.start();
      unregister = engine.registerEndpoint({
        transport: 'COAP',
        host: address.address,
        port: address.port,
        connections: (tenantId) => (tenantId === undefined ? transport.observers : transport.observersOf(tenantId)),
        deliver: (n) => transport.deliver(n),
      });
      this.log(RED._('ota-coap-endpoint.log.listening', { address: `${address.address}:${address.port}` }));
      return transport;
    })();
    superviseEndpoint(RED, this, this.transport, () => unregister);
  }

  // The typings do not let a constructor add fields to its node; the cast says so once, here.
  RED.nodes.registerType('ota-coap-endpoint', OtaCoapEndpoint as unknown as (this: Node, def: NodeDef) => void);
}
