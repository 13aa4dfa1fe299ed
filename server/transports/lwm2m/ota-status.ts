import type { UpdateState } from '../../pipeline/ota-keys';

/**
 * Object 5 (Firmware Update) and Object 9 (Software Management) codes, and the states ThingsBoard
 * reports for them (reference §6, its two tables).
 */
export const FW_STATE = { IDLE: 0, DOWNLOADING: 1, DOWNLOADED: 2, UPDATING: 3 } as const;
export const FW_RESULT = { INITIAL: 0, SUCCESS: 1, CONNECTION_LOST: 4, INTEGRITY_FAILURE: 5 } as const;
export const SW_STATE = { INITIAL: 0, DOWNLOAD_STARTED: 1, DOWNLOADED: 2, DELIVERED: 3, INSTALLED: 4 } as const;
export const SW_RESULT = { INITIAL: 0, DOWNLOADING: 1, INSTALLED: 2, VERIFIED: 3 } as const;

/** ThingsBoard retries an update this many times after results 4/5 (fw) or 50, 51, 56-59 (sw). */
export const MAX_RETRIES = 3;

/** Object 5 Update Result texts (OMA Object 5 definition, Resource 5). */
export const FW_RESULT_TEXT: Readonly<Record<number, string>> = {
  0: 'Initial value',
  1: 'Firmware updated successfully',
  2: 'Not enough flash memory for the new firmware package',
  3: 'Out of RAM during downloading process',
  4: 'Connection lost during downloading process',
  5: 'Integrity check failure for new downloaded package',
  6: 'Unsupported package type',
  7: 'Invalid URI',
  8: 'Firmware update failed',
  9: 'Unsupported protocol',
};

/** Object 9 Update Result texts (OMA Object 9 definition, Resource 9). */
export const SW_RESULT_TEXT: Readonly<Record<number, string>> = {
  0: 'Initial value',
  1: 'Downloading',
  2: 'Software successfully installed',
  3: 'Successfully downloaded and package integrity verified',
  50: 'Not enough storage for the new software package',
  51: 'Out of memory during downloading process',
  52: 'Connection lost during downloading process',
  53: 'Package integrity check failure',
  54: 'Unsupported package type',
  56: 'Invalid URI',
  57: 'Device defined update error',
  58: 'Software installation failure',
  59: 'Uninstallation failure during forUpdate(arg=0)',
};

/** `/5/0/3` -> fw_state; Idle maps to nothing (the caller handles "Idle while DOWNLOADING"). */
export function firmwareStateToStatus(state: number): UpdateState | null {
  if (state === FW_STATE.DOWNLOADING) return 'DOWNLOADING';
  if (state === FW_STATE.DOWNLOADED) return 'DOWNLOADED';
  if (state === FW_STATE.UPDATING) return 'UPDATING';
  return null;
}

/** `/5/0/5` -> fw_state: 1 UPDATED, 2-9 FAILED; 0 maps to nothing (the caller handles "0 while UPDATING"). */
export function firmwareResultToStatus(result: number): UpdateState | null {
  if (result === FW_RESULT.SUCCESS) return 'UPDATED';
  if (result >= 2 && result <= 9) return 'FAILED';
  return null;
}

export const firmwareResultRetries = (result: number): boolean => result === FW_RESULT.CONNECTION_LOST || result === FW_RESULT.INTEGRITY_FAILURE;

/** `/9/0/7` -> sw_state: 1 and 2 DOWNLOADING, 3 DOWNLOADED; 0 and 4 map to nothing. */
export function softwareStateToStatus(state: number): UpdateState | null {
  if (state === SW_STATE.DOWNLOAD_STARTED || state === SW_STATE.DOWNLOADED) return 'DOWNLOADING';
  if (state === SW_STATE.DELIVERED) return 'DOWNLOADED';
  return null;
}

/** `/9/0/9` -> sw_state: 1 DOWNLOADING, 2 UPDATED, 3 VERIFIED, 50-54 and 56-59 FAILED. */
export function softwareResultToStatus(result: number): UpdateState | null {
  if (result === SW_RESULT.DOWNLOADING) return 'DOWNLOADING';
  if (result === SW_RESULT.INSTALLED) return 'UPDATED';
  if (result === SW_RESULT.VERIFIED) return 'VERIFIED';
  if ((result >= 50 && result <= 54) || (result >= 56 && result <= 59)) return 'FAILED';
  return null;
}

// Reference §6: ThingsBoard retries 50, 51, 56, 57, 58 and 59 (not 52 "connection lost"); kept as it is.
export const softwareResultRetries = (result: number): boolean => [50, 51, 56, 57, 58, 59].includes(result);
