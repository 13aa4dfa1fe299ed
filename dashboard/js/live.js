// The live stream: server-sent events for this tenant. EventSource sends no headers, so each
// connection opens with a single-use ticket bought with the bearer token; when the stream ends or
// fails, we reconnect ourselves with a new ticket (EventSource's own retry would reuse the old one).

import { api } from './api.js';

export class LiveStream {
  /**
   * @param {(event: string, data: unknown) => void} onEvent
   * @param {(state: 'on' | 'retry' | 'off') => void} onState
   */
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.timer = null;
    this.stopped = true;
    this.failures = 0;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
    this.onState('off');
  }

  async connect() {
    if (this.stopped) return;
    let ticket;
    try {
      ({ ticket } = await api('/api/ota/events/ticket', { method: 'POST' }));
    } catch (err) {
      if (err.status === 401) return this.stop();
      return this.retry();
    }
    if (this.stopped) return;
    const source = new EventSource(`/api/ota/events?ticket=${encodeURIComponent(ticket)}`);
    this.source = source;
    source.addEventListener('ready', () => {
      this.failures = 0;
      this.onState('on');
    });
    for (const name of ['metrics', 'devices']) {
      source.addEventListener(name, (e) => this.onEvent(name, JSON.parse(e.data)));
    }
    source.onerror = () => {
      source.close();
      if (this.source === source) this.source = null;
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.onState('retry');
    this.failures += 1;
    const wait = Math.min(30_000, 500 * 2 ** Math.min(this.failures - 1, 6));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }
}
