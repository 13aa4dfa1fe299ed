/**
 * The LwM2M registration model at fleet scale, in this process (no sockets: the CoAP endpoint is
 * not wired yet): BENCH_LWM2M_REGISTRATIONS clients (default 50,000) Register with a typical
 * payload (`</>;rt="oma.lwm2m";ct="60 110 112 11542",</1/0>,</3/0>,</4/0>,</5/0>,</9/0>`), then
 * each sends an Update. Measured: time per Register and per Update, heap held per registration.
 *
 * Reference, in the same run: the least a registry must do, a Map from endpoint to the raw query
 * strings and payload, with one lifetime timer per entry (set, and cleared and set again on
 * Update). So a ratio is our whole cost (strict link-format parsing, validation, the two indexes)
 * over keeping the bytes and a timer.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { realTimers } from '../server/timers';
import { REGISTRATION_DEFAULTS } from '../server/transports/lwm2m/registration-limits';
import { Registrations } from '../server/transports/lwm2m/registrations';
import { positiveInt, printTable, type Benchmark } from './lib';

export const lwm2mRegistrations: Benchmark = {
  name: 'LwM2M registrations',
  run,
};

const PAYLOAD = '</>;rt="oma.lwm2m";ct="60 110 112 11542",</1/0>,</3/0>,</4/0>,</5/0>,</9/0>';
const peer = { address: '10.0.0.1', port: 56830 };

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

function heap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

function time(fn: () => void): number {
  const start = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function run(): Promise<void> {
  const n = positiveInt('BENCH_LWM2M_REGISTRATIONS', 50_000);
  const queries = (i: number) => [`ep=urn:imei:${350000000000000 + i}`, 'lt=300', 'lwm2m=1.1', 'b=U'];
  const rows: string[][] = [];

  // ours
  let before = heap();
  const regs = new Registrations({ ...REGISTRATION_DEFAULTS, maxRegistrations: n }, realTimers, { removed: () => undefined });
  const ids: string[] = [];
  const register = time(() => {
    for (let i = 0; i < n; i++) ids.push(regs.register(queries(i), PAYLOAD, peer).id);
  });
  const update = time(() => {
    for (const id of ids) regs.update(id, ['lt=300'], null, peer);
  });
  const held = (heap() - before) / n;
  regs.clear();

  // reference: raw strings in a Map, one timer each
  before = heap();
  const raw = new Map<string, { queries: string[]; payload: string; timer: NodeJS.Timeout }>();
  const refRegister = time(() => {
    for (let i = 0; i < n; i++) {
      const q = queries(i);
      raw.set(q[0] as string, { queries: q, payload: PAYLOAD, timer: setTimeout(() => undefined, 300_000) });
    }
  });
  const refUpdate = time(() => {
    for (const entry of raw.values()) {
      clearTimeout(entry.timer);
      entry.timer = setTimeout(() => undefined, 300_000);
    }
  });
  const refHeld = (heap() - before) / n;
  for (const entry of raw.values()) clearTimeout(entry.timer);

  const us = (s: number) => `${((s / n) * 1e6).toFixed(2)} µs`;
  rows.push(['Register', us(register), us(refRegister), (register / refRegister).toFixed(1)]);
  rows.push(['Update', us(update), us(refUpdate), (update / refUpdate).toFixed(1)]);
  rows.push(['heap per registration', `${Math.round(held)} B`, `${Math.round(refHeld)} B`, (held / refHeld).toFixed(1)]);
  console.log(`${n} registrations, payload of ${PAYLOAD.length} bytes\n`);
  printTable(['step', 'Registrations', 'reference (Map + timer)', 'ratio'], rows);
}
