import { expect } from 'chai';
import { Readable } from 'node:stream';
import { ContentFormat } from '../../../server/transports/lwm2m/content-formats';
import { Lwm2mRequestError, type OpaqueSource } from '../../../server/transports/lwm2m/device-client';
import { Lwm2mDeviceOta, type Lwm2mConnection } from '../../../server/transports/lwm2m/device-ota';
import { parseObjectLinks } from '../../../server/transports/lwm2m/object-links';
import { LWM2M_PROFILE_DEFAULTS, type Lwm2mProfileSettings } from '../../../server/transports/lwm2m/profile-settings';
import type { OtaTarget } from '../../../server/transports/lwm2m/update-decision';
import { FakeDevice, Reports } from './fake-device';

const FW: OtaTarget = { packageId: '0b7c1f3e-4b2a-4c8e-9a55-3d1f6c2b9e10', title: 'fw', version: '2.0', tag: 'fw 2.0', url: null };
const SW: OtaTarget = { packageId: '5d2e8a40-1c3b-4f6e-8d7a-9b0c1e2f3a4b', title: 'app', version: '1.1', tag: null, url: null };
const PACKAGE = Buffer.alloc(3000, 7);

/** Lets pending promise callbacks run: for asserting that nothing more happens. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
};

describe('LwM2M OTA per device (reference §6)', () => {
  let device: FakeDevice;
  let reports: Reports;
  let ota: Lwm2mDeviceOta;
  let sources: number;

  const connect = (settings: Partial<Lwm2mProfileSettings> = {}, links = '</1/0>,</3/0>,</5/0>', version: '1.0' | '1.1' = '1.1'): Lwm2mConnection => ({
    client: device,
    objects: parseObjectLinks(links, { maxLinks: 100 }),
    version,
    settings: { ...LWM2M_PROFILE_DEFAULTS, fwUpdateResource: 'coap://10.0.0.1:5685', swUpdateResource: 'coap://10.0.0.1:5685', ...settings },
  });

  beforeEach(() => {
    device = new FakeDevice({ '/3/0/3': '1.0', '/5/0/3': 0, '/5/0/5': 0, '/5/0/6': 'fw', '/5/0/7': '1.0' });
    reports = new Reports();
    sources = 0;
    ota = new Lwm2mDeviceOta('device-1', {
      report: reports.push,
      packageSource: async (): Promise<OpaqueSource> => {
        sources++;
        return { size: PACKAGE.length, open: () => Readable.from([PACKAGE]) };
      },
    });
  });

  /** A device that downloads what it is given: Downloading, then Downloaded. */
  const downloads = (): void => {
    device.onWrite = (call) => {
      if (call.path !== '/5/0/1' && call.path !== '/5/0/0') return;
      setImmediate(() => {
        device.set('/5/0/3', 1);
        device.set('/5/0/3', 2);
      });
    };
  };
  /** ... and applies it when told: Updating, then Result 1. */
  const applies = (): void => {
    device.onExecute = () => {
      setImmediate(() => {
        device.set('/5/0/3', 3);
        device.set('/5/0/5', 1);
      });
    };
  };

  it('reads /3/0/3, /5/0/6, /5/0/7, /5/0/9 and observes /5/0/3, /5/0/5 on registration', async () => {
    await ota.attach(connect());
    expect(device.ops('read')).to.deep.equal(['/3/0/3', '/5/0/6', '/5/0/7', '/5/0/9']);
    expect(device.ops('observe')).to.deep.equal(['/5/0/3', '/5/0/5']);
  });

  it('also reads /9/0/0, /9/0/1 and observes /9/0/7, /9/0/9 when the device has Object 9', async () => {
    await ota.attach(connect({}, '</3/0>,</5/0>,</9/0>'));
    expect(device.ops('read')).to.deep.equal(['/3/0/3', '/5/0/6', '/5/0/7', '/5/0/9', '/9/0/0', '/9/0/1']);
    expect(device.ops('observe')).to.deep.equal(['/5/0/3', '/5/0/5', '/9/0/7', '/9/0/9']);
  });

  it('pulls: writes <fwUpdateResource>/tbfw/<packageId> to /5/0/1, executes /5/0/2 on Downloaded, ends UPDATED', async () => {
    downloads();
    applies();
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW, { notified: true });
    await reports.until('UPDATED');
    const write = device.calls.find((c) => c.op === 'write');
    expect(write).to.deep.include({ path: '/5/0/1', value: `coap://10.0.0.1:5685/tbfw/${FW.packageId}`, format: ContentFormat.TEXT });
    expect(device.ops('execute')).to.deep.equal(['/5/0/2']);
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
    expect(reports.all.every((e) => e.error === null && e.deviceId === 'device-1')).to.equal(true);
  });

  it('writes the URI as TLV to an LwM2M 1.0 client', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 2 }, '</3/0>,</5/0>', '1.0'));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    expect(device.calls.find((c) => c.op === 'write')?.format).to.equal(ContentFormat.TLV);
  });

  it('pushes: writes the package bytes to /5/0/0 as opaque and reports progress', async () => {
    downloads();
    applies();
    device.onWrite = async (call, options) => {
      const chunks: Buffer[] = [];
      for await (const c of (call.value as OpaqueSource).open()) chunks.push(c as Buffer);
      options?.onProgress?.(1024, PACKAGE.length);
      options?.onProgress?.(PACKAGE.length, PACKAGE.length);
      expect(Buffer.concat(chunks)).to.deep.equal(PACKAGE);
      setImmediate(() => device.set('/5/0/3', 2));
    };
    await ota.attach(connect());
    ota.setTarget('FIRMWARE', FW);
    await reports.until('UPDATED');
    const write = device.calls.find((c) => c.op === 'write');
    expect(write).to.deep.include({ path: '/5/0/0', format: ContentFormat.OPAQUE });
    expect(reports.all.filter((e) => e.progress).map((e) => e.progress)).to.deep.equal([
      { bytes: 1024, size: 3000 },
      { bytes: 3000, size: 3000 },
    ]);
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
  });

  it('lets Delivery Method /5/0/9 override the profile: 0 pulls, 1 pushes', async () => {
    device.values.set('/5/0/9', 0);
    await ota.attach(connect({ fwUpdateStrategy: 1 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    expect(device.ops('write')).to.deep.equal(['/5/0/1']);

    device = new FakeDevice({ '/5/0/3': 0, '/5/0/5': 0, '/5/0/9': 1 });
    ota = new Lwm2mDeviceOta('device-2', { report: reports.push, packageSource: async () => ({ size: 1, open: () => Readable.from([Buffer.from('x')]) }) });
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await settle();
    expect(device.ops('write')).to.deep.equal(['/5/0/0']);
  });

  it('writes the URL of a URL-only package to /5/0/1', async () => {
    await ota.attach(connect());
    ota.setTarget('FIRMWARE', { ...FW, url: 'https://files.example/fw-2.0.bin' });
    await reports.until('DOWNLOADING');
    expect(device.calls.find((c) => c.op === 'write')).to.deep.include({ path: '/5/0/1', value: 'https://files.example/fw-2.0.bin' });
    expect(sources).to.equal(0);
  });

  it('sends nothing to a device that already runs the target (PkgName+PkgVersion), and says UPDATED', async () => {
    device.values.set('/5/0/7', '2.0');
    await ota.attach(connect());
    ota.setTarget('FIRMWARE', FW);
    await reports.until('UPDATED');
    expect(device.ops('write')).to.deep.equal([]);
  });

  it('sends nothing when /3/0/3 contains the tag', async () => {
    device.values.set('/5/0/6', '');
    device.values.set('/5/0/7', '');
    device.values.set('/3/0/3', 'build fw 2.0 (release)');
    await ota.attach(connect());
    ota.setTarget('FIRMWARE', FW);
    await reports.until('UPDATED');
    expect(device.ops('write')).to.deep.equal([]);
  });

  it('retries results 4 and 5 up to 3 times, then FAILED with the reason, never left DOWNLOADING', async () => {
    device.onWrite = () => {
      setImmediate(() => {
        device.set('/5/0/3', 1);
        device.set('/5/0/5', 0);
        device.set('/5/0/5', 4);
        device.set('/5/0/3', 0);
      });
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    const failed = await reports.until('FAILED');
    expect(device.ops('write')).to.have.length(4);
    expect(failed.error).to.equal('Connection lost during downloading process (Update Result 4) (gave up after 3 retries)');
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'FAILED']);
    expect(ota.status('FIRMWARE')).to.deep.include({ state: 'FAILED', retries: 3 });
    await settle();
    expect(device.ops('write')).to.have.length(4);
  });

  it('recovers when a retry succeeds', async () => {
    let attempt = 0;
    applies();
    device.onWrite = () => {
      attempt++;
      setImmediate(() => {
        device.set('/5/0/3', 1);
        if (attempt === 1) {
          device.set('/5/0/5', 5);
          device.set('/5/0/3', 0);
        } else device.set('/5/0/3', 2);
      });
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('UPDATED');
    expect(device.ops('write')).to.have.length(2);
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
  });

  it('fails at once on a result that is not retried, and does not try that package again on the next registration', async () => {
    device.onWrite = () => {
      setImmediate(() => device.set('/5/0/5', 6));
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    expect((await reports.until('FAILED')).error).to.equal('Unsupported package type (Update Result 6)');
    ota.detach('deregistered');
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW); // loaded at registration, not a new notification
    await settle();
    expect(device.ops('write')).to.have.length(1);
  });

  it('tries a failed package again when the pipeline notifies it again', async () => {
    device.onWrite = () => {
      setImmediate(() => device.set('/5/0/5', 8));
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW, { notified: true });
    await reports.until('FAILED');
    const seen = reports.all.length;
    ota.setTarget('FIRMWARE', FW, { notified: true });
    await reports.until('DOWNLOADING', 'FIRMWARE', seen);
    expect(device.ops('write')).to.have.length(2);
  });

  it('FAILS a download when the device de-registers, and retries when it registers again', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    device.set('/5/0/3', 1);
    ota.detach('deregistered');
    expect(reports.all.at(-1)).to.deep.include({ state: 'FAILED', error: 'Device de-registered during the download' });

    downloads();
    applies();
    device.values.set('/5/0/3', 0);
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    await reports.until('UPDATED');
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'FAILED', 'DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
  });

  it('FAILS a download when the registration expires', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    ota.detach('expired');
    expect(reports.all.at(-1)?.error).to.match(/lifetime expired/);
    expect(ota.status('FIRMWARE').state).to.equal('FAILED');
  });

  it('ignores what the old registration answers after the device left', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    const old = device;
    ota.detach('replaced');
    const count = reports.all.length;
    old.set('/5/0/3', 2); // a late notification of the old registration
    await settle();
    expect(reports.all).to.have.length(count);
    expect(device.ops('execute')).to.deep.equal([]);
  });

  it('retries a Write that gets no response, then FAILED saying so', async () => {
    device.onWrite = () => {
      throw new Lwm2mRequestError('timeout', 'no response after 93 s');
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    const failed = await reports.until('FAILED');
    expect(failed.error).to.equal('Write /5/0/1: no response from the device (gave up after 3 retries)');
    expect(device.ops('write')).to.have.length(4);
  });

  it('FAILS at once when the device refuses the Write', async () => {
    device.onWrite = () => {
      throw new Lwm2mRequestError('response', '4.05 Method Not Allowed', '4.05');
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    expect((await reports.until('FAILED')).error).to.equal('Device refused Write /5/0/1: 4.05 Method Not Allowed');
    expect(device.ops('write')).to.have.length(1);
  });

  it('ends UPDATED when the device reboots to apply and registers again with Result 1', async () => {
    downloads();
    device.onExecute = () => undefined; // acknowledged, then the device reboots
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('UPDATING');
    ota.detach('deregistered');
    expect(ota.status('FIRMWARE').state).to.equal('UPDATING');
    device = new FakeDevice({ '/3/0/3': '2.0', '/5/0/3': 0, '/5/0/5': 1, '/5/0/6': 'fw', '/5/0/7': '2.0' });
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    await reports.until('UPDATED');
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
  });

  it('keeps UPDATING when Execute gets no answer (the device may be rebooting)', async () => {
    downloads();
    device.onExecute = () => {
      throw new Lwm2mRequestError('timeout', 'no response');
    };
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADED');
    await settle();
    expect(reports.states()).to.deep.equal(['DOWNLOADING', 'DOWNLOADED']);
  });

  it('FAILS when the device goes back to Idle during the download without a failure result', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 2 }));
    ota.setTarget('FIRMWARE', FW);
    await reports.until('DOWNLOADING');
    device.set('/5/0/3', 1);
    device.set('/5/0/3', 0);
    expect((await reports.until('FAILED')).error).to.equal('Device went back to Idle during the download');
  });

  it('FAILS a firmware target for a device without Object 5', async () => {
    await ota.attach(connect({}, '</1/0>,</3/0>'));
    ota.setTarget('FIRMWARE', FW);
    expect((await reports.until('FAILED')).error).to.equal('Device registered without Object 5 (Firmware Update), instance 0');
  });

  it('FAILS with a clear reason for the Object 19 strategy', async () => {
    await ota.attach(connect({ fwUpdateStrategy: 3 }));
    ota.setTarget('FIRMWARE', FW);
    expect((await reports.until('FAILED')).error).to.match(/fwUpdateStrategy 3 \(Object 19 binary\) is not supported/);
  });

  describe('software (Object 9)', () => {
    const links = '</3/0>,</9/0>';
    beforeEach(() => {
      device = new FakeDevice({ '/9/0/0': 'app', '/9/0/1': '1.0', '/9/0/7': 0, '/9/0/9': 0 });
    });
    const delivers = (): void => {
      device.onWrite = () => {
        setImmediate(() => {
          device.set('/9/0/7', 1);
          device.set('/9/0/7', 2);
          device.set('/9/0/9', 3);
          device.set('/9/0/7', 3);
        });
      };
      device.onExecute = (call) => {
        if (call.path === '/9/0/4') {
          setImmediate(() => {
            device.set('/9/0/7', 4);
            device.set('/9/0/9', 2);
          });
        }
      };
    };

    it('writes the URI (on the tbfw resource) to /9/0/3, installs on Delivered, ends UPDATED', async () => {
      delivers();
      await ota.attach(connect({ swUpdateStrategy: 2 }, links));
      ota.setTarget('SOFTWARE', SW);
      await reports.until('UPDATED', 'SOFTWARE');
      expect(device.calls.find((c) => c.op === 'write')).to.deep.include({ path: '/9/0/3', value: `coap://10.0.0.1:5685/tbfw/${SW.packageId}` });
      expect(device.ops('execute')).to.deep.equal(['/9/0/4']);
      expect(reports.states('SOFTWARE')).to.deep.equal(['DOWNLOADING', 'VERIFIED', 'DOWNLOADED', 'UPDATING', 'UPDATED']);
    });

    it('pushes the package to /9/0/2 with the binary strategy', async () => {
      await ota.attach(connect({ swUpdateStrategy: 1 }, links));
      ota.setTarget('SOFTWARE', SW);
      await reports.until('DOWNLOADING', 'SOFTWARE');
      expect(device.calls.find((c) => c.op === 'write')).to.deep.include({ path: '/9/0/2', format: ContentFormat.OPAQUE });
    });

    it('uninstalls for update (Execute /9/0/6 with "1") when a package is installed, then downloads', async () => {
      device.values.set('/9/0/7', 4);
      device.onExecute = (call) => {
        if (call.path === '/9/0/6') setImmediate(() => device.set('/9/0/7', 0));
      };
      await ota.attach(connect({ swUpdateStrategy: 2 }, links));
      ota.setTarget('SOFTWARE', SW);
      await reports.until('DOWNLOADING', 'SOFTWARE');
      expect(device.calls.filter((c) => c.op === 'execute' || c.op === 'write').map((c) => [c.op, c.path, c.args])).to.deep.equal([
        ['execute', '/9/0/6', '1'],
        ['write', '/9/0/3', undefined],
      ]);
    });

    it('retries result 58 and FAILS with its text when retries are used up', async () => {
      device.onWrite = () => {
        setImmediate(() => {
          device.set('/9/0/7', 1);
          device.set('/9/0/9', 0);
          device.set('/9/0/9', 58);
        });
      };
      await ota.attach(connect({ swUpdateStrategy: 2 }, links));
      ota.setTarget('SOFTWARE', SW);
      expect((await reports.until('FAILED', 'SOFTWARE')).error).to.equal('Software installation failure (Update Result 58) (gave up after 3 retries)');
      expect(device.ops('write')).to.have.length(4);
    });

    it('does not retry result 53 (integrity)', async () => {
      device.onWrite = () => {
        setImmediate(() => device.set('/9/0/9', 53));
      };
      await ota.attach(connect({ swUpdateStrategy: 2 }, links));
      ota.setTarget('SOFTWARE', SW);
      expect((await reports.until('FAILED', 'SOFTWARE')).error).to.equal('Package integrity check failure (Update Result 53)');
      expect(device.ops('write')).to.have.length(1);
    });
  });
});
