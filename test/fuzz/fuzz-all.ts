import { fuzzCoap } from './coap-fuzz';
import { fuzzMqtt } from './mqtt-fuzz';
import { normalUpdate } from './normal-update';
import type { FuzzReport } from './report';
import { fuzzRest } from './rest-fuzz';
import { FuzzTarget } from './target';

export interface FuzzRun {
  reports: FuzzReport[];
  incidents: FuzzTarget['incidents'];
  /** Null when the normal update after fuzzing completed; what failed otherwise. */
  updateAfter: string | null;
  rssMb: number;
}

/** Every fuzzer against one server, `runs` inputs each, then a normal update. */
export const FUZZERS = { mqtt: fuzzMqtt, rest: fuzzRest, coap: fuzzCoap } as const;

export async function fuzzAll(
  runs: number,
  seed: number,
  log: (line: string) => void = () => undefined,
  only: ReadonlyArray<keyof typeof FUZZERS> = ['mqtt', 'rest', 'coap'],
): Promise<FuzzRun> {
  const t = await FuzzTarget.start();
  try {
    const reports: FuzzReport[] = [];
    for (const name of only) {
      const r = await FUZZERS[name](t, runs, seed);
      log(`${r.protocol}: ${r.inputs} inputs in ${(r.ms / 1000).toFixed(1)} s ${JSON.stringify(r.outcomes)}`);
      reports.push(r);
    }
    let updateAfter: string | null = null;
    try {
      await normalUpdate(t);
    } catch (err) {
      updateAfter = (err as Error).message;
    }
    return { reports, incidents: { ...t.incidents }, updateAfter, rssMb: Math.round(process.memoryUsage().rss / 1048576) };
  } finally {
    await t.close();
  }
}
