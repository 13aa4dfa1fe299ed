#!/usr/bin/env node
/**
 * `npm run fuzz [-- --runs N --seed S --only mqtt,rest,coap]`: every fuzzer, 100,000 inputs per protocol by default, one
 * server; prints what each found and exits 1 if anything must be looked at.
 */
import { FUZZERS, fuzzAll } from './fuzz-all';
import { failed } from './report';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} must be a positive integer`);
  return v;
}

async function main(): Promise<void> {
  const runs = arg('runs', 100_000);
  const seed = arg('seed', Date.now() % 2 ** 31);
  console.log(`fuzzing ${runs} inputs per protocol, seed ${seed}`);
  const i = process.argv.indexOf('--only');
  const only = (i >= 0 ? String(process.argv[i + 1]).split(',') : Object.keys(FUZZERS)) as Array<keyof typeof FUZZERS>;
  for (const name of only) if (!(name in FUZZERS)) throw new Error(`--only takes ${Object.keys(FUZZERS).join(', ')}, not ${name}`);
  const run = await fuzzAll(runs, seed, (line) => console.log(line), only);
  let bad = false;
  for (const r of run.reports) {
    for (const [what, list] of [
      ['5xx / server errors', r.serverErrors],
      ['refused but changed', r.refusedButChanged],
      ['problems', r.problems],
    ] as const) {
      if (list.length) {
        bad = true;
        console.log(`${r.protocol}: ${what}:\n  ${list.join('\n  ')}`);
      }
    }
    if (failed(r)) bad = true;
  }
  const inc = run.incidents;
  for (const [what, list] of [
    ['uncaught exceptions', inc.uncaught],
    ['unhandled rejections', inc.unhandledRejections],
    ['errors logged', inc.loggedErrors],
  ] as const) {
    console.log(`${what}: ${list.length}`);
    if (list.length) {
      bad = true;
      console.log(`  ${list.slice(0, 10).join('\n  ')}`);
    }
  }
  console.log(`normal update afterwards: ${run.updateAfter ?? 'completed'}`);
  console.log(`RSS at the end: ${run.rssMb} MB`);
  if (run.updateAfter) bad = true;
  process.exit(bad ? 1 : 0);
}

main().catch((err: Error) => {
  console.error(err);
  process.exit(1);
});
