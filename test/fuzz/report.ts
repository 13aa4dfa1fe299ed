/** What one fuzzer found: counts, and the first few inputs of each kind of failure, to replay them. */
export interface FuzzReport {
  protocol: string;
  inputs: number;
  /** Answers by kind (an HTTP status class, an MQTT/CoAP outcome). */
  outcomes: Record<string, number>;
  /** Inputs the server answered with a 5xx or a server error. */
  serverErrors: string[];
  /** Refused inputs after which the stored state differed. */
  refusedButChanged: string[];
  /** Anything else wrong (a probe unanswered, a connection leaked). */
  problems: string[];
  ms: number;
}

export function newReport(protocol: string): FuzzReport {
  return { protocol, inputs: 0, outcomes: {}, serverErrors: [], refusedButChanged: [], problems: [], ms: 0 };
}

export function count(r: FuzzReport, outcome: string): void {
  r.outcomes[outcome] = (r.outcomes[outcome] ?? 0) + 1;
}

/** Keeps the first examples only: a broken server must not fill memory with them. */
export function note(list: string[], what: string): void {
  if (list.length < 20) list.push(what.length > 600 ? `${what.slice(0, 600)}…` : what);
  else if (list.length === 20) list.push('…');
}

export const failed = (r: FuzzReport): boolean => r.serverErrors.length + r.refusedButChanged.length + r.problems.length > 0;

/** Runs `work` over `items` with at most `concurrency` at once. */
export async function pool<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}
