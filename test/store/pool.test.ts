import { expect } from 'chai';
import { DEFAULT_POOL_SIZE, poolSizeFromEnv } from '../../server/store/postgres/pool';

describe('PostgreSQL pool size (OTA_DATABASE_POOL_SIZE)', () => {
  it('defaults when the variable is unset or empty', () => {
    expect(poolSizeFromEnv({})).to.equal(DEFAULT_POOL_SIZE);
    expect(poolSizeFromEnv({ OTA_DATABASE_POOL_SIZE: '' })).to.equal(DEFAULT_POOL_SIZE);
  });

  it('takes a whole number of at least 3', () => {
    expect(poolSizeFromEnv({ OTA_DATABASE_POOL_SIZE: '25' })).to.equal(25);
    expect(poolSizeFromEnv({ OTA_DATABASE_POOL_SIZE: '3' })).to.equal(3);
  });

  it('refuses fewer than 3 connections or a non-number, saying what it needs', () => {
    for (const bad of ['2', '0', '-1', '4.5', 'ten']) {
      expect(() => poolSizeFromEnv({ OTA_DATABASE_POOL_SIZE: bad }), bad).to.throw(`OTA_DATABASE_POOL_SIZE must be a whole number of at least 3, not ${bad}`);
    }
  });
});
