import { Lwm2mRequestError, type Lwm2mDeviceClient, type OpaqueSource, type WriteOptions } from '../../../server/transports/lwm2m/device-client';
import type { ContentFormat } from '../../../server/transports/lwm2m/content-formats';
import type { Lwm2mValue } from '../../../server/transports/lwm2m/resource-types';
import type { OtaUplink } from '../../../server/transports/lwm2m/device-ota';

export type Call = { op: 'read' | 'write' | 'execute' | 'observe' | 'cancel'; path: string; value?: Lwm2mValue | OpaqueSource; format?: ContentFormat; args?: string };

/**
 * A scripted LwM2M device behind the Lwm2mDeviceClient interface: resources in a map, a
 * notification whenever the script changes an observed one, every request recorded, and hooks
 * that decide how a Write or Execute is answered.
 */
export class FakeDevice implements Lwm2mDeviceClient {
  readonly values = new Map<string, Lwm2mValue>();
  readonly calls: Call[] = [];
  private readonly observers = new Map<string, (v: Lwm2mValue) => void>();
  onWrite: (call: Call, options?: WriteOptions) => Promise<void> | void = () => undefined;
  onExecute: (call: Call) => Promise<void> | void = () => undefined;

  constructor(values: Record<string, Lwm2mValue> = {}) {
    for (const [k, v] of Object.entries(values)) this.values.set(k, v);
  }

  async read(path: string): Promise<Lwm2mValue | undefined> {
    this.calls.push({ op: 'read', path });
    if (!this.values.has(path)) throw new Lwm2mRequestError('response', `4.04 Not Found`, '4.04');
    return this.values.get(path);
  }

  async write(path: string, value: Lwm2mValue | OpaqueSource, format: ContentFormat, options?: WriteOptions): Promise<void> {
    const call: Call = { op: 'write', path, value, format };
    this.calls.push(call);
    await this.onWrite(call, options);
  }

  async execute(path: string, args?: string): Promise<void> {
    const call: Call = { op: 'execute', path, args };
    this.calls.push(call);
    await this.onExecute(call);
  }

  async observe(path: string, onValue: (value: Lwm2mValue) => void): Promise<Lwm2mValue | undefined> {
    this.calls.push({ op: 'observe', path });
    this.observers.set(path, onValue);
    return this.values.get(path);
  }

  async cancel(path: string): Promise<void> {
    this.calls.push({ op: 'cancel', path });
    this.observers.delete(path);
  }

  /** The device changes a resource; an observer hears of it. */
  set(path: string, value: Lwm2mValue): void {
    this.values.set(path, value);
    this.observers.get(path)?.(value);
  }

  ops(op: Call['op']): string[] {
    return this.calls.filter((c) => c.op === op).map((c) => c.path);
  }
}

/** Uplink events as they come, and a promise for the first one that matches. */
export class Reports {
  readonly all: OtaUplink[] = [];
  private waiters: Array<{ match: (e: OtaUplink) => boolean; resolve: (e: OtaUplink) => void }> = [];

  readonly push = (e: OtaUplink): void => {
    this.all.push(e);
    this.waiters = this.waiters.filter((w) => {
      if (!w.match(e)) return true;
      w.resolve(e);
      return false;
    });
  };

  /** Resolves with the first event (already seen or still to come) in `state`. */
  until(state: OtaUplink['state'], type: OtaUplink['type'] = 'FIRMWARE', from = 0): Promise<OtaUplink> {
    const match = (e: OtaUplink): boolean => e.state === state && e.type === type && !e.progress;
    const seen = this.all.slice(from).find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  states(type: OtaUplink['type'] = 'FIRMWARE'): string[] {
    return this.all.filter((e) => e.type === type && !e.progress).map((e) => e.state);
  }
}
