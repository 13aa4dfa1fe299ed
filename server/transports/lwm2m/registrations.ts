import { randomBytes } from 'node:crypto';
import type { Timers } from '../../timers';
import { LinkFormatError } from './link-format';
import { parseObjectLinks, type RegisteredObjects } from './object-links';
import type { RegistrationLimits } from './registration-limits';

export type Lwm2mVersion = '1.0' | '1.1';
export const LWM2M_VERSIONS: readonly Lwm2mVersion[] = ['1.0', '1.1'];

export interface PeerAddress {
  address: string;
  port: number;
}

/** A client's registration (OMA-TS-LightweightM2M-Core V1.1 §6.2.1), as the server keeps it. */
export interface Registration {
  /** What `Location-Path: /rd/{id}` names. */
  id: string;
  endpoint: string;
  lifetimeS: number;
  version: Lwm2mVersion;
  binding: string;
  /** `Q` (1.1) or a `Q` in the 1.0 binding: the client listens only after it sent something. */
  queueMode: boolean;
  objects: RegisteredObjects;
  peer: PeerAddress;
  registeredAt: number;
  lastSeen: number;
}

/** A refused Register/Update/De-register, with the CoAP response code to answer. */
export class RegistrationError extends Error {
  constructor(
    readonly code: '4.00' | '4.03' | '4.04' | '4.12',
    message: string,
  ) {
    super(message);
    this.name = 'RegistrationError';
  }
}

export type RemovalReason = 'deregistered' | 'expired' | 'replaced';

export interface RegistrationEvents {
  /** A registration ended: De-register, lifetime passed, or a new Register of the same endpoint. */
  removed(registration: Registration, reason: RemovalReason): void;
}

const ENDPOINT_MAX = 255;
const DEFAULT_LIFETIME_S = 86_400; // §6.2.1: "lt", default 86400 when absent

/**
 * Registrations by id and by endpoint name, each expiring when its client stays silent past its
 * lifetime. It checks the Register/Update parameters and payload; whether an endpoint is allowed
 * at all (a device with those credentials) is the endpoint's question, asked before `register`.
 */
export class Registrations {
  private readonly byId = new Map<string, Registration>();
  private readonly byEndpoint = new Map<string, Registration>();
  private readonly expiry = new Map<string, unknown>();

  constructor(
    private readonly limits: RegistrationLimits,
    private readonly timers: Timers,
    private readonly events: RegistrationEvents,
  ) {}

  get size(): number {
    return this.byId.size;
  }

  get(id: string): Registration | undefined {
    return this.byId.get(id);
  }

  findByEndpoint(endpoint: string): Registration | undefined {
    return this.byEndpoint.get(endpoint);
  }

  all(): IterableIterator<Registration> {
    return this.byId.values();
  }

  /**
   * Checks a Register request without changing anything: its endpoint name, so that the caller can
   * look the device up before `register`.
   */
  static endpointOf(queries: readonly string[]): string {
    const ep = parseQueries(queries).get('ep');
    if (ep === undefined || ep === null || ep === '') throw new RegistrationError('4.00', 'Register needs the endpoint name: ?ep=<endpoint>');
    if (ep.length > ENDPOINT_MAX) throw new RegistrationError('4.00', `Endpoint name longer than ${ENDPOINT_MAX} characters`);
    return ep;
  }

  /** `POST /rd?ep=..&lt=..&lwm2m=..&b=..` with the link-format payload (§6.2.1). */
  register(queries: readonly string[], payload: string, peer: PeerAddress): Registration {
    const endpoint = Registrations.endpointOf(queries);
    const q = parseQueries(queries);
    const version = parseVersion(q.get('lwm2m'));
    const lifetimeS = this.parseLifetime(q.get('lt')) ?? DEFAULT_LIFETIME_S;
    const binding = parseBinding(q.get('b')) ?? 'U';
    const objects = this.parseObjects(payload);
    const previous = this.byEndpoint.get(endpoint);
    if (!previous && this.byId.size >= this.limits.maxRegistrations) {
      throw new RegistrationError('4.03', `The server holds ${this.limits.maxRegistrations} registrations, its maximum (OTA_LWM2M_MAX_REGISTRATIONS)`);
    }
    const now = this.timers.now();
    const registration: Registration = {
      id: this.newId(),
      endpoint,
      lifetimeS,
      version,
      binding,
      queueMode: q.has('Q') || binding.includes('Q'),
      objects,
      peer,
      registeredAt: now,
      lastSeen: now,
    };
    // §6.2.1: a Register for an endpoint already registered replaces the old registration.
    if (previous) this.remove(previous, 'replaced');
    this.byId.set(registration.id, registration);
    this.byEndpoint.set(endpoint, registration);
    this.arm(registration);
    return registration;
  }

  /** `POST /rd/{id}?lt=..&b=..` with an optional new payload (§6.2.2): refreshes the lifetime. */
  update(id: string, queries: readonly string[], payload: string | null, peer: PeerAddress): Registration {
    const current = this.byId.get(id);
    if (!current) throw new RegistrationError('4.04', `No registration /rd/${id}`);
    const q = parseQueries(queries);
    for (const name of q.keys()) {
      if (!['lt', 'b', 'sms', 'Q'].includes(name)) throw new RegistrationError('4.00', `Update does not take "${name}" (only lt, b, sms, Q)`);
    }
    const lifetimeS = this.parseLifetime(q.get('lt'));
    const binding = parseBinding(q.get('b'));
    const objects = payload ? this.parseObjects(payload) : null;
    const updated: Registration = {
      ...current,
      lifetimeS: lifetimeS ?? current.lifetimeS,
      binding: binding ?? current.binding,
      queueMode: binding !== null ? q.has('Q') || binding.includes('Q') : current.queueMode || q.has('Q'),
      objects: objects ?? current.objects,
      peer,
      lastSeen: this.timers.now(),
    };
    this.byId.set(id, updated);
    this.byEndpoint.set(updated.endpoint, updated);
    this.arm(updated);
    return updated;
  }

  /** `DELETE /rd/{id}` (§6.2.3). */
  deregister(id: string): Registration {
    const current = this.byId.get(id);
    if (!current) throw new RegistrationError('4.04', `No registration /rd/${id}`);
    this.remove(current, 'deregistered');
    return current;
  }

  /** Drops every registration without events (the endpoint stops). */
  clear(): void {
    for (const handle of this.expiry.values()) this.timers.clearTimeout(handle);
    this.expiry.clear();
    this.byId.clear();
    this.byEndpoint.clear();
  }

  private remove(registration: Registration, reason: RemovalReason): void {
    this.timers.clearTimeout(this.expiry.get(registration.id));
    this.expiry.delete(registration.id);
    this.byId.delete(registration.id);
    if (this.byEndpoint.get(registration.endpoint)?.id === registration.id) this.byEndpoint.delete(registration.endpoint);
    this.events.removed(registration, reason);
  }

  private arm(registration: Registration): void {
    this.timers.clearTimeout(this.expiry.get(registration.id));
    const handle = this.timers.setTimeout(() => {
      const current = this.byId.get(registration.id);
      if (current) this.remove(current, 'expired');
    }, registration.lifetimeS * 1000);
    this.expiry.set(registration.id, handle);
  }

  private parseLifetime(raw: string | null | undefined): number | null {
    if (raw === undefined) return null;
    if (raw === null || !/^[0-9]{1,10}$/.test(raw)) throw new RegistrationError('4.00', `lt=${raw ?? ''} is not a lifetime in seconds`);
    const lt = Number(raw);
    const { minLifetimeS: min, maxLifetimeS: max } = this.limits;
    if (lt < min || lt > max) throw new RegistrationError('4.00', `lt=${lt} is outside the lifetimes this server accepts (${min}..${max} s)`);
    return lt;
  }

  private parseObjects(payload: string): RegisteredObjects {
    try {
      return parseObjectLinks(payload, { maxLinks: this.limits.maxObjectLinks });
    } catch (err) {
      if (err instanceof LinkFormatError) throw new RegistrationError('4.00', err.message);
      throw err;
    }
  }

  private newId(): string {
    for (;;) {
      const id = randomBytes(8).toString('base64url');
      if (!this.byId.has(id)) return id;
    }
  }
}

/** `name=value` Uri-Query options; a repeated name or an empty name is a 4.00. */
function parseQueries(queries: readonly string[]): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (const q of queries) {
    const eq = q.indexOf('=');
    const name = eq < 0 ? q : q.slice(0, eq);
    if (!name) throw new RegistrationError('4.00', `Query "${q}" has no name`);
    if (out.has(name)) throw new RegistrationError('4.00', `Query "${name}" given twice`);
    out.set(name, eq < 0 ? null : q.slice(eq + 1));
  }
  return out;
}

function parseVersion(raw: string | null | undefined): Lwm2mVersion {
  if (raw === undefined) return '1.0'; // §6.2.1: absent means 1.0
  if (!LWM2M_VERSIONS.includes(raw as Lwm2mVersion)) {
    // §6.2.1: a version the server does not support is answered 4.12 Precondition Failed.
    throw new RegistrationError('4.12', `LwM2M version ${raw ?? '(empty)'} is not supported (supported: ${LWM2M_VERSIONS.join(', ')})`);
  }
  return raw as Lwm2mVersion;
}

function parseBinding(raw: string | null | undefined): string | null {
  if (raw === undefined) return null;
  // 1.0 (§5.3.1.1): U, UQ, S, SQ, US, UQS; 1.1 (§6.2.1.1): any of U, M, H, T, S, N (Q is its own query).
  if (raw === null || !/^[UMHTSNQ]{1,7}$/.test(raw)) throw new RegistrationError('4.00', `b=${raw ?? ''} is not a binding mode (U, M, H, T, S, N, Q)`);
  return raw;
}
