/**
 * MQTT CONNECT authentication with basic credentials (server/transports/mqtt/authenticate.ts):
 * BENCH_MQTT_AUTH_DEVICES devices (default 200) connect at once for the first time (every
 * password checked with scrypt on the libuv pool), then reconnect BENCH_MQTT_AUTH_ROUNDS times
 * (default 20; verified passwords are remembered), then reconnect with the cache turned off.
 *
 * Reference, in the same run: the same devices authenticating with access tokens through the same
 * authenticator (two lookups, no hashing). Devices are looked up in a Map, so the numbers are the
 * authentication's own cost, not the store's.
 */
import { PasswordVerifier } from '../server/devices/password-hash';
import { mqttBasicCredentials } from '../server/devices/mqtt-basic-credentials';
import type { Device } from '../server/store/devices';
import { MqttAuthenticator, type ConnectCredentials } from '../server/transports/mqtt/authenticate';
import { positiveInt, printTable, timed, type Benchmark } from './lib';

export const mqttAuth: Benchmark = { name: 'MQTT authentication (basic credentials vs access tokens)', run };

const device = (i: number, type: Device['credentialsType'], id: string, value: string | null): Device =>
  ({ id: `d-${i}`, tenantId: 't', name: `dev-${i}`, credentialsType: type, accessToken: id, credentialsValue: value }) as unknown as Device;

async function run(): Promise<void> {
  const n = positiveInt('BENCH_MQTT_AUTH_DEVICES', 200);
  const rounds = positiveInt('BENCH_MQTT_AUTH_ROUNDS', 20);
  const byId = new Map<string, Device>();
  const basic: ConnectCredentials[] = [];
  const tokens: ConnectCredentials[] = [];
  for (let i = 0; i < n; i++) {
    const c = await mqttBasicCredentials({ clientId: `c-${i}`, userName: `u-${i}`, password: `pw-${i}` });
    byId.set(c.credentialsId, device(i, 'MQTT_BASIC', c.credentialsId, c.credentialsValue));
    byId.set(`token-${i}`, device(n + i, 'ACCESS_TOKEN', `token-${i}`, null));
    basic.push({ clientId: `c-${i}`, username: `u-${i}`, password: Buffer.from(`pw-${i}`) });
    tokens.push({ clientId: `c-${i}`, username: `token-${i}`, password: undefined });
  }
  const repo = { findByCredentialsId: async (id: string) => byId.get(id) ?? null };
  const connectAll = async (auth: MqttAuthenticator, list: ConnectCredentials[], times: number): Promise<number> => {
    const { value, seconds } = await timed(async () => {
      let ok = 0;
      for (let r = 0; r < times; r++) ok += (await Promise.all(list.map((c) => auth.authenticate(c)))).filter(Boolean).length;
      return ok;
    });
    if (value !== list.length * times) throw new Error(`only ${value} of ${list.length * times} authenticated`);
    return seconds / (list.length * times);
  };

  const cached = new MqttAuthenticator(repo, new PasswordVerifier());
  const cold = await connectAll(cached, basic, 1);
  const warm = await connectAll(cached, basic, rounds);
  const uncached = await connectAll(new MqttAuthenticator(repo, new PasswordVerifier(0)), basic, 1);
  const reference = await connectAll(new MqttAuthenticator(repo), tokens, rounds);

  const us = (s: number) => `${(s * 1e6).toFixed(1)} µs`;
  const ratio = (s: number) => `${(s / reference).toFixed(1)}x`;
  printTable(
    ['case', 'per CONNECT', 'vs token (reference)'],
    [
      [`basic, first connect (${n} at once, scrypt)`, us(cold), ratio(cold)],
      [`basic, reconnect (cached, ${rounds} rounds)`, us(warm), ratio(warm)],
      ['basic, reconnect with the cache off', us(uncached), ratio(uncached)],
      ['reference: access token', us(reference), '1.0x'],
    ],
  );
}
