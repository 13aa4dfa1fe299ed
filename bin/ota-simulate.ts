#!/usr/bin/env node
/**
 * The fleet simulator: `npm run simulate -- --devices 200 --transport http --fail-rate 0.05`.
 * Plays ThingsBoard devices against a running OTA server over its wire protocols only; see
 * `--help` and sim/.
 */
import { runFleet, SetupError, type FleetReport } from '../sim/fleet';
import { parseOptions, USAGE, UsageError } from '../sim/options';
import { formatBytes, formatDuration, formatRate, table } from '../sim/progress';

export function summary(r: FleetReport): string {
  const count = (phase: string): number => r.results.filter((d) => d.phase === phase).length;
  const failed = count('failed');
  const intended = r.results.filter((d) => d.phase === 'failed' && d.intended).length;
  const bytes = r.results.reduce((n, d) => n + d.bytes, 0);
  const ms = (v: number | null): string => (v === null ? '-' : formatDuration(v));
  const rows: Array<[string, string]> = [
    ['devices', String(r.results.length)],
    ['updated', String(count('updated'))],
    ['failed', `${failed} (${intended} on purpose)`],
    ['unfinished', String(count('unfinished'))],
    ['bytes', `${formatBytes(bytes)} (${bytes})`],
    ['throughput', formatRate(r.throughput)],
    ['p50 time to update', ms(r.p50Ms)],
    ['p95 time to update', ms(r.p95Ms)],
    ['elapsed', formatDuration(r.elapsedMs)],
  ];
  if (r.server) {
    const s = r.server;
    rows.push(
      ['server: updated / failed', `${s.updated} / ${s.failed}`],
      ['server: pending / in progress', `${s.pending} / ${s.inProgress}`],
      ['server: coverage', `${(s.coverage * 100).toFixed(1)} %`],
    );
  }
  const title = `${r.transport} fleet '${r.profile}', package '${r.package.title}' ${r.package.version} (${formatBytes(r.package.size)}, ${r.package.checksumAlgorithm})`;
  const problems = r.results.filter((d) => d.phase === 'unfinished' || (d.phase === 'failed' && !d.intended));
  const listed = problems.slice(0, 10).map((d) => `  ${d.name}: ${d.phase}, ${d.error}`);
  if (problems.length > listed.length) listed.push(`  ... and ${problems.length - listed.length} more`);
  return [table(title, rows), ...(listed.length ? ['not as planned:', ...listed] : []), r.ok ? 'result: OK, every device updated or failed on purpose' : 'result: NOT OK'].join(
    '\n',
  );
}

async function main(): Promise<number> {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2), process.env, !!process.stdout.isTTY);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`ota-simulate: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    console.log(USAGE);
    return 0;
  }
  try {
    const report = await runFleet(opts, process.stdout);
    console.log(summary(report));
    return report.ok ? 0 : 1;
  } catch (err) {
    if (err instanceof SetupError) {
      console.error(`ota-simulate: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err: Error) => {
      console.error(`ota-simulate: ${err.stack ?? err.message}`);
      process.exit(1);
    },
  );
}
