import { expect } from 'chai';
import { isDowngrade, parseSemVer } from '../../server/packages/version-order';

describe('version order (semver.org §11) for downgrade protection', () => {
  it('orders by major, minor and patch numerically', () => {
    expect(isDowngrade('1.9.0', '1.10.0')).to.equal(true);
    expect(isDowngrade('1.10.0', '1.9.0')).to.equal(false);
    expect(isDowngrade('2.0.0', '10.0.0')).to.equal(true);
    expect(isDowngrade('1.0.1', '1.0.0')).to.equal(false);
  });

  it('puts a pre-release before its release, and orders pre-release identifiers (§11.3, §11.4)', () => {
    expect(isDowngrade('1.0.0-rc.1', '1.0.0')).to.equal(true);
    expect(isDowngrade('1.0.0', '1.0.0-rc.1')).to.equal(false);
    const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0'];
    for (let i = 1; i < chain.length; i++) {
      expect(isDowngrade(chain[i - 1] as string, chain[i] as string), `${chain[i - 1]} < ${chain[i]}`).to.equal(true);
      expect(isDowngrade(chain[i] as string, chain[i - 1] as string), `${chain[i]} > ${chain[i - 1]}`).to.equal(false);
    }
  });

  it('is not a downgrade for the same version, build metadata aside, or with a leading v', () => {
    expect(isDowngrade('1.2.3', '1.2.3')).to.equal(false);
    expect(isDowngrade('1.2.3+build.9', '1.2.3+build.1')).to.equal(false);
    expect(isDowngrade('v1.2.3', '1.3.0')).to.equal(true);
  });

  it('compares versions that do not parse as equal-or-not only: never a downgrade', () => {
    expect(parseSemVer('nightly')).to.equal(null);
    expect(parseSemVer('1.0')).to.equal(null);
    expect(isDowngrade('1.0', '2.0.0')).to.equal(false);
    expect(isDowngrade('1.0.0', 'nightly-2026')).to.equal(false);
    expect(isDowngrade('01.0.0', '2.0.0'), 'a leading zero is not semver').to.equal(false);
  });
});
