import { expect } from 'chai';
import { ApiHarness, expectError, ok, unique, type DeviceBody, type DeviceCredentialsBody, type DeviceProfileBody } from '../support/api-harness';
import { lwm2mProfileSettings } from '../../server/transports/lwm2m/profile-settings';

/** LWM2M_CREDENTIALS as ThingsBoard's REST API takes them: NoSec client, NoSec bootstrap entries. */
const lwm2mValue = (endpoint: string, mode = 'NO_SEC'): Record<string, unknown> => ({
  client: { endpoint, securityConfigClientMode: mode },
  bootstrap: { bootstrapServer: { securityMode: 'NO_SEC' }, lwm2mServer: { securityMode: 'NO_SEC' } },
});
const lwm2mCredentials = (endpoint: string): Record<string, unknown> => ({
  credentialsType: 'LWM2M_CREDENTIALS',
  credentialsId: endpoint,
  credentialsValue: JSON.stringify(lwm2mValue(endpoint)),
});

describe('admin API: LwM2M device credentials', () => {
  let h: ApiHarness;
  let profile: DeviceProfileBody;
  before(async () => {
    h = await ApiHarness.start();
    profile = await h.admin.createProfile(unique('lwm2m'), {
      transportType: 'LWM2M',
      profileData: {
        configuration: { type: 'DEFAULT' },
        transportConfiguration: {
          type: 'LWM2M',
          observeAttr: { observe: ['/5_1.0/0/3', '/5_1.0/0/5'], attribute: [], telemetry: [], keyName: {}, attributeLwm2m: {} },
          clientLwM2mSettings: { fwUpdateStrategy: 2, swUpdateStrategy: 1, fwUpdateResource: 'coap://ota.example:5685' },
        },
      },
    });
  });
  after(async () => h?.close());

  const credentialsOf = async (id: string): Promise<DeviceCredentialsBody> => ok<DeviceCredentialsBody>(await h.admin.get(`/api/device/${id}/credentials`));
  const withCredentials = (credentials: unknown, name = unique('lwm2m-dev')) =>
    h.admin.post('/api/device-with-credentials', { device: { name, deviceProfileId: profile.id }, credentials });

  it('POST /api/device-with-credentials creates a device found by its endpoint name', async () => {
    const endpoint = unique('urn:imei:35');
    const device = ok<DeviceBody>(await withCredentials(lwm2mCredentials(endpoint)));
    const creds = await credentialsOf(device.id.id);
    expect(creds.credentialsType).to.equal('LWM2M_CREDENTIALS');
    expect(creds.credentialsId).to.equal(endpoint);
    expect(JSON.parse(creds.credentialsValue ?? '{}')).to.deep.equal(lwm2mValue(endpoint));
    const found = await h.engine.devices.findByLwm2mEndpoint(endpoint);
    expect(found?.id).to.equal(device.id.id);
    expect(found?.name).to.equal(device.name);
  });

  it('takes the endpoint from credentialsValue, whatever credentialsId says, and accepts the value as an object', async () => {
    const endpoint = unique('ep');
    const device = ok<DeviceBody>(await withCredentials({ credentialsType: 'LWM2M_CREDENTIALS', credentialsId: 'ignored', credentialsValue: lwm2mValue(endpoint) }));
    expect((await credentialsOf(device.id.id)).credentialsId).to.equal(endpoint);
  });

  it('does not let the endpoint name serve as an access token', async () => {
    const endpoint = unique('ep');
    ok<DeviceBody>(await withCredentials(lwm2mCredentials(endpoint)));
    expect(await h.engine.devices.findByAccessToken(endpoint)).to.equal(null);
    expect((await h.admin.get(`/api/v1/${endpoint}/attributes`)).status).to.equal(401);
  });

  it('keeps creating access-token devices through the same call', async () => {
    const token = unique('tok');
    const device = ok<DeviceBody>(await withCredentials({ credentialsType: 'ACCESS_TOKEN', credentialsId: token }));
    expect(await credentialsOf(device.id.id)).to.deep.include({ credentialsType: 'ACCESS_TOKEN', credentialsId: token, credentialsValue: null });
    expect((await h.engine.devices.findByAccessToken(token))?.id).to.equal(device.id.id);
  });

  for (const [what, value, message] of [
    ['a value that is not JSON', '{client:', 'Invalid credentials body for LwM2M credentials!'],
    ['no value', null, 'LwM2M credentials must be specified!'],
    ['no client', { bootstrap: {} }, 'LwM2M client credentials must be specified!'],
    ['an unknown security mode', { client: { endpoint: 'x', securityConfigClientMode: 'NONE' } }, 'Invalid credentials body for LwM2M credentials!'],
    ['no endpoint', { client: { securityConfigClientMode: 'NO_SEC' } }, 'LwM2M client endpoint must be specified!'],
    ['no bootstrap', { client: { endpoint: 'x', securityConfigClientMode: 'NO_SEC' } }, 'LwM2M bootstrap credentials must be specified!'],
    [
      'no bootstrap server',
      { client: { endpoint: 'x', securityConfigClientMode: 'NO_SEC' }, bootstrap: { lwm2mServer: { securityMode: 'NO_SEC' } } },
      'LwM2M bootstrap server credentials must be specified!',
    ],
    [
      'no lwm2m server',
      { client: { endpoint: 'x', securityConfigClientMode: 'NO_SEC' }, bootstrap: { bootstrapServer: { securityMode: 'NO_SEC' } } },
      'LwM2M lwm2m server credentials must be specified!',
    ],
    ['PSK, which this server does not serve', lwm2mValue('x', 'PSK'), 'LwM2M security mode PSK is not supported by this server: use NO_SEC'],
  ] as const) {
    it(`refuses ${what} with ThingsBoard's 400 and creates nothing`, async () => {
      const name = unique('refused');
      const credentialsValue = typeof value === 'string' || value === null ? value : JSON.stringify(value);
      expectError(await withCredentials({ credentialsType: 'LWM2M_CREDENTIALS', credentialsValue }, name), 400, message, 31);
      expectError(await h.admin.get(`/api/tenant/devices?deviceName=${encodeURIComponent(name)}`), 404);
    });
  }

  it('refuses a missing credentials type and a missing credentials object', async () => {
    expectError(await withCredentials({ credentialsId: 'x' }), 400, 'Device credentials type should be specified', 31);
    expectError(await h.admin.post('/api/device-with-credentials', { device: { name: unique('d') } }), 400, /credentials/, 31);
  });

  it('refuses an endpoint another device holds, as a token or an endpoint', async () => {
    const endpoint = unique('ep');
    ok<DeviceBody>(await withCredentials(lwm2mCredentials(endpoint)));
    expectError(await withCredentials(lwm2mCredentials(endpoint)), 400, 'Device credentials are already assigned to another device!', 31);
    expectError(await withCredentials({ credentialsType: 'ACCESS_TOKEN', credentialsId: endpoint }), 400, 'Device credentials are already assigned to another device!', 31);
  });

  it('POST /api/device/credentials turns an access-token device into an LwM2M one and back', async () => {
    const device = await h.admin.createDevice({ name: unique('dev'), deviceProfileId: profile.id });
    const before = await credentialsOf(device.id.id);
    const endpoint = unique('ep');
    const saved = ok<DeviceCredentialsBody>(await h.admin.post('/api/device/credentials', { ...before, ...lwm2mCredentials(endpoint) }));
    expect(saved).to.deep.include({ credentialsType: 'LWM2M_CREDENTIALS', credentialsId: endpoint });
    expect((await h.engine.devices.findByLwm2mEndpoint(endpoint))?.id).to.equal(device.id.id);
    expect(await h.engine.devices.findByAccessToken(before.credentialsId)).to.equal(null);

    ok(await h.admin.post('/api/device/credentials', { ...before, credentialsType: 'ACCESS_TOKEN', credentialsValue: null }));
    expect(await h.engine.devices.findByLwm2mEndpoint(endpoint)).to.equal(null);
    expect((await h.engine.devices.findByAccessToken(before.credentialsId))?.id).to.equal(device.id.id);
  });

  it('refuses bad LwM2M credentials on POST /api/device/credentials and keeps the old ones', async () => {
    const device = await h.admin.createDevice({ name: unique('dev') });
    const before = await credentialsOf(device.id.id);
    expectError(
      await h.admin.post('/api/device/credentials', { ...before, credentialsType: 'LWM2M_CREDENTIALS', credentialsValue: '{}' }),
      400,
      'LwM2M client credentials must be specified!',
      31,
    );
    expect(await credentialsOf(device.id.id)).to.deep.include({ credentialsType: 'ACCESS_TOKEN', credentialsId: before.credentialsId });
  });

  it('stores an LWM2M profile whose OTA settings read back with ThingsBoard defaults for the rest', async () => {
    const stored = ok<DeviceProfileBody>(await h.admin.get(`/api/deviceProfile/${profile.id.id}`));
    expect(lwm2mProfileSettings(stored as unknown as Record<string, unknown>, 'coap://127.0.0.1:5685')).to.deep.equal({
      fwUpdateStrategy: 2,
      swUpdateStrategy: 1,
      fwUpdateResource: 'coap://ota.example:5685',
      swUpdateResource: 'coap://127.0.0.1:5685',
      observe: ['/5/0/3', '/5/0/5'],
    });
  });
});
