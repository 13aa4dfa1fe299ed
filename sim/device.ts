import type { KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { verify, verifyPackageSignature, type FirmwareInfo } from './firmware';

/**
 * One device's connection, in its transport's terms (HTTP, MQTT, CoAP). The update itself, the
 * same whatever the transport, is `runDevice`.
 */
export interface DeviceLink {
  /** Connects and subscribes, so that no notification sent from now on is missed. */
  open(signal: AbortSignal): Promise<void>;
  /** Resolves with the firmware assigned to the device once it is one `wanted` accepts. */
  firmware(wanted: (fw: FirmwareInfo) => boolean, signal: AbortSignal): Promise<FirmwareInfo>;
  /** Downloads the firmware; `progress` gets each part's byte count as it arrives. */
  download(fw: FirmwareInfo, progress: (bytes: number) => void, signal: AbortSignal): Promise<Buffer>;
  /** Sends telemetry. */
  report(values: Record<string, unknown>, signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

export type Phase = 'starting' | 'waiting' | 'downloading' | 'verifying' | 'updating' | 'updated' | 'failed' | 'unfinished';

export interface DeviceResult {
  name: string;
  /** `unfinished`: still busy when the run timed out. */
  phase: 'updated' | 'failed' | 'unfinished';
  /** FAILED on purpose (the fail rate), as opposed to a failure the simulator did not ask for. */
  intended: boolean;
  error: string | null;
  bytes: number;
  /** From the notification to the last report, in ms; null when it never got one. */
  updateMs: number | null;
}

export interface DeviceObserver {
  phase(name: string, phase: Phase): void;
  bytes(n: number): void;
}

export interface DevicePlan {
  name: string;
  /** The error this device reports instead of updating, or null to update. */
  failWith: string | null;
  /** Pause between two steps, ms. */
  pace: number;
  /**
   * The firmware being rolled out. Another one in the device's attributes (an earlier run's, still
   * there until the new one is released from the queue) is taken as the one it runs already.
   */
  target: { title: string; version: string };
  /** With `--verify-signature`: the tenant's public key; the package must carry a signature it verifies. */
  publicKey?: KeyObject | null;
}

/** Where every simulated device starts, as ThingsBoard's Python SDK does. */
export const INITIAL_FIRMWARE = { title: 'Initial', version: 'v0' };

/**
 * A well-behaved ThingsBoard device (reference §9): waits for firmware other than its own, reports
 * DOWNLOADING, downloads, DOWNLOADED, verifies the checksum with the named algorithm, VERIFIED (or
 * FAILED with "Checksum verification failed!"), UPDATING, UPDATED with its new current version.
 * Every report carries `current_fw_title` and `current_fw_version`, as the SDK's do.
 */
export async function runDevice(link: DeviceLink, plan: DevicePlan, observer: DeviceObserver, signal: AbortSignal): Promise<DeviceResult> {
  let current = { ...INITIAL_FIRMWARE };
  let bytes = 0;
  let notifiedAt: number | null = null;
  const result = (phase: DeviceResult['phase'], intended: boolean, error: string | null): DeviceResult => {
    observer.phase(plan.name, phase);
    return { name: plan.name, phase, intended, error, bytes, updateMs: notifiedAt === null ? null : Date.now() - notifiedAt };
  };
  const report = async (state: string, extra: Record<string, unknown> = {}): Promise<void> => {
    await link.report({ current_fw_title: current.title, current_fw_version: current.version, fw_state: state, ...extra }, signal);
  };
  const step = async (): Promise<void> => {
    if (plan.pace > 0) await sleep(plan.pace, undefined, { signal });
  };

  observer.phase(plan.name, 'starting');
  try {
    await link.open(signal);
    observer.phase(plan.name, 'waiting');
    const fw = await link.firmware(
      (f) => f.title === plan.target.title && f.version === plan.target.version && (f.title !== current.title || f.version !== current.version),
      signal,
    );
    notifiedAt = Date.now();
    observer.phase(plan.name, 'downloading');
    await report('DOWNLOADING');
    await step();
    const data = await link.download(
      fw,
      (n) => {
        bytes += n;
        observer.bytes(n);
      },
      signal,
    );
    observer.phase(plan.name, 'verifying');
    await report('DOWNLOADED');
    await step();
    // The signature first: it is the stronger check, and the one that catches bytes changed at rest.
    if (plan.publicKey && !verifyPackageSignature(fw, data, plan.publicKey)) {
      const error = fw.signature ? 'Signature verification failed!' : 'Package is not signed!';
      await report('FAILED', { fw_error: error });
      return result('failed', false, error);
    }
    if (!verify(fw, data)) {
      const error = 'Checksum verification failed!';
      await report('FAILED', { fw_error: error });
      return result('failed', false, `${error} (${data.length} of ${fw.size} bytes)`);
    }
    await report('VERIFIED');
    await step();
    observer.phase(plan.name, 'updating');
    if (plan.failWith) {
      await report('FAILED', { fw_error: plan.failWith });
      return result('failed', true, plan.failWith);
    }
    await report('UPDATING');
    await step();
    current = { title: fw.title, version: fw.version };
    await report('UPDATED');
    return result('updated', false, null);
  } catch (err) {
    if (signal.aborted) return result('unfinished', false, notifiedAt === null ? 'no firmware notification before the timeout' : 'still updating at the timeout');
    const message = (err as Error).message || String(err);
    // A device that gives up says so, as a real one would, when it still can.
    if (notifiedAt !== null) await report('FAILED', { fw_error: message }).catch(() => undefined);
    return result('failed', false, message);
  } finally {
    await link.close().catch(() => undefined);
  }
}
