import type { Device, DeviceRepository } from '../../store/devices';
import { sha3Hash, sha3HashOf } from '../../devices/credentials-hash';
import { readMqttBasic } from '../../devices/mqtt-basic-credentials';
import { PasswordVerifier } from '../../devices/password-hash';
import { certificateCredentialsId } from '../../devices/x509-credentials';

/** What a CONNECT presented: its fields, and the client certificate of a TLS connection (DER). */
export interface ConnectCredentials {
  clientId: string;
  username: string | undefined;
  password: Buffer | undefined;
  certificate?: Buffer | null;
}

type Validation = 'valid' | 'hash-mismatch' | 'password-mismatch';

/**
 * Who a CONNECT is, as ThingsBoard decides it (reference §3.1, `MqttTransportHandler.processConnect`
 * and `DefaultTransportApiService.validateCredentials`):
 * - a client certificate (TLS): the X509_CERTIFICATE device whose id is the certificate's SHA3;
 * - no user name: the MQTT_BASIC device whose id is SHA3(clientId), fields matching;
 * - else the MQTT_BASIC device of SHA3(clientId|userName); a wrong password there is final, any
 *   other mismatch (or none found) falls back to the user name as a credentials id: an access
 *   token (any client id and password), or MQTT_BASIC credentials made of a user name alone.
 * Null: refused.
 */
export class MqttAuthenticator {
  constructor(
    private readonly devices: Pick<DeviceRepository, 'findByCredentialsId'>,
    private readonly passwords: PasswordVerifier = new PasswordVerifier(),
  ) {}

  async authenticate(c: ConnectCredentials): Promise<Device | null> {
    if (c.certificate) {
      const device = await this.devices.findByCredentialsId(certificateCredentialsId(c.certificate));
      return device?.credentialsType === 'X509_CERTIFICATE' ? device : null;
    }
    const password = c.password?.toString('utf8');
    if (!c.username) {
      const device = await this.basic(sha3Hash(c.clientId));
      return device && (await this.validate(device, c.clientId, c.username, password)) === 'valid' ? device : null;
    }
    const device = await this.basic(sha3HashOf('|', c.clientId, c.username));
    if (device) {
      const result = await this.validate(device, c.clientId, c.username, password);
      if (result === 'valid') return device;
      if (result === 'password-mismatch') return null;
    }
    return this.byUserName(c.clientId, c.username, password);
  }

  private async byUserName(clientId: string, username: string, password: string | undefined): Promise<Device | null> {
    const device = await this.devices.findByCredentialsId(username);
    if (!device) return null;
    const type = device.credentialsType ?? 'ACCESS_TOKEN';
    if (type === 'ACCESS_TOKEN') return device;
    if (type === 'MQTT_BASIC') return (await this.validate(device, clientId, username, password)) === 'valid' ? device : null;
    return null;
  }

  private async basic(credentialsId: string): Promise<Device | null> {
    const device = await this.devices.findByCredentialsId(credentialsId);
    return device?.credentialsType === 'MQTT_BASIC' ? device : null;
  }

  /** `validateMqttCredentials`: stored fields that are set must match; a stored password must too. */
  private async validate(device: Device, clientId: string, username: string | undefined, password: string | undefined): Promise<Validation> {
    const stored = readMqttBasic(device.credentialsValue);
    if (!stored) return 'hash-mismatch';
    if (stored.clientId && stored.clientId !== clientId) return 'hash-mismatch';
    if (stored.userName && stored.userName !== username) return 'hash-mismatch';
    if (!stored.password) return 'valid';
    if (!password) return 'password-mismatch';
    return (await this.passwords.verify(stored.password, password)) ? 'valid' : 'password-mismatch';
  }
}
