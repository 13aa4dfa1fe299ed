import { expect } from 'chai';
import { redactedUrl } from '../../server/store/redacted-url';

describe('redactedUrl (database URLs in messages)', () => {
  it('hides the password of a URL and keeps the rest', () => {
    expect(redactedUrl('postgres://ota:s3cret@db.example:5432/ota?sslmode=require')).to.equal('postgres://ota:***@db.example:5432/ota?sslmode=require');
  });

  it('leaves a URL without a password as it is', () => {
    expect(redactedUrl('postgres://db.example/ota')).to.equal('postgres://db.example/ota');
  });

  it('hides what looks like a password in a string that is not a URL', () => {
    const shown = redactedUrl('//ota:s3cret@ no such url');
    expect(shown).to.equal('//ota:***@ no such url');
    expect(shown).not.to.include('s3cret');
  });
});
