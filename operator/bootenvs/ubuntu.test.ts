/**
 * The ubuntu-24.04-install BootEnv rendered for nodes by the boot sidecar's renderer: its
 * user-data validates against subiquity's published autoinstall schema (ajv; the schema is read
 * from ../shared/reference/ubuntu at test time, never copied) and against Debian's
 * `cloud-init schema --config-file` (the whole user-data, and the installed system's
 * `user-data` section on its own); the kernel line carries `autoinstall ds=nocloud;s=<seed>`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import fc from 'fast-check';
import yaml from 'js-yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { ipxeScript, nodeFile, type RenderVars } from '../../dhcp-sidecar/render.ts';
import { UBUNTU_2404_INSTALL, ubuntuInstallBootEnv, type UbuntuInstallOptions } from './ubuntu.ts';

const SCHEMA = join(
  import.meta.dirname,
  '..',
  '..',
  '..',
  'shared',
  'reference',
  'ubuntu',
  'autoinstall-schema.json',
);
const KEY =
  'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx6cmG1P5m3Q6mSx4lJ8o0S3Wv7e1cZ8Y8y2b3mXq8B crowbar-operator';
const OPTS: UbuntuInstallOptions = {
  sshAuthorizedKeys: [KEY],
  lateCommands: [
    "curl -fsS -X POST '{{http}}/install-done/{{mac}}'",
    ['sh', '-c', 'echo done'].join(' '),
  ],
  extraKernelArgs: 'console=ttyS0,115200',
};
const VARS: RenderVars = {
  name: 'node7.rack2.example.com',
  mac: '52:54:00:12:34:56',
  address: '192.168.124.57',
  server: '192.168.124.10',
  http: 'http://192.168.124.10:8080',
  bootEnv: UBUNTU_2404_INSTALL,
};

const validate = new Ajv({ allErrors: true, strict: false }).compile(
  JSON.parse(readFileSync(SCHEMA, 'utf8')) as object,
);
const tmp = mkdtempSync(join(tmpdir(), 'pow-ubuntu-'));
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function cloudInitSchema(text: string): Promise<{ ok: boolean; out: string }> {
  const f = join(tmp, `ud-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return new Promise((resolve) => {
    execFile('cloud-init', ['schema', '--config-file', f], { timeout: 60_000 }, (err, so, se) => {
      resolve({ ok: err === null, out: `${so}${se}` });
    });
  });
}

function render(v: RenderVars, o: UbuntuInstallOptions = OPTS) {
  const env = ubuntuInstallBootEnv(o);
  const userData = nodeFile(env, 'user-data', v);
  const metaData = nodeFile(env, 'meta-data', v);
  if (userData === undefined || metaData === undefined) throw new Error('missing node files');
  return { env, userData, metaData };
}

describe('ubuntu-24.04-install BootEnv', () => {
  it('boots casper with autoinstall and the per-node NoCloud seed', () => {
    const { env } = render(VARS);
    const script = ipxeScript(env, VARS);
    expect(script).toContain(
      'kernel http://192.168.124.10:8080/files/ubuntu-24.04/casper/vmlinuz initrd=initrd ip=dhcp url=http://192.168.124.10:8080/files/ubuntu-24.04/ubuntu-24.04-live-server-amd64.iso autoinstall ds=nocloud;s=http://192.168.124.10:8080/nodes/52:54:00:12:34:56/ cloud-config-url=/dev/null console=ttyS0,115200\n',
    );
    expect(script).toContain(
      'initrd http://192.168.124.10:8080/files/ubuntu-24.04/casper/initrd\n',
    );
  });

  it('takes kernel, initrd and ISO from a site mirror', () => {
    const env = ubuntuInstallBootEnv({
      ...OPTS,
      kernel: 'https://mirror.example.com/ubuntu/casper/vmlinuz',
      initrd: 'https://mirror.example.com/ubuntu/casper/initrd',
      isoUrl: 'https://mirror.example.com/ubuntu/noble.iso',
    });
    const script = ipxeScript(env, VARS);
    expect(script).toContain('kernel https://mirror.example.com/ubuntu/casper/vmlinuz ');
    expect(script).toContain('url=https://mirror.example.com/ubuntu/noble.iso ');
    expect(script).toContain('initrd https://mirror.example.com/ubuntu/casper/initrd');
  });

  it("renders user-data that subiquity's schema accepts, per node", () => {
    const { userData, metaData } = render(VARS);
    expect(userData.startsWith('#cloud-config\n')).toBe(true);
    const doc = yaml.load(userData) as { autoinstall: Record<string, unknown> };
    const ok = validate(doc.autoinstall);
    expect(validate.errors ?? []).toEqual([]);
    expect(ok).toBe(true);
    expect(doc.autoinstall['user-data']).toMatchObject({ fqdn: VARS.name });
    expect(doc.autoinstall['network']).toMatchObject({
      ethernets: { boot: { match: { macaddress: VARS.mac } } },
    });
    const late = doc.autoinstall['late-commands'] as string[];
    expect(late).toContain(`echo '${KEY}' >> /target/root/.ssh/authorized_keys`);
    expect(late).toContain(
      `curl -fsS -X POST 'http://192.168.124.10:8080/install-done/${VARS.mac}'`,
    );
    expect(yaml.load(metaData)).toEqual({
      'instance-id': `crowbar-${VARS.name}-${UBUNTU_2404_INSTALL}`,
      'local-hostname': VARS.name,
    });
  });

  it('the schema check can fail: a document subiquity refuses is refused', () => {
    const { userData } = render(VARS);
    const doc = yaml.load(userData) as { autoinstall: Record<string, unknown> };
    expect(validate({ ...doc.autoinstall, version: 2 })).toBe(false);
    expect(validate({ ...doc.autoinstall, identity: { username: 'x' } })).toBe(false);
  });

  it("passes Debian's cloud-init schema, and so does the installed system's user-data", async () => {
    const { userData } = render(VARS);
    const all = await cloudInitSchema(userData);
    expect(all.out).toMatch(/Valid cloud-config/);
    expect(all.ok).toBe(true);
    const doc = yaml.load(userData) as { autoinstall: { 'user-data': object } };
    const target = await cloudInitSchema(
      `#cloud-config\n${yaml.dump(doc.autoinstall['user-data'])}`,
    );
    expect(target.out).toMatch(/Valid cloud-config/);
    expect(target.ok).toBe(true);
    // And the check can fail.
    const bad = await cloudInitSchema(`${userData}runcmd: 5\n`);
    expect(bad.ok).toBe(false);
  }, 120_000);

  it('stays valid for any node name and MAC', () => {
    const label = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?$/);
    fc.assert(
      fc.property(
        fc.array(label, { minLength: 3, maxLength: 5 }),
        fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 }),
        (labels, bytes) => {
          const v = {
            ...VARS,
            name: labels.join('.'),
            mac: bytes.map((b) => b.toString(16).padStart(2, '0')).join(':'),
          };
          const doc = yaml.load(render(v).userData) as { autoinstall: Record<string, unknown> };
          return (
            validate(doc.autoinstall) &&
            (doc.autoinstall['user-data'] as { fqdn: string }).fqdn === v.name
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a key that is not an OpenSSH public key', () => {
    expect(() =>
      ubuntuInstallBootEnv({ sshAuthorizedKeys: ["ssh-ed25519 AAAA x'; rm -rf /"] }),
    ).toThrow(/not an OpenSSH public key/);
  });
});
