import { expect } from 'chai';
import { ApiHarness, expectError, ok, unique, type DeviceBody, type DeviceCredentialsBody } from '../support/api-harness';

/** MQTT_BASIC credentials through ThingsBoard's REST API (reference §3.1; DeviceCredentialsServiceImpl). */
describe('admin API: MQTT basic device credentials', () => {
  let h: ApiHarness;
  before(async () => {
    h = await ApiHarness.start();
  });
  after(async () => h?.close());

  const basic = (value: unknown): Record<string, unknown> => ({ credentialsType: 'MQTT_BASIC', credentialsValue: typeof value === 'string' ? value : JSON.stringify(value) });
  const withCredentials = (credentials: unknown, name = unique('basic-dev')) => h.admin.post('/api/device-with-credentials', { device: { name }, credentials });
  const credentialsOf = async (id: string): Promise<DeviceCredentialsBody> => ok<DeviceCredentialsBody>(await h.admin.get(`/api/device/${id}/credentials`));

  it("creates a device whose credentials read back with ThingsBoard's id and the password as a hash", async () => {
    const clientId = unique('c');
    const device = ok<DeviceBody>(await withCredentials(basic({ clientId, userName: 'u1', password: 'secret-1' })));
    const creds = await credentialsOf(device.id.id);
    expect(creds.credentialsType).to.equal('MQTT_BASIC');
    expect(creds.credentialsId).to.match(/^[0-9a-f]{64}$/);
    const value = JSON.parse(creds.credentialsValue ?? '{}') as Record<string, string>;
    expect(value).to.deep.include({ clientId, userName: 'u1' });
    expect(value.password).to.match(/^\$scrypt\$/);
    expect(creds.credentialsValue).to.not.include('secret-1');
  });

  it('takes the user name as the credentials id when there is no client id', async () => {
    const userName = unique('user');
    const device = ok<DeviceBody>(await withCredentials(basic({ userName, password: 'pw' })));
    expect((await credentialsOf(device.id.id)).credentialsId).to.equal(userName);
  });

  for (const [what, value, message] of [
    ['a value that is not JSON', '{clientId:', 'Invalid credentials body for simple mqtt credentials!'],
    ['neither client id nor user name', { password: 'pw' }, 'Both mqtt client id and user name are empty!'],
    ['a password with a client id alone', { clientId: 'c', password: 'pw' }, 'Password cannot be specified along with client id'],
  ] as const) {
    it(`refuses ${what} with ThingsBoard's 400 and creates nothing`, async () => {
      const name = unique('refused');
      expectError(await withCredentials(basic(value), name), 400, message, 31);
      expectError(await h.admin.get(`/api/tenant/devices?deviceName=${encodeURIComponent(name)}`), 404);
    });
  }

  it('refuses basic credentials another device holds', async () => {
    const value = { clientId: unique('dup'), userName: 'u', password: 'a' };
    ok<DeviceBody>(await withCredentials(basic(value)));
    expectError(await withCredentials(basic({ ...value, password: 'b' })), 400, 'Device credentials are already assigned to another device!', 31);
  });

  it('POST /api/device/credentials turns a token device into a basic one; the device API no longer takes the token', async () => {
    const device = await h.admin.createDevice({ name: unique('dev') });
    const before = await credentialsOf(device.id.id);
    const saved = ok<DeviceCredentialsBody>(await h.admin.post('/api/device/credentials', { ...before, ...basic({ userName: unique('u'), password: 'pw' }) }));
    expect(saved.credentialsType).to.equal('MQTT_BASIC');
    expect((await h.admin.get(`/api/v1/${before.credentialsId}/attributes`)).status).to.equal(401);
  });
});
