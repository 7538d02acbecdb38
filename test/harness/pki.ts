/** A throwaway certificate authority for the local control plane (envtest's recipe, with openssl). */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface Pki {
  dir: string;
  caCrt: string;
  caKey: string;
  apiserverCrt: string;
  apiserverKey: string;
  adminCrt: string;
  adminKey: string;
  saKey: string;
  saPub: string;
}

function openssl(cwd: string, args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const SERVER_EXT =
  'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n';
const CLIENT_EXT =
  'extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\n';

/** Issues a leaf certificate signed by the CA in `dir`. */
export function issueLeaf(
  dir: string,
  name: string,
  subject: string,
  server: boolean,
  /** More addresses the server certificate is valid for (beside loopback and localhost). */
  extraIps: string[] = [],
): { crt: string; key: string } {
  const ext = server
    ? SERVER_EXT.replace(
        'DNS:localhost',
        ['DNS:localhost', ...extraIps.map((a) => `IP:${a}`)].join(','),
      )
    : CLIENT_EXT;
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '30',
    '-out',
    `${name}.crt`,
    '-extfile',
    `${name}.ext`,
  ]);
  return { crt: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
}

/** A self-signed CA (`ca.crt`, `ca.key`) in `dir`, for {@link issueLeaf} to sign with. */
export function makeCa(dir: string, subject: string): { crt: string; key: string } {
  mkdirSync(dir, { recursive: true });
  openssl(dir, [
    'req',
    '-x509',
    ...EC,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '30',
    '-subj',
    subject,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign,digitalSignature',
  ]);
  return { crt: join(dir, 'ca.crt'), key: join(dir, 'ca.key') };
}

export function makePki(dir: string): Pki {
  makeCa(dir, '/CN=crowbar-test-ca');
  const api = issueLeaf(dir, 'apiserver', '/CN=localhost', true);
  const admin = issueLeaf(dir, 'admin', '/O=system:masters/CN=admin', false);
  openssl(dir, [
    'genpkey',
    '-algorithm',
    'EC',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-out',
    'sa.key',
  ]);
  openssl(dir, ['pkey', '-in', 'sa.key', '-pubout', '-out', 'sa.pub']);
  return {
    dir,
    caCrt: join(dir, 'ca.crt'),
    caKey: join(dir, 'ca.key'),
    apiserverCrt: api.crt,
    apiserverKey: api.key,
    adminCrt: admin.crt,
    adminKey: admin.key,
    saKey: join(dir, 'sa.key'),
    saPub: join(dir, 'sa.pub'),
  };
}
