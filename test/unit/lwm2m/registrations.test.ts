import { expect } from 'chai';
import { LinkFormatError, parseLinkFormat } from '../../../server/transports/lwm2m/link-format';
import { formatPath, Lwm2mPathError, parsePath } from '../../../server/transports/lwm2m/paths';
import { hasObject, parseObjectLinks } from '../../../server/transports/lwm2m/object-links';
import { REGISTRATION_DEFAULTS } from '../../../server/transports/lwm2m/registration-limits';
import { RegistrationError, Registrations, type Registration, type RemovalReason } from '../../../server/transports/lwm2m/registrations';
import type { Timers } from '../../../server/timers';

/** Timers a test moves by hand. */
class ManualTimers implements Timers {
  t = 1_000_000;
  private pending = new Map<number, { at: number; fn: () => void }>();
  private seq = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.pending.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  advance(ms: number): void {
    this.t += ms;
    for (const [id, p] of [...this.pending].sort((a, b) => a[1].at - b[1].at)) {
      if (p.at <= this.t && this.pending.delete(id)) p.fn();
    }
  }
}

const peer = { address: '127.0.0.1', port: 56830 };

describe('CoRE link format (RFC 6690)', () => {
  it('parses links with token, quoted and empty parameters', () => {
    expect(parseLinkFormat('</>;rt="oma.lwm2m";ct=110,</3/0>;obs,</5>;ver=1.0')).to.deep.equal([
      {
        uri: '/',
        params: [
          { name: 'rt', value: 'oma.lwm2m' },
          { name: 'ct', value: '110' },
        ],
      },
      { uri: '/3/0', params: [{ name: 'obs', value: null }] },
      { uri: '/5', params: [{ name: 'ver', value: '1.0' }] },
    ]);
  });

  it('reads an escaped quote inside a quoted value', () => {
    expect(parseLinkFormat('</a>;title="say \\"hi\\""')[0]!.params[0]).to.deep.equal({ name: 'title', value: 'say "hi"' });
  });

  for (const [payload, where] of [
    ['</3/0', /"<" without its ">"/],
    ['/3/0', /expected "<"/],
    ['</3/0>,', /expected "<" to open a link, found the end/],
    ['</3/0> </5/0>', /expected "," or ";"/],
    ['</3/0>;=1', /expected a parameter name/],
    ['</>;rt="oma.lwm2m', /without its closing quote/],
    ['</3/0>;ver=', /expected a value after "="/],
  ] as const) {
    it(`refuses ${JSON.stringify(payload)}`, () => {
      expect(() => parseLinkFormat(payload)).to.throw(LinkFormatError, where);
    });
  }
});

describe('LwM2M registration objects', () => {
  const limits = { maxLinks: 100 };

  it('reads Objects, Instances, versions and the content formats of the root link', () => {
    const objects = parseObjectLinks('</>;rt="oma.lwm2m";ct="60 110 112 11543",</1/0>,</3>;ver=1.1,</3/0>,</5/0>,</9/1>,</9/0>', limits);
    expect(objects.rootPath).to.equal('/');
    expect(objects.contentFormats).to.deep.equal([60, 110, 112, 11543]);
    expect(objects.objects).to.deep.equal([
      { objectId: 1, version: null, instanceIds: [0] },
      { objectId: 3, version: '1.1', instanceIds: [0] },
      { objectId: 5, version: null, instanceIds: [0] },
      { objectId: 9, version: null, instanceIds: [0, 1] },
    ]);
    expect(hasObject(objects, 5, 0)).to.equal(true);
    expect(hasObject(objects, 9)).to.equal(true);
    expect(hasObject(objects, 19)).to.equal(false);
  });

  it('reads Objects under an alternate root path', () => {
    const objects = parseObjectLinks('</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>,</lwm2m/5/0>', limits);
    expect(objects.rootPath).to.equal('/lwm2m/');
    expect(objects.objects.map((o) => o.objectId)).to.deep.equal([3, 5]);
  });

  for (const [payload, why] of [
    ['</3/0/1>', /not an Object or Object Instance/],
    ['</3/x>', /not an Object or Object Instance/],
    ['</65535/0>', /ids 0..65534/],
    ['</3>;ver=1', /expected "major.minor"/],
    ['</>;rt="oma.lwm2m";ct="110 json"', /not a list of content-format numbers/],
    ['</lwm2m>;rt="oma.lwm2m",</3/0>', /not under the root path/],
  ] as const) {
    it(`refuses ${payload}`, () => {
      expect(() => parseObjectLinks(payload, limits)).to.throw(LinkFormatError, why);
    });
  }

  it('refuses more links than allowed', () => {
    expect(() => parseObjectLinks('</1/0>,</3/0>,</5/0>', { maxLinks: 2 })).to.throw(LinkFormatError, /3 links, more than the 2 allowed/);
  });
});

describe('LwM2M registrations', () => {
  let timers: ManualTimers;
  let removed: Array<[string, RemovalReason]>;
  let regs: Registrations;
  const make = (limits = REGISTRATION_DEFAULTS) => new Registrations(limits, timers, { removed: (r: Registration, why) => removed.push([r.endpoint, why]) });

  beforeEach(() => {
    timers = new ManualTimers();
    removed = [];
    regs = make();
  });

  it('registers with ep, lt, lwm2m and b and finds the client by id and endpoint', () => {
    const r = regs.register(['ep=dev-1', 'lt=300', 'lwm2m=1.1', 'b=U'], '</1/0>,</3/0>,</5/0>', peer);
    expect(r).to.include({ endpoint: 'dev-1', lifetimeS: 300, version: '1.1', binding: 'U', queueMode: false });
    expect(r.id).to.match(/^[A-Za-z0-9_-]{11}$/);
    expect(regs.get(r.id)).to.equal(r);
    expect(regs.findByEndpoint('dev-1')).to.equal(r);
  });

  it('takes the defaults of §6.2.1 when lt, lwm2m and b are absent', () => {
    expect(regs.register(['ep=dev-1'], '</3/0>', peer)).to.include({ lifetimeS: 86400, version: '1.0', binding: 'U' });
  });

  it('expires a registration silent past its lifetime, not one that updated', () => {
    const a = regs.register(['ep=a', 'lt=60'], '</3/0>', peer);
    regs.register(['ep=b', 'lt=60'], '</3/0>', peer);
    timers.advance(59_000);
    regs.update(a.id, [], null, peer);
    timers.advance(1_000);
    expect(removed).to.deep.equal([['b', 'expired']]);
    expect(regs.findByEndpoint('b')).to.equal(undefined);
    timers.advance(59_000);
    expect(removed).to.deep.equal([
      ['b', 'expired'],
      ['a', 'expired'],
    ]);
    expect(regs.size).to.equal(0);
  });

  it('updates lifetime, binding and objects, and keeps the rest', () => {
    const r = regs.register(['ep=a', 'lt=60', 'lwm2m=1.1'], '</3/0>', peer);
    const u = regs.update(r.id, ['lt=120', 'b=UQ'], '</3/0>,</5/0>', { address: '127.0.0.1', port: 1 });
    expect(u).to.include({ id: r.id, lifetimeS: 120, binding: 'UQ', queueMode: true, version: '1.1' });
    expect(u.objects.objects.map((o) => o.objectId)).to.deep.equal([3, 5]);
    expect(u.peer.port).to.equal(1);
  });

  it('answers 4.04 for an update or de-register of an unknown id', () => {
    expect(() => regs.update('nope', [], null, peer))
      .to.throw(RegistrationError, /No registration \/rd\/nope/)
      .with.property('code', '4.04');
    expect(() => regs.deregister('nope'))
      .to.throw(RegistrationError)
      .with.property('code', '4.04');
  });

  it('de-registers and tells why', () => {
    const r = regs.register(['ep=a'], '</3/0>', peer);
    regs.deregister(r.id);
    expect(removed).to.deep.equal([['a', 'deregistered']]);
    timers.advance(86_400_000);
    expect(removed).to.have.length(1);
  });

  it('replaces the registration of an endpoint that registers again', () => {
    const first = regs.register(['ep=a'], '</3/0>', peer);
    const second = regs.register(['ep=a'], '</3/0>,</5/0>', peer);
    expect(second.id).to.not.equal(first.id);
    expect(removed).to.deep.equal([['a', 'replaced']]);
    expect(regs.get(first.id)).to.equal(undefined);
    expect(regs.size).to.equal(1);
  });

  for (const [queries, code, why] of [
    [['lt=60'], '4.00', /needs the endpoint name/],
    [['ep='], '4.00', /needs the endpoint name/],
    [['ep=a', 'lt=abc'], '4.00', /lt=abc is not a lifetime/],
    [['ep=a', 'lt=5'], '4.00', /outside the lifetimes this server accepts \(10\.\.2592000 s\)/],
    [['ep=a', 'lwm2m=2.0'], '4.12', /LwM2M version 2.0 is not supported/],
    [['ep=a', 'b=X'], '4.00', /not a binding mode/],
    [['ep=a', 'ep=b'], '4.00', /given twice/],
  ] as const) {
    it(`answers ${code} to ${queries.join('&')} and stores nothing`, () => {
      expect(() => regs.register(queries, '</3/0>', peer))
        .to.throw(RegistrationError, why)
        .with.property('code', code);
      expect(regs.size).to.equal(0);
    });
  }

  it('answers 4.00 to a malformed payload and stores nothing', () => {
    expect(() => regs.register(['ep=a'], '</3/0>;', peer))
      .to.throw(RegistrationError, /Malformed link format at character 7/)
      .with.property('code', '4.00');
    expect(regs.size).to.equal(0);
  });

  it('refuses an update with a Register-only parameter, changing nothing', () => {
    const r = regs.register(['ep=a', 'lt=60'], '</3/0>', peer);
    expect(() => regs.update(r.id, ['lt=90', 'ep=b'], null, peer)).to.throw(RegistrationError, /Update does not take "ep"/);
    expect(regs.get(r.id)?.lifetimeS).to.equal(60);
  });

  it('refuses registrations beyond the cap (4.03) but lets a registered endpoint register again', () => {
    regs = make({ ...REGISTRATION_DEFAULTS, maxRegistrations: 2 });
    regs.register(['ep=a'], '</3/0>', peer);
    regs.register(['ep=b'], '</3/0>', peer);
    expect(() => regs.register(['ep=c'], '</3/0>', peer))
      .to.throw(RegistrationError, /holds 2 registrations, its maximum \(OTA_LWM2M_MAX_REGISTRATIONS\)/)
      .with.property('code', '4.03');
    expect(regs.register(['ep=a'], '</3/0>', peer).endpoint).to.equal('a');
    expect(regs.size).to.equal(2);
  });
});

describe('LwM2M paths', () => {
  it('parses 1 to 4 ids and formats them back', () => {
    for (const p of ['/5', '/5/0', '/5/0/3', '/3/0/6/1']) expect(formatPath(parsePath(p))).to.equal(p);
    expect(parsePath('/5/0/3')).to.deep.equal({ objectId: 5, instanceId: 0, resourceId: 3 });
  });

  for (const bad of ['5/0/3', '/', '/5//3', '/5/0/3/1/2', '/05', '/65535', '/5/a', '/-1']) {
    it(`refuses ${JSON.stringify(bad)}`, () => {
      expect(() => parsePath(bad)).to.throw(Lwm2mPathError);
    });
  }
});
