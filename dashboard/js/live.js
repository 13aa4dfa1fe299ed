// The live stream: server-sent events for this tenant. EventSource sends no headers, so each
// connection opens with a single-use ticket bought with the bearer token; when the stream ends or
// fails, we reconnect ourselves with a new ticket (EventSource's own retry would reuse the old one).
// Download progress comes only for the devices the stream follows: the page tells which rows it
// shows, and tells every new connection again.

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
    /** The stream's name from its `ready` event: what `follow` is sent for. */
    this.stream = null;
    this.following = [];
    /** The stream the list was last sent to. */
    this.told = null;
    this.sending = false;
    this.sendAgain = false;
  }

  /** The devices whose download progress the stream carries from now on (a list reloaded unchanged is not sent again). */
  follow(deviceIds) {
    const same = deviceIds.join() === this.following.join();
    this.following = deviceIds;
    if (!same || this.told !== this.stream) this.sendFollowing();
  }

  /** One request at a time, so that an older list never arrives after a newer one. */
  sendFollowing() {
    if (!this.stream || this.stopped) return;
    if (this.sending) {
      this.sendAgain = true;
      return;
    }
    this.sending = true;
    const stream = this.stream;
    api('/api/ota/events/follow', { method: 'POST', body: { stream, devices: this.following } })
      .then(() => (this.told = stream))
      // A stream that ended meanwhile: the next one is told on its `ready` event.
      .catch(() => {})
      .finally(() => {
        this.sending = false;
        if (this.sendAgain) {
          this.sendAgain = false;
          this.sendFollowing();
        }
      });
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
    this.stream = null;
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
    source.addEventListener('ready', (e) => {
      this.failures = 0;
      this.stream = JSON.parse(e.data).stream ?? null;
      this.onState('on');
      this.sendFollowing();
    });
    for (const name of ['metrics', 'devices', 'progress']) {
      source.addEventListener(name, (e) => this.onEvent(name, JSON.parse(e.data)));
    }
    source.onerror = () => {
      source.close();
      if (this.source === source) {
        this.source = null;
        this.stream = null;
      }
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
