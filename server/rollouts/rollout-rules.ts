import type { AbortRule, Gate, MaintenanceWindow, Rollout, RolloutDeviceStatus, RolloutDeviceView, WaveSpec, Weekday } from '../store/rollouts';

/**
 * The arithmetic of a rollout, with no store and no clock of its own: how many devices each wave
 * takes, when the gate between two waves opens, when the abort rule fires, and whether a time is
 * inside the maintenance window. The driver (rollout-driver.ts) applies it.
 */

/**
 * How many devices each wave takes out of `total`. `percent` is cumulative (the share of the
 * target reached by the end of the wave: 10, 50, 100), rounded up so a small target still gets a
 * device in its first wave; `count` is that many more devices. Devices past the last wave are not
 * part of the rollout.
 */
export function waveSizes(waves: readonly WaveSpec[], total: number): number[] {
  const sizes: number[] = [];
  let reached = 0;
  for (const w of waves) {
    const end = 'percent' in w ? Math.ceil((total * w.percent) / 100) : reached + w.count;
    const size = Math.max(0, Math.min(total, end) - reached);
    sizes.push(size);
    reached += size;
  }
  return sizes;
}

/**
 * An assigned device's outcome, from the state tracker's record: UPDATED or FAILED for the
 * rollout's package; a device deleted meanwhile is left out. Anything else keeps its status.
 */
export function outcomeOf(r: Pick<Rollout, 'packageId'>, d: RolloutDeviceView): RolloutDeviceStatus {
  if (d.status !== 'ASSIGNED') return d.status;
  if (d.name === null) return 'SKIPPED';
  if (d.statePackageId === r.packageId && d.state === 'UPDATED') return 'UPDATED';
  if (d.statePackageId === r.packageId && d.state === 'FAILED') return 'FAILED';
  return 'ASSIGNED';
}

/** Devices of the waves so far, by outcome. */
export interface Tally {
  /** Assigned to the rollout so far (every wave started). */
  assigned: number;
  updated: number;
  failed: number;
}

const finished = (t: Tally): number => t.updated + t.failed;
/** A percentage of the finished devices, exact (no rounding: 30 % of 10 is 3, not 2.9999). */
const rate = (part: number, whole: number): number => (whole === 0 ? 0 : (part * 100) / whole);

/**
 * The abort rule: as soon as at least `minFinished` devices finished and the failure rate over
 * them reaches `maxFailureRate`. Answers the reason, or null.
 */
export function abortReason(rule: AbortRule, t: Tally): string | null {
  const done = finished(t);
  if (done === 0 || done < rule.minFinished) return null;
  const failure = rate(t.failed, done);
  if (failure < rule.maxFailureRate) return null;
  return `failure rate ${formatRate(failure)} % (${t.failed} of ${done} finished) reached the abort threshold of ${rule.maxFailureRate} %`;
}

export type GateDecision = { open: true } | { open: false; reason: string | null; final: boolean };

/**
 * The gate after a wave: at least `minFinished` finished over all waves so far (or every device
 * assigned so far, when fewer were), and a success rate of at least `minSuccessRate` over them.
 * It may open while devices of the wave are still updating (issue 14: the next wave starts when the
 * gate passes), except after the last wave (`mustFinish`), which is complete only once every one of
 * its devices finished. Below the rate it stays shut while the wave still runs (the rate may
 * recover); a wave that finished below the rate can never open its gate (`final`): the rollout
 * stops there.
 */
export function gateDecision(gate: Gate, t: Tally, waveFinished: boolean, mustFinish = false): GateDecision {
  if (mustFinish && !waveFinished) return { open: false, reason: null, final: false };
  const done = finished(t);
  const needed = Math.min(gate.minFinished, t.assigned);
  if (done < needed) return { open: false, reason: `waiting for ${needed} finished devices (${done} so far)`, final: false };
  const success = done === 0 ? 100 : rate(t.updated, done);
  if (success < gate.minSuccessRate) {
    const below = `success rate ${formatRate(success)} % (${t.updated} of ${done} finished) is below ${gate.minSuccessRate} %`;
    return waveFinished ? { open: false, reason: `gate failed: ${below}`, final: true } : { open: false, reason: `${below}: waiting for the wave to finish`, final: false };
  }
  return { open: true };
}

const formatRate = (r: number): string => (Number.isInteger(r) ? String(r) : r.toFixed(1));

const WEEKDAYS: readonly Weekday[] = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];
const minutesOf = (hhmm: string): number => {
  const [h, m] = hhmm.split(':').map(Number);
  return (h as number) * 60 + (m as number);
};

/** The weekday and minute of the day of `ms` in `timeZone` (Intl: the time zone's own rules, summer time included). */
export function localTime(ms: number, timeZone: string): { day: Weekday; minute: number } {
  const parts = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(new Date(ms));
  const part = (type: string): string => parts.find((p) => p.type === type)?.value ?? '';
  const day = part('weekday').toUpperCase().slice(0, 3) as Weekday;
  return { day, minute: Number(part('hour')) * 60 + Number(part('minute')) };
}

/** Whether `timeZone` is one Intl knows (validation of a window). */
export function isTimeZone(timeZone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone });
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether `ms` falls inside the window. A window whose `to` is not after `from` crosses midnight
 * and belongs to the day it starts: FRI 22:00-04:00 is open Friday night until Saturday 04:00.
 * `from` equal to `to` is the whole day.
 */
export function insideWindow(window: MaintenanceWindow | null, ms: number): boolean {
  if (!window) return true;
  const { day, minute } = localTime(ms, window.timeZone);
  const from = minutesOf(window.from);
  const to = minutesOf(window.to);
  const on = (d: Weekday): boolean => window.days.includes(d);
  if (from === to) return on(day);
  if (from < to) return on(day) && minute >= from && minute < to;
  const yesterday = WEEKDAYS[(WEEKDAYS.indexOf(day) + 6) % 7] as Weekday;
  return (on(day) && minute >= from) || (on(yesterday) && minute < to);
}
