/**
 * `npm run bench`: every benchmark in bench/, one after the other (never in parallel: they would
 * measure each other). Each prints its own table, with its references measured in the same run.
 */
import { coapDownload } from './coap';
import { httpDownload } from './http-download';
import type { Benchmark } from './lib';
import { lwm2mRegistrations } from './lwm2m-registrations';
import { mqttTransport } from './mqtt';
import { mqttAuth } from './mqtt-auth';
import { packageTransfer } from './package-transfer';
import { pipelineQueue } from './pipeline-queue';
import { simulatedFleet } from './simulated-fleet';
import { storePostgres } from './store-postgres';

const benchmarks: readonly Benchmark[] = [packageTransfer, pipelineQueue, storePostgres, httpDownload, coapDownload, mqttTransport, mqttAuth, simulatedFleet, lwm2mRegistrations];

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
