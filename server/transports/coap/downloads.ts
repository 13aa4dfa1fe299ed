import type { DeviceId } from '../../ids';
import type { Device } from '../../store/devices';
import type { OtaPackage, OtaPackageType } from '../../store/ota-packages';

/** What serving a block of a download needs: the device (for uplink events) and its package. */
export interface Download {
  device: Device;
  type: OtaPackageType;
  pkg: OtaPackage & { blobSha256: string; dataSize: number };
}

/**
 * Downloads under way, so that a block after the first costs a map lookup, not a token lookup and
 * two queries. Keyed by peer and the request's URI (path and query, RFC 7959 §2.4: the blocks of
 * one body are asked for with the same URI). Entries live as long as an exchange (EXCHANGE_LIFETIME,
 * RFC 7252 §4.8.2) after their last block, at most `max` of them (OTA_COAP_MAX_DOWNLOADS), and go at
 * once when the device, its profile or a package changes (the transport listens to engine events).
 */
export class Downloads {
  private readonly entries = new Map<string, Download & { expires: number }>();

  constructor(
    private readonly now: () => number,
    private readonly max: number,
    private readonly lifetimeMs = 247_000,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): Download | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e;
  }

  /** Keeps (or refreshes) a download; the least recently used go past `max`. */
  set(key: string, download: Download): void {
    const now = this.now();
    this.entries.delete(key);
    this.entries.set(key, { ...download, expires: now + this.lifetimeMs });
    for (const [k, e] of this.entries) {
      if (e.expires > now && this.entries.size <= this.max) break;
      this.entries.delete(k);
    }
  }

  forgetDevice(deviceId: DeviceId): void {
    for (const [k, e] of this.entries) if (e.device.id === deviceId) this.entries.delete(k);
  }

  clear(): void {
    this.entries.clear();
  }
}
