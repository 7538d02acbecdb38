import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { issueLeaf, makeCa } from '../test/harness/pki.ts';
import { X509Certificate } from 'node:crypto';
import { caInitrd, checkCaPem, newcArchive, opensslSubjectHash } from './ca-initrd.ts';
import { withInitrdArg } from './render.ts';

const dir = mkdtempSync(join(tmpdir(), 'ca-initrd-'));
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});
const ca = makeCa(join(dir, 'pki'), '/CN=ca-initrd-test-ca');
const leaf = issueLeaf(join(dir, 'pki'), 'leaf', '/CN=localhost', true);

describe('the CA initrd', () => {
  it('is a gzipped newc archive GNU cpio unpacks to etc/crowbar/ca.pem, mode 0644', () => {
    const pem = readFileSync(ca.crt, 'utf8');
    const out = join(dir, 'root');
    execFileSync('mkdir', ['-p', out]);
    execFileSync('cpio', ['-i', '-d', '--quiet', '--no-absolute-filenames'], {
      cwd: out,
      input: gunzipSync(caInitrd(pem)),
    });
    const f = join(out, 'etc', 'crowbar', 'ca.pem');
    expect(readFileSync(f, 'utf8').trim()).toBe(pem.trim());
    expect(statSync(f).mode & 0o777).toBe(0o644);
    // And in OpenSSL's hashed directory, where GNU wget (d-i's) finds it with no option at all:
    // openssl verify -CApath takes the same lookup.
    const hash = execFileSync('openssl', ['x509', '-subject_hash', '-noout', '-in', ca.crt])
      .toString()
      .trim();
    const hashed = join(out, 'etc', 'ssl', 'certs', `${hash}.0`);
    expect(readFileSync(hashed, 'utf8').trim()).toBe(pem.trim());
    execFileSync('openssl', [
      'verify',
      '-no-CAfile',
      '-CApath',
      join(out, 'etc', 'ssl', 'certs'),
      leaf.crt,
    ]);
    // The kernel checks the same framing: every header and payload on a 4-byte boundary.
    const listing = execFileSync('cpio', ['-t', '-v', '--quiet'], {
      input: gunzipSync(caInitrd(pem)),
    });
    expect(listing.toString()).toMatch(/etc\/crowbar\/ca\.pem/);
  });
  it('names each CA by the subject hash openssl computes, canonical form and all', () => {
    const subjects = [
      '/CN=ca-initrd-test-ca',
      '/C=DE/O=Crowbar   Test/OU=Lab/CN=  Mixed CASE   Ca  ',
      '/CN=a+O=B two/L=Zürich',
      '/DC=example/DC=com/CN=x',
    ];
    subjects.forEach((subj, i) => {
      const c = makeCa(join(dir, `hash${String(i)}`), subj);
      const want = execFileSync('openssl', ['x509', '-subject_hash', '-noout', '-in', c.crt])
        .toString()
        .trim();
      expect(opensslSubjectHash(new X509Certificate(readFileSync(c.crt)).raw), subj).toBe(want);
    });
    // Eight openssl processes: seconds on a loaded machine.
  }, 60_000);
  it('pads names and data of any length to 4 bytes, and ends with the trailer', () => {
    for (let n = 0; n < 8; n++) {
      const a = newcArchive([{ name: 'x'.repeat(n + 1), mode: 0o100600, data: Buffer.alloc(n) }]);
      expect(a.length % 4).toBe(0);
      const listing = execFileSync('cpio', ['-t', '--quiet'], { input: a }).toString();
      expect(listing.trim()).toBe('x'.repeat(n + 1));
    }
  });
  it('refuses what is not a CA: a leaf, a key, nothing', () => {
    expect(() => checkCaPem(readFileSync(leaf.crt, 'utf8'))).toThrow(/not a CA/);
    expect(() => checkCaPem(readFileSync(leaf.key, 'utf8'))).toThrow(/no PEM certificate/);
    expect(() => checkCaPem('')).toThrow(/no PEM certificate/);
    expect(checkCaPem(readFileSync(ca.crt, 'utf8'))).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });
  it('is named next to the first initrd= argument, before d-i’s ---', () => {
    expect(withInitrdArg('initrd=initrd.gz console=ttyS0 --- quiet', 'crowbar-ca.cpio')).toBe(
      'initrd=initrd.gz initrd=crowbar-ca.cpio console=ttyS0 --- quiet',
    );
    expect(withInitrdArg('a initrd=x b initrd=y', 'c')).toBe('a initrd=x initrd=c b initrd=y');
    expect(withInitrdArg('console=ttyS0', 'c')).toBe('console=ttyS0');
    expect(withInitrdArg('noinitrd=1 x', 'c')).toBe('noinitrd=1 x');
  });
});
