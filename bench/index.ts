/**
 * `npm run bench`: every benchmark in bench/, one after the other (never in parallel: they would
 * measure each other). Each prints its own table, with its references measured in the same run.
 */
import { coapDownload } from './coap';
import { coapObserve } from './coap-observe';
import { endToEnd } from './end-to-end';
import { httpDownload } from './http-download';
import type { Benchmark } from './lib';
import { lwm2mFleet } from './lwm2m-fleet';
import { lwm2mRegistrations } from './lwm2m-registrations';
import { mqttTransport } from './mqtt';
import { packageTransfer } from './package-transfer';
import { pipelineQueue } from './pipeline-queue';
import { simulatedFleet } from './simulated-fleet';
import { storePostgres } from './store-postgres';

const benchmarks: readonly Benchmark[] = [packageTransfer, pipelineQueue, storePostgres, httpDownload, coapDownload, coapObserve, mqttTransport, simulatedFleet, lwm2mRegistrations, lwm2mFleet, endToEnd];

async function main(): Promise<void> {
  for (const b of benchmarks) {
    console.log(`\n## ${b.name}\n`);
    await b.run();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack ?? err.message : err);
  process.exitCode = 1;
});
