import type { Node, NodeAPI, NodeDef } from 'node-red';
import { LWM2M_DEFAULTS, Lwm2mTransport, type Lwm2mOptions, type OtaEngine } from '../server';
import type { OtaServerNode } from './server-ref';
import { settingPicker } from './settings';
import { superviseEndpoint } from './endpoint-lifecycle';

export interface Lwm2mEndpointDef extends NodeDef {
  server: string;
  port: string;
  host: string;
  minLifetime: string;
  maxLifetime: string;
}

/** What `ota-lwm2m` nodes get from their `endpoint` property. */
export interface OtaLwm2mEndpointNode extends Node {
  /** Resolves once the endpoint listens; rejects when it cannot (no server, a bad setting, the port in use). */
  transport: Promise<Lwm2mTransport>;
}

/** A setting the user got wrong, reported by its catalog key. */
export class Lwm2mSettingError extends Error {
  constructor(
    readonly key: 'bad-port' | 'bad-lifetime' | 'bad-limit',
    readonly value: string,
  ) {
    super(`${key}: ${value}`);
  }
}

const LIMIT_VARIABLES = {
  maxRegistrations: 'OTA_LWM2M_MAX_REGISTRATIONS',
  maxObjectLinks: 'OTA_LWM2M_MAX_OBJECT_LINKS',
  maxPushBytes: 'OTA_LWM2M_MAX_PUSH_BYTES',
} as const;

/**
 * Each setting, first found wins: the node's field, then settings.js (`otaLwm2mEndpointPort`,
 * `otaLwm2mEndpointHost`, `otaLwm2mEndpointMinLifetime`, `otaLwm2mEndpointMaxLifetime`), then the
 * environment (`OTA_LWM2M_PORT`, `OTA_LWM2M_HOST`, `OTA_LWM2M_MIN_LIFETIME_S`,
 * `OTA_LWM2M_MAX_LIFETIME_S`), then the default (5685, 0.0.0.0, 10 s, 30 days). Limits come from the
 * environment only; `OTA_LWM2M_RESOURCE_URL` is the base URL written for pulls.
 */
export function resolveLwm2mOptions(def: Partial<Lwm2mEndpointDef>, settings: Record<string, unknown>, env: NodeJS.ProcessEnv): Lwm2mOptions {
  const pick = settingPicker(settings, env);
  const portText = pick(def.port, 'otaLwm2mEndpointPort', 'OTA_LWM2M_PORT');
  const port = portText === undefined ? LWM2M_DEFAULTS.port : Number(portText);
  if (!/^\d+$/.test(portText ?? '0') || port > 65535) throw new Lwm2mSettingError('bad-port', String(portText));
  const seconds = (own: string | undefined, setting: string, envName: string, fallback: number): number => {
    const text = pick(own, setting, envName);
    if (text === undefined) return fallback;
    if (!/^[1-9]\d*$/.test(text)) throw new Lwm2mSettingError('bad-lifetime', text);
    return Number(text);
  };
  const minLifetimeS = seconds(def.minLifetime, 'otaLwm2mEndpointMinLifetime', 'OTA_LWM2M_MIN_LIFETIME_S', LWM2M_DEFAULTS.minLifetimeS);
  const maxLifetimeS = seconds(def.maxLifetime, 'otaLwm2mEndpointMaxLifetime', 'OTA_LWM2M_MAX_LIFETIME_S', LWM2M_DEFAULTS.maxLifetimeS);
  if (minLifetimeS > maxLifetimeS) throw new Lwm2mSettingError('bad-lifetime', `${minLifetimeS} > ${maxLifetimeS}`);
  const options: Lwm2mOptions = { port, host: pick(def.host, 'otaLwm2mEndpointHost', 'OTA_LWM2M_HOST') ?? LWM2M_DEFAULTS.host, minLifetimeS, maxLifetimeS };
  for (const [option, variable] of Object.entries(LIMIT_VARIABLES) as [keyof typeof LIMIT_VARIABLES, string][]) {
    const text = env[variable]?.trim();
    if (!text) continue;
    if (!/^[1-9]\d*$/.test(text) || !Number.isSafeInteger(Number(text))) throw new Lwm2mSettingError('bad-limit', `${variable}=${text}`);
    options[option] = Number(text);
  }
  const url = env.OTA_LWM2M_RESOURCE_URL?.trim();
  if (url) options.resourceUrl = url;
  return options;
}

export default function init(RED: NodeAPI): void {
  function OtaLwm2mEndpoint(this: OtaLwm2mEndpointNode, def: Lwm2mEndpointDef): void {
    RED.nodes.createNode(this, def);
    const server = def.server ? (RED.nodes.getNode(def.server) as OtaServerNode | null) : null;
    let unregister: (() => void) | null = null;

    this.transport = (async () => {
      if (!server) throw new Error(RED._('ota-lwm2m-endpoint.errors.no-server'));
      let options: Lwm2mOptions;
      try {
        options = resolveLwm2mOptions(def, RED.settings as unknown as Record<string, unknown>, process.env);
      } catch (err) {
        if (err instanceof Lwm2mSettingError) throw new Error(RED._(`ota-lwm2m-endpoint.errors.${err.key}`, { value: err.value }), { cause: err });
        throw err;
      }
      const engine: OtaEngine = await server.engine;
      const transport = new Lwm2mTransport(engine.deviceContext, options);
      const address = await transport.start();
      unregister = engine.registerEndpoint({
        transport: 'LWM2M',
        host: address.address,
        port: address.port,
        connections: (tenantId) => (tenantId === undefined ? transport.registered : transport.registeredOf(tenantId)),
      });
      this.log(RED._('ota-lwm2m-endpoint.log.listening', { address: `${address.address}:${address.port}` }));
      return transport;
    })();
    superviseEndpoint(RED, this, this.transport, () => unregister);
  }

  // The typings do not let a constructor add fields to its node; the cast says so once, here.
  RED.nodes.registerType('ota-lwm2m-endpoint', OtaLwm2mEndpoint as unknown as (this: Node, def: NodeDef) => void);
}
