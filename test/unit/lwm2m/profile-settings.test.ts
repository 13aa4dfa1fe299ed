import { expect } from 'chai';
import { LWM2M_PROFILE_DEFAULTS, ProfileSettingsError, isLwm2mProfile, lwm2mProfileSettings } from '../../../server/transports/lwm2m/profile-settings';
import { PROFILE_DEFAULTS } from '../../../server/devices/device-profile-service';

const lwm2m = (clientLwM2mSettings: unknown, observe?: unknown): Record<string, unknown> => ({
  transportType: 'LWM2M',
  profileData: { transportConfiguration: { type: 'LWM2M', clientLwM2mSettings, observeAttr: observe === undefined ? undefined : { observe } } },
});

describe('LwM2M profile settings', () => {
  it('gives ThingsBoard defaults to a profile without them', () => {
    expect(lwm2mProfileSettings(PROFILE_DEFAULTS as Record<string, unknown>)).to.deep.equal(LWM2M_PROFILE_DEFAULTS);
    expect(lwm2mProfileSettings(lwm2m({}), 'coap://10.1.1.1:5685')).to.deep.include({ fwUpdateStrategy: 1, swUpdateStrategy: 1, fwUpdateResource: 'coap://10.1.1.1:5685' });
  });

  it('tells LWM2M profiles from others', () => {
    expect(isLwm2mProfile(lwm2m({}))).to.equal(true);
    expect(isLwm2mProfile(PROFILE_DEFAULTS as Record<string, unknown>)).to.equal(false);
  });

  it('reads strategies (numbers or numeric strings), resources without a trailing slash, and versioned observe paths', () => {
    expect(
      lwm2mProfileSettings(lwm2m({ fwUpdateStrategy: '2', swUpdateStrategy: 2, fwUpdateResource: 'coap://h:5685/', swUpdateResource: 'http://h/sw' }, ['/3_1.2/0/9', '/5/0/3'])),
    ).to.deep.equal({
      fwUpdateStrategy: 2,
      swUpdateStrategy: 2,
      fwUpdateResource: 'coap://h:5685',
      swUpdateResource: 'http://h/sw',
      observe: ['/3/0/9', '/5/0/3'],
    });
  });

  for (const [settings, observe, message] of [
    [{ fwUpdateStrategy: 4 }, undefined, /fwUpdateStrategy must be one of 1, 2, 3, got 4/],
    [{ swUpdateStrategy: 3 }, undefined, /swUpdateStrategy must be one of 1, 2, got 3/],
    [{ fwUpdateResource: 'localhost:5685' }, undefined, /fwUpdateResource must be a coap:\/\/, coaps:\/\/, http:\/\/ or https:\/\/ URL/],
    [{}, '/5/0/3', /observeAttr.observe must be a list/],
    [{}, ['/5/x/3'], /observeAttr.observe: LwM2M path "\/5\/x\/3"/],
  ] as const) {
    it(`refuses ${JSON.stringify(settings)} ${JSON.stringify(observe) ?? ''} saying which`, () => {
      expect(() => lwm2mProfileSettings(lwm2m(settings, observe))).to.throw(ProfileSettingsError, message);
    });
  }
});
