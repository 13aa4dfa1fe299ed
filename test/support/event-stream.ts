/** One event of a `text/event-stream`. */
export interface ServerEvent {
  event: string;
  data: unknown;
}

/** A reader of `text/event-stream` over fetch, as a browser's EventSource reads it. */
export class EventStream {
  readonly events: ServerEvent[] = [];
  private readonly controller = new AbortController();
  private buffer = '';
  private waiters: Array<() => void> = [];
  status = 0;
  contentType = '';

  static async open(url: string, headers: Record<string, string> = {}): Promise<EventStream> {
    const s = new EventStream();
    const res = await fetch(url, { headers, signal: s.controller.signal });
    s.status = res.status;
    s.contentType = res.headers.get('content-type') ?? '';
    if (res.status !== 200 || !res.body) {
      await res.text();
      return s;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          s.feed(decoder.decode(value, { stream: true }));
        }
      } catch {
        // aborted
      }
    })();
    return s;
  }

  private feed(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const frame = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) this.events.push({ event, data: JSON.parse(data.join('\n')) as unknown });
    }
    for (const w of this.waiters.splice(0)) w();
  }

  /** The first event (from `from` on) that `match` accepts; fails after `ms`. */
  async next<T>(match: (ev: ServerEvent) => T | undefined | false, what: string, from = 0, ms = 10_000): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const ev of this.events.slice(from)) {
        const hit = match(ev);
        if (hit) return hit;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} on the live stream; got ${this.events.map((e) => e.event).join(', ')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.controller.abort();
  }
}
