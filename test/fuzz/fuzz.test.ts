import { expect } from 'chai';
import { fuzzAll, type FuzzRun } from './fuzz-all';

/**
 * A short fuzzing run (`npm run fuzz` makes 100,000 inputs per protocol): REST and device HTTP
 * API, MQTT and CoAP, then a normal update (issue 10, fuzzing).
 */
describe('Fuzzing (short run)', function () {
  this.timeout(300_000);
  const RUNS = 2000;
  let run: FuzzRun;

  before(async () => {
    run = await fuzzAll(RUNS, Number(process.env.OTA_FUZZ_SEED ?? 20261202));
  });

  it('crashes nothing: no uncaught exception, no unhandled rejection, no server error logged', () => {
    expect(run.incidents).to.deep.equal({ uncaught: [], unhandledRejections: [], loggedErrors: [] });
  });

  for (const protocol of ['REST + device HTTP API', 'MQTT', 'CoAP']) {
    it(`${protocol}: answers no 5xx, changes nothing on a refused input, keeps serving`, () => {
      const r = run.reports.find((x) => x.protocol === protocol);
      expect(r, protocol).to.not.equal(undefined);
      expect(r?.inputs).to.be.at.least(RUNS);
      expect(r?.serverErrors).to.deep.equal([]);
      expect(r?.refusedButChanged).to.deep.equal([]);
      expect(r?.problems).to.deep.equal([]);
    });
  }

  it('completes a normal device update afterwards, over HTTP, MQTT and CoAP', () => {
    expect(run.updateAfter).to.equal(null);
  });
});
