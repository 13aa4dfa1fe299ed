/**
 * `npm run bench`: every benchmark in bench/, one after the other (never in parallel: they would
 * measure each other). Each prints its own table, with its references measured in the same run.
 */
import { coapDownload } from './coap';
import { coapObserve } from './coap-observe';
import { endToEnd } from './end-to-end';
import { fleetRead } from './fleet-read';
import { httpDownload } from './http-download';
import { liveProgress } from './live-progress';
import { load } from './load';
import type { Benchmark } from './lib';
import { lwm2mFleet } from './lwm2m-fleet';
import { lwm2mRegistrations } from './lwm2m-registrations';
import { mqttTransport } from './mqtt';
import { mqttAuth } from './mqtt-auth';
import { packageTransfer } from './package-transfer';
import { pipelineQueue } from './pipeline-queue';
import { pipelineQueuePostgres } from './pipeline-queue-postgres';
import { simulatedFleet } from './simulated-fleet';
import { storePostgres } from './store-postgres';

const benchmarks: readonly Benchmark[] = [
  packageTransfer,
  pipelineQueue,
  pipelineQueuePostgres,
  storePostgres,
  fleetRead,
  liveProgress,
  httpDownload,
  coapDownload,
  coapObserve,
  mqttTransport,
  mqttAuth,
  simulatedFleet,
  lwm2mRegistrations,
  lwm2mFleet,
  endToEnd,
];

/** Run only when asked (`npm run bench -- load`): it holds 10,000 connections for 5 minutes. */
const onRequest: Record<string, Benchmark> = { load };

async function main(): Promise<void> {
  const asked = process.argv.slice(2);
  for (const name of asked) if (!(name in onRequest)) throw new Error(`unknown benchmark '${name}': ${Object.keys(onRequest).join(', ')}`);
  for (const b of asked.length ? asked.map((n) => onRequest[n] as Benchmark) : benchmarks) {
    console.log(`\n## ${b.name}\n`);
    await b.run();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
