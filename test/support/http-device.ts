import { checksumOf, type ChecksumAlgorithm } from '../../server/packages/checksum';

/**
 * A ThingsBoard HTTP device as its SDK and the docs' example script behave (reference §4, §9):
 * long-polls its attributes, downloads in chunks until an empty chunk, verifies the checksum with the
 * named algorithm, and reports every state as telemetry.
 */
export class HttpDevice {
  readonly states: string[] = [];
  current = { title: 'Initial', version: 'v0' };

  constructor(
    readonly base: string,
    readonly token: string,
  ) {}

  private url(path: string): string {
    return `${this.base}/api/v1/${this.token}${path}`;
  }

  async telemetry(values: Record<string, unknown>): Promise<number> {
    const res = await fetch(this.url('/telemetry'), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(values) });
    await res.arrayBuffer();
    return res.status;
  }

  async report(state: string, extra: Record<string, unknown> = {}): Promise<void> {
    this.states.push(state);
    const status = await this.telemetry({ current_fw_title: this.current.title, current_fw_version: this.current.version, fw_state: state, ...extra });
    if (status !== 200) throw new Error(`telemetry answered ${status}`);
  }

  async attributes(query = ''): Promise<{ status: number; body: Record<string, Record<string, unknown>> }> {
    const res = await fetch(this.url(`/attributes${query}`));
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, Record<string, unknown>>) : {} };
  }

  /** One long poll: the update JSON, or null on 408. */
  async waitForUpdate(timeoutMs: number): Promise<Record<string, unknown> | null> {
    const res = await fetch(this.url(`/attributes/updates?timeout=${timeoutMs}`));
    const text = await res.text();
    if (res.status === 408) return null;
    if (res.status !== 200) throw new Error(`long poll answered ${res.status}`);
    return JSON.parse(text) as Record<string, unknown>;
  }

  /** Long-polls until an update carries `fw_title`, bounded by `rounds` polls. */
  async waitForFirmware(pollMs: number, rounds: number): Promise<Record<string, unknown>> {
    for (let i = 0; i < rounds; i++) {
      const update = await this.waitForUpdate(pollMs);
      if (update && typeof update.fw_title === 'string') return update;
    }
    throw new Error(`no firmware notification after ${rounds} polls`);
  }

  async chunk(title: string, version: string, size: number, index: number, headers: Record<string, string> = {}): Promise<Response> {
    const q = new URLSearchParams({ title, version, size: String(size), chunk: String(index) });
    return fetch(this.url(`/firmware?${q}`), { headers });
  }

  /** Chunk after chunk until the empty one (the docs' loop). */
  async download(title: string, version: string, chunkSize: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let i = 0; ; i++) {
      const res = await this.chunk(title, version, chunkSize, i);
      if (res.status !== 200) throw new Error(`chunk ${i} answered ${res.status}`);
      const buf = Buffer.from(await res.arrayBuffer());
      if (buf.length === 0) break;
      parts.push(buf);
    }
    return Buffer.concat(parts);
  }

  /**
   * The whole update from a notification: DOWNLOADING, download, DOWNLOADED, verify, VERIFIED or
   * FAILED, UPDATING, UPDATED. `fail` makes the device report FAILED with that error instead.
   */
  async update(fw: Record<string, unknown>, opts: { chunkSize: number; fail?: string }): Promise<Buffer> {
    const title = String(fw.fw_title);
    const version = String(fw.fw_version);
    await this.report('DOWNLOADING');
    const data = await this.download(title, version, opts.chunkSize);
    await this.report('DOWNLOADED');
    const ok = data.length === Number(fw.fw_size) && checksumOf(String(fw.fw_checksum_algorithm) as ChecksumAlgorithm, data) === fw.fw_checksum;
    if (!ok) {
      await this.report('FAILED', { fw_error: 'Checksum verification failed!' });
      return data;
    }
    await this.report('VERIFIED');
    if (opts.fail) {
      await this.report('FAILED', { fw_error: opts.fail });
      return data;
    }
    await this.report('UPDATING');
    this.current = { title, version };
    await this.report('UPDATED');
    return data;
  }
}
