import { setTimeout as sleep } from 'node:timers/promises';
import type { DeviceLink } from './device';
import { FW_KEYS_PARAM, firmwareOf, type FirmwareInfo } from './firmware';

/**
 * A device on ThingsBoard's HTTP device API (reference §4), as its Python SDK and the docs'
 * http_firmware_client.py behave: asks for its shared `fw_*` attributes, long-polls
 * `attributes/updates` for a change, downloads `firmware?title&version&size&chunk` chunk after
 * chunk until the empty one past the end, and posts its states as telemetry.
 */
export class HttpDeviceLink implements DeviceLink {
  constructor(
    private readonly api: string,
    private readonly token: string,
    private readonly chunk: number,
    private readonly pace: number,
    /** How long one long poll waits before the device asks for its attributes again. */
    private readonly pollMs = 10_000,
  ) {}

  private url(path: string): string {
    return `${this.api}/api/v1/${encodeURIComponent(this.token)}${path}`;
  }

  async open(): Promise<void> {
    // HTTP has no session: nothing to connect.
  }

  async firmware(wanted: (fw: FirmwareInfo) => boolean, signal: AbortSignal): Promise<FirmwareInfo> {
    for (;;) {
      const res = await fetch(this.url(`/attributes?sharedKeys=${FW_KEYS_PARAM}`), { signal });
      const body = (await json(res, 'GET attributes')) as { shared?: Record<string, unknown> };
      const fw = firmwareOf(body.shared);
      if (fw && wanted(fw)) return fw;
      // A notification wakes the poll; a 408 after `pollMs` (or a notification for other keys) asks again,
      // which also covers a notification sent between the two requests.
      const poll = await fetch(this.url(`/attributes/updates?timeout=${this.pollMs}`), { signal });
      if (poll.status !== 200 && poll.status !== 408) throw new Error(`GET attributes/updates answered ${poll.status}`);
      await poll.arrayBuffer();
    }
  }

  async download(fw: FirmwareInfo, progress: (bytes: number) => void, signal: AbortSignal): Promise<Buffer> {
    const parts: Buffer[] = [];
    let received = 0;
    for (let index = 0; ; index++) {
      const q = new URLSearchParams({ title: fw.title, version: fw.version, size: String(this.chunk), chunk: String(index) });
      const res = await fetch(this.url(`/firmware?${q}`), { signal });
      if (res.status !== 200) throw new Error(`GET firmware chunk ${index} answered ${res.status}`);
      const part = Buffer.from(await res.arrayBuffer());
      // The empty chunk past the end is ThingsBoard's end of file; size 0 is the whole file at once.
      if (part.length === 0) break;
      parts.push(part);
      received += part.length;
      progress(part.length);
      if (this.chunk === 0) break;
      if (received > fw.size) throw new Error(`received ${received} bytes of a ${fw.size}-byte firmware`);
      if (this.pace > 0) await sleep(this.pace, undefined, { signal });
    }
    return Buffer.concat(parts);
  }

  async report(values: Record<string, unknown>, signal: AbortSignal): Promise<void> {
    const res = await fetch(this.url('/telemetry'), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(values), signal });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`POST telemetry answered ${res.status}`);
  }

  async close(): Promise<void> {
    // nothing held
  }
}

async function json(res: Response, what: string): Promise<unknown> {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${what} answered ${res.status}`);
  return text ? JSON.parse(text) : {};
}
