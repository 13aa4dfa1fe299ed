import { expect } from 'chai';
import { abortReason, gateDecision, insideWindow, localTime, waveSizes } from '../../server/rollouts/rollout-rules';
import type { MaintenanceWindow } from '../../server/store/rollouts';

describe('rollout rules (issue 14): waves, gate, abort, window', () => {
  describe('wave sizes', () => {
    it('takes cumulative percentages of the target: 10/50/100 of 100 is 10, 40, 50', () => {
      expect(waveSizes([{ percent: 10 }, { percent: 50 }, { percent: 100 }], 100)).to.deep.equal([10, 40, 50]);
    });

    it('rounds a share up, so a small target still gets a device in its first wave', () => {
      expect(waveSizes([{ percent: 10 }, { percent: 100 }], 7)).to.deep.equal([1, 6]);
    });

    it('takes counts as that many more devices, and never more than the target', () => {
      expect(waveSizes([{ count: 2 }, { count: 5 }, { count: 10 }], 10)).to.deep.equal([2, 5, 3]);
      expect(waveSizes([{ count: 2 }, { percent: 50 }, { percent: 100 }], 10)).to.deep.equal([2, 3, 5]);
    });

    it('leaves devices past the last wave out, and makes empty waves of shares already reached', () => {
      expect(waveSizes([{ percent: 50 }], 10)).to.deep.equal([5]);
      expect(waveSizes([{ percent: 50 }, { percent: 20 }, { percent: 100 }], 10)).to.deep.equal([5, 0, 5]);
    });
  });

  describe('abort rule', () => {
    const rule = { maxFailureRate: 30, minFinished: 5 };

    it('waits for minFinished finished devices, however bad the first ones', () => {
      expect(abortReason(rule, { assigned: 10, updated: 0, failed: 4 })).to.equal(null);
    });

    it('fires as soon as the failure rate reaches the threshold (equal counts)', () => {
      expect(abortReason(rule, { assigned: 10, updated: 7, failed: 3 })).to.equal('failure rate 30 % (3 of 10 finished) reached the abort threshold of 30 %');
      expect(abortReason(rule, { assigned: 10, updated: 3, failed: 2 })).to.match(/^failure rate 40 % \(2 of 5 finished\)/);
    });

    it('does not fire just below the threshold', () => {
      expect(abortReason(rule, { assigned: 100, updated: 71, failed: 29 })).to.equal(null);
      expect(abortReason(rule, { assigned: 10, updated: 5, failed: 2 })).to.equal(null);
    });

    it('shows a rate that is not whole with one decimal', () => {
      expect(abortReason({ maxFailureRate: 10, minFinished: 1 }, { assigned: 3, updated: 2, failed: 1 })).to.match(/^failure rate 33\.3 %/);
    });
  });

  describe('gate', () => {
    const gate = { minSuccessRate: 90, minFinished: 5, waitSeconds: 0 };

    it('opens while devices of the wave are still updating, once minFinished finished at the rate', () => {
      expect(gateDecision(gate, { assigned: 10, updated: 5, failed: 0 }, false)).to.deep.equal({ open: true });
      expect(gateDecision(gate, { assigned: 10, updated: 4, failed: 0 }, false)).to.deep.equal({ open: false, reason: 'waiting for 5 finished devices (4 so far)', final: false });
    });

    it('stays shut below the rate while the wave still runs, without stopping the rollout', () => {
      expect(gateDecision(gate, { assigned: 10, updated: 4, failed: 1 }, false)).to.deep.equal({
        open: false,
        reason: 'success rate 80 % (4 of 5 finished) is below 90 %: waiting for the wave to finish',
        final: false,
      });
    });

    it('after the last wave, waits for every device of it to finish', () => {
      expect(gateDecision(gate, { assigned: 10, updated: 9, failed: 0 }, false, true)).to.deep.equal({ open: false, reason: null, final: false });
      expect(gateDecision(gate, { assigned: 10, updated: 10, failed: 0 }, true, true)).to.deep.equal({ open: true });
    });

    it('opens on a finished wave at the success rate exactly', () => {
      expect(gateDecision(gate, { assigned: 10, updated: 9, failed: 1 }, true)).to.deep.equal({ open: true });
    });

    it('fails for good below the success rate', () => {
      const d = gateDecision(gate, { assigned: 10, updated: 8, failed: 2 }, true);
      expect(d).to.deep.equal({ open: false, reason: 'gate failed: success rate 80 % (8 of 10 finished) is below 90 %', final: true });
    });

    it('needs minFinished finished over all waves, or every device assigned when fewer were', () => {
      expect(gateDecision(gate, { assigned: 3, updated: 3, failed: 0 }, true)).to.deep.equal({ open: true });
      expect(gateDecision({ ...gate, minFinished: 50 }, { assigned: 60, updated: 40, failed: 0 }, true)).to.deep.equal({
        open: false,
        reason: 'waiting for 50 finished devices (40 so far)',
        final: false,
      });
    });

    it('counts every wave so far, not only the last one', () => {
      // Wave 1: 10 of 10; wave 2: 8 of 10. 18 of 20 = 90 %.
      expect(gateDecision(gate, { assigned: 20, updated: 18, failed: 2 }, true)).to.deep.equal({ open: true });
    });
  });

  describe('maintenance window (Intl time zones)', () => {
    const berlinNight: MaintenanceWindow = { days: ['FRI'], from: '22:00', to: '04:00', timeZone: 'Europe/Berlin' };
    // 2026-01-16 is a Friday; Berlin is UTC+1 in winter, UTC+2 in summer.
    const at = (iso: string): number => Date.parse(iso);

    it('reads weekday and minute in the window time zone', () => {
      expect(localTime(at('2026-01-16T21:30:00Z'), 'Europe/Berlin')).to.deep.equal({ day: 'FRI', minute: 22 * 60 + 30 });
      expect(localTime(at('2026-01-16T23:30:00Z'), 'Europe/Berlin')).to.deep.equal({ day: 'SAT', minute: 30 });
      expect(localTime(at('2026-01-16T23:30:00Z'), 'America/New_York')).to.deep.equal({ day: 'FRI', minute: 18 * 60 + 30 });
    });

    it('crosses midnight: a Friday night window is open until Saturday 04:00, and belongs to Friday', () => {
      expect(insideWindow(berlinNight, at('2026-01-16T20:59:00Z'))).to.equal(false); // FRI 21:59
      expect(insideWindow(berlinNight, at('2026-01-16T21:00:00Z'))).to.equal(true); // FRI 22:00
      expect(insideWindow(berlinNight, at('2026-01-17T02:59:00Z'))).to.equal(true); // SAT 03:59
      expect(insideWindow(berlinNight, at('2026-01-17T03:00:00Z'))).to.equal(false); // SAT 04:00
      expect(insideWindow(berlinNight, at('2026-01-17T21:30:00Z'))).to.equal(false); // SAT 22:30: not a window day
      expect(insideWindow(berlinNight, at('2026-01-16T01:00:00Z'))).to.equal(false); // FRI 02:00: Thursday's night
    });

    it('follows summer time', () => {
      // 2026-07-17 is a Friday; 22:00 in Berlin is 20:00 UTC.
      expect(insideWindow(berlinNight, at('2026-07-17T20:00:00Z'))).to.equal(true);
      expect(insideWindow(berlinNight, at('2026-07-17T19:59:00Z'))).to.equal(false);
    });

    it('is open within a same-day window only between from and to; from = to is the whole day', () => {
      const office: MaintenanceWindow = { days: ['MON', 'TUE', 'WED', 'THU', 'FRI'], from: '09:00', to: '17:00', timeZone: 'UTC' };
      expect(insideWindow(office, at('2026-01-16T09:00:00Z'))).to.equal(true);
      expect(insideWindow(office, at('2026-01-16T17:00:00Z'))).to.equal(false);
      expect(insideWindow(office, at('2026-01-17T10:00:00Z'))).to.equal(false);
      expect(insideWindow({ ...office, days: ['SAT'], from: '00:00', to: '00:00' }, at('2026-01-17T23:59:00Z'))).to.equal(true);
    });

    it('is always open without a window', () => {
      expect(insideWindow(null, 0)).to.equal(true);
    });
  });
});
