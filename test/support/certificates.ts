import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Files of a test PKI, made with openssl in a temp directory. */
export interface TestPki {
  dir: string;
  /** The CA that signs the server's and the devices' certificates. */
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  /** `<dir>/<name>.pem` and `<dir>/<name>.key` of each device asked for. */
  device(name: string): { certFile: string; keyFile: string };
}

/**
 * A CA, a server certificate for 127.0.0.1 and localhost, and a certificate per device, all EC
 * P-256 signed by the CA, valid one day. Files are named as the simulator's --cert-dir wants them.
 */
export async function makePki(dir: string, devices: readonly string[]): Promise<TestPki> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await openssl('req', '-x509', ...newKey, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=Test OTA CA');
  const signed = async (name: string, subject: string, ...extra: string[]): Promise<void> => {
    await openssl('req', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    await openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.pem`, '-days', '1', ...extra);
  };
  await writeFile(path.join(dir, 'server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  await signed('server', '/CN=localhost', '-extfile', 'server.ext');
  for (const name of devices) await signed(name, `/CN=${name}`);
  return {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    serverCertFile: path.join(dir, 'server.pem'),
    serverKeyFile: path.join(dir, 'server.key'),
    device: (name) => ({ certFile: path.join(dir, `${name}.pem`), keyFile: path.join(dir, `${name}.key`) }),
  };
}
