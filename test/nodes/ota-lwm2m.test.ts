import { expect } from 'chai';
import { once } from 'node:events';
import { createSocket } from 'node:dgram';
import { generate, parse, type ParsedPacket } from 'coap-packet';
import otaLwm2m from '../../nodes/ota-lwm2m';
import otaLwm2mEndpoint, { Lwm2mSettingError, resolveLwm2mOptions, type OtaLwm2mEndpointNode } from '../../nodes/ota-lwm2m-endpoint';
import {
  arrivals,
  editorFile,
  hasMessage,
  helper,
  inputsTo,
  sentBy,
  helpSections,
  loadOtaFlow,
  logged,
  nodeOf,
  nodeSpecSetup,
  otaFlow,
  registerCatalogs,
  serverNode,
  statusWhen,
  translate,
  type FlowNode,
} from './flow-helper';

/** A Register from a socket of its own; resolves with the answer. */
async function register(port: number, endpoint: string): Promise<ParsedPacket> {
  const socket = createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
  try {
    const answer = once(socket, 'message');
    const options = [
      { name: 'Uri-Path' as const, value: Buffer.from('rd') },
      ...[`ep=${endpoint}`, 'lt=60', 'lwm2m=1.1'].map((q) => ({ name: 'Uri-Query' as const, value: Buffer.from(q) })),
    ];
    socket.send(generate({ messageId: 9, token: Buffer.from('n1'), confirmable: true, code: '0.02', options, payload: Buffer.from('</3/0>,</5/0>') }), port, '127.0.0.1');
    return parse((await answer)[0] as Buffer);
  } finally {
    socket.close();
  }
}

describe('ota-lwm2m node', function () {
  const dataDir = nodeSpecSetup('ota-lwm2m-node-', ['ota-lwm2m', 'ota-lwm2m-endpoint']);
  const nodes = (): FlowNode[] => [
    { id: 'ep', type: 'ota-lwm2m-endpoint', name: 'lwm2m udp', server: 'srv', port: '0', host: '127.0.0.1', minLifetime: '', maxLifetime: '' },
    { id: 'lwm2m', z: 'tab', type: 'ota-lwm2m', name: 'lwm2m devices', endpoint: 'ep', progress: true, wires: [['states'], ['registrations']] },
    { id: 'states', z: 'tab', type: 'helper' },
    { id: 'registrations', z: 'tab', type: 'helper' },
  ];

  it('listens, is listed as an LWM2M endpoint, and sends a registration out of its second output with the count in its status', async () => {
    await loadOtaFlow([otaLwm2mEndpoint, otaLwm2m], otaFlow(dataDir(), nodes(), ['lwm2m']));
    const registrations = arrivals('registrations');
    const transport = await nodeOf<OtaLwm2mEndpointNode>('ep').transport;
    const port = transport.address?.port as number;
    const engine = await serverNode().engine;
    expect(engine.listEndpoints().filter((e) => e.transport === 'LWM2M')).to.deep.equal([{ transport: 'LWM2M', host: '127.0.0.1', port, connections: 0 }]);
    expect(logged(nodeOf('ep'), 'log')).to.include(`LwM2M server listening on udp 127.0.0.1:${port}`);

    expect((await register(port, 'nobody')).code, 'unknown endpoint').to.equal('4.03');
    const tenantId = await serverNode().tenantId();
    const profile = await engine.profiles.ensureDefault(tenantId);
    const credentialsValue = {
      client: { endpoint: 'meter-1', securityConfigClientMode: 'NO_SEC' },
      bootstrap: { bootstrapServer: { securityMode: 'NO_SEC' }, lwm2mServer: { securityMode: 'NO_SEC' } },
    };
    const device = await engine.devices.saveWithCredentials(
      tenantId,
      { name: 'meter-1', deviceProfileId: { id: profile.id } },
      { credentialsType: 'LWM2M_CREDENTIALS', credentialsId: 'meter-1', credentialsValue },
    );
    expect((await register(port, 'meter-1')).code).to.equal('2.01');
    const { msg } = await registrations.next();
    expect(msg.topic).to.equal('registration');
    expect(msg.payload).to.include({ event: 'registered', endpoint: 'meter-1', deviceId: device.id, lwm2m: '1.1', lifetimeS: 60 });
    await statusWhen(nodeOf('lwm2m'), (s) => s.text === translate('ota-lwm2m.status.registered', { count: 1 }));
  });

  it('sends an assignment event to Catch instead of a notification, and sends nothing', async () => {
    await loadOtaFlow([otaLwm2mEndpoint, otaLwm2m], otaFlow(dataDir(), nodes(), ['lwm2m']));
    const error = await inputsTo('lwm2m').fail({ payload: { deviceId: 'd', type: 'FIRMWARE', packageId: 'p', ts: Date.now() } });
    expect(error.message).to.equal('Error: msg.payload must be a notification from ota-notify');
    expect(sentBy(nodeOf('lwm2m'))).to.deep.equal([]);
  });

  it('takes its settings from the field, settings.js, the environment, then the defaults; bad ones are named', () => {
    expect(resolveLwm2mOptions({}, {}, {})).to.include({ port: 5685, host: '0.0.0.0', minLifetimeS: 10, maxLifetimeS: 2_592_000 });
    expect(resolveLwm2mOptions({}, { otaLwm2mEndpointPort: '15685' }, { OTA_LWM2M_PORT: '25685' }).port).to.equal(15685);
    expect(resolveLwm2mOptions({}, {}, { OTA_LWM2M_PORT: '25685', OTA_LWM2M_HOST: '10.0.0.1', OTA_LWM2M_MIN_LIFETIME_S: '30' })).to.include({
      port: 25685,
      host: '10.0.0.1',
      minLifetimeS: 30,
    });
    expect(
      resolveLwm2mOptions({ port: '0', maxLifetime: '600' }, {}, { OTA_LWM2M_PORT: '25685', OTA_LWM2M_MAX_PUSH_BYTES: '1024', OTA_LWM2M_RESOURCE_URL: 'coap://ota.example:5685' }),
    ).to.include({
      port: 0,
      maxLifetimeS: 600,
      maxPushBytes: 1024,
      resourceUrl: 'coap://ota.example:5685',
    });
    expect(() => resolveLwm2mOptions({ port: '70000' }, {}, {})).to.throw(Lwm2mSettingError, 'bad-port');
    expect(() => resolveLwm2mOptions({ minLifetime: '600', maxLifetime: '60' }, {}, {})).to.throw(Lwm2mSettingError, 'bad-lifetime');
    expect(() => resolveLwm2mOptions({}, {}, { OTA_LWM2M_MAX_REGISTRATIONS: 'lots' })).to.throw(Lwm2mSettingError, 'bad-limit');
    expect(() => resolveLwm2mOptions({}, {}, { OTA_LWM2M_MAX_OBJECT_LINKS: '-1' })).to.throw(Lwm2mSettingError, 'bad-limit');
    expect(resolveLwm2mOptions({}, {}, { OTA_LWM2M_MAX_REGISTRATIONS: '7', OTA_LWM2M_MIN_LIFETIME_S: '1' })).to.include({ maxRegistrations: 7, minLifetimeS: 1 });
  });
});

describe('ota-lwm2m editor files', function () {
  before(() => helper.startServer().then(() => registerCatalogs('ota-lwm2m', 'ota-lwm2m-endpoint')));
  after(() => helper.stopServer());

  for (const [type, fields, prefix] of [
    ['ota-lwm2m', ['name', 'endpoint', 'progress'], 'node-input'],
    ['ota-lwm2m-endpoint', ['name', 'server', 'port', 'host', 'minLifetime', 'maxLifetime'], 'node-config-input'],
  ] as const) {
    const { html, keys } = editorFile(type);

    it(`${type}: has a dialog input for every field, and every catalog key it names`, () => {
      for (const field of fields) expect(html, field).to.include(`id="${prefix}-${field}"`);
      expect(keys.length).to.be.greaterThan(3);
      expect(keys.filter((k) => !hasMessage(k))).to.deep.equal([]);
    });

    it(`${type}: documents itself in the sections of the help style guide`, () => {
      expect(helpSections(html, type)).to.deep.equal(['Inputs', 'Outputs', 'Details', 'References']);
      expect(html).to.not.match(/<(b|i|strong)>/);
    });
  }
});
