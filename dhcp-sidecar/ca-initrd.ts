/**
 * The node API's CA as an initrd (pure): a gzipped newc cpio archive holding /etc/crowbar/ca.pem,
 * which the boot sidecar serves next to every netbooted kernel so the discovery image, installers
 * and the installed system verify the node API (ADR 0019). The kernel unpacks every initrd it is
 * given over the same root in order (Documentation/driver-api/early-userspace/buffer-format.rst),
 * so this one adds the file to whatever image comes before it.
 *
 * Each CA is also put into OpenSSL's hashed certificate directory, /etc/ssl/certs/<hash>.0 (what
 * c_rehash and update-ca-certificates make): Debian's installer fetches its preseed with GNU wget,
 * which trusts OpenSSL's default paths only and reads no SSL_CERT_FILE from anyone (ADR 0024). A
 * new name beside the image's own certificates: nothing of the image is replaced.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { gzipSync } from 'node:zlib';

/** Where the CA lands in the booted system. */
export const CA_PATH = 'etc/crowbar/ca.pem';
/** Its path on the boot HTTP server; iPXE names the image by the last segment. */
export const CA_INITRD_PATH = '/ca/crowbar-ca.cpio.gz';
export const CA_INITRD_NAME = 'crowbar-ca.cpio.gz';

export interface CpioEntry {
  name: string;
  /** File type and permission bits, e.g. 0o100644 or 0o040755. */
  mode: number;
  data?: Buffer;
}

const pad4 = (n: number): number => (4 - (n % 4)) % 4;
const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

/** A newc ("070701") archive of `entries`, ending with the TRAILER!!! entry. */
export function newcArchive(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const all: CpioEntry[] = [...entries, { name: 'TRAILER!!!', mode: 0 }];
  for (const e of all) {
    const data = e.data ?? Buffer.alloc(0);
    const name = Buffer.from(`${e.name}\0`);
    const isDir = (e.mode & 0o170000) === 0o040000;
    const fields = [
      e.name === 'TRAILER!!!' ? 0 : ino++,
      e.mode,
      0, // uid
      0, // gid
      isDir ? 2 : 1, // nlink
      0, // mtime: the same CA gives the same bytes
      data.length,
      0,
      0,
      0,
      0,
      name.length,
      0, // check: only for the "070702" format
    ];
    const header = Buffer.from(`070701${fields.map(hex8).join('')}`, 'ascii');
    parts.push(header, name, Buffer.alloc(pad4(header.length + name.length)));
    parts.push(data, Buffer.alloc(pad4(data.length)));
  }
  return Buffer.concat(parts);
}

/**
 * Checks that `pem` holds CA certificates (at least one, each one a CA) and returns them
 * normalised; throws with what is wrong otherwise, so a sidecar given a leaf or a key fails at
 * start rather than serving machines an anchor that verifies nothing.
 */
export function checkCaPem(pem: string): string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('holds no PEM certificate');
  const out: string[] = [];
  for (const b of blocks) {
    let c: X509Certificate;
    try {
      c = new X509Certificate(b);
    } catch (e) {
      throw new Error(`holds a certificate that does not parse: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!c.ca) throw new Error(`holds ${c.subject.replace(/\n/g, ', ')}, which is not a CA`);
    out.push(c.toString().trim());
  }
  return `${out.join('\n')}\n`;
}

/**
 * The CA initrd for `pem` (checked with checkCaPem), gzipped: the kernel takes an uncompressed
 * cpio only at a 4-byte offset (init/initramfs.c, unpack_to_rootfs), and a kernel's EFI stub or
 * qemu's -initrd put initrds end to end, after an image of any length; a compressed member may
 * start anywhere.
 */
export function caInitrd(pem: string): Buffer {
  const checked = checkCaPem(pem);
  const certs =
    checked.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  // Two CAs with one subject hash take .0 and .1, as c_rehash numbers them.
  const seen = new Map<string, number>();
  const hashed: CpioEntry[] = certs.map((c) => {
    const h = opensslSubjectHash(new X509Certificate(c).raw);
    const n = seen.get(h) ?? 0;
    seen.set(h, n + 1);
    return {
      name: `${SSL_CERTS_DIR}/${h}.${String(n)}`,
      mode: 0o100644,
      data: Buffer.from(`${c}\n`),
    };
  });
  return gzipSync(
    newcArchive([
      { name: 'etc', mode: 0o040755 },
      { name: 'etc/crowbar', mode: 0o040755 },
      { name: CA_PATH, mode: 0o100644, data: Buffer.from(checked) },
      { name: 'etc/ssl', mode: 0o040755 },
      { name: SSL_CERTS_DIR, mode: 0o040755 },
      ...hashed,
    ]),
  );
}

/** OpenSSL's hashed certificate directory on Debian (OPENSSLDIR/certs links to it). */
export const SSL_CERTS_DIR = 'etc/ssl/certs';

interface Tlv {
  tag: number;
  /** The whole element, header included. */
  all: Buffer;
  body: Buffer;
}

/** One DER element at `at` (X.690 §8.1: definite lengths only, as DER requires). */
function readTlv(b: Buffer, at: number): Tlv {
  const tag = b[at];
  let len = b[at + 1];
  if (tag === undefined || len === undefined) throw new Error('DER: truncated header');
  let off = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('DER: unsupported length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (b[off + i] ?? 0);
    off += n;
  }
  if (off + len > b.length) throw new Error('DER: truncated element');
  return { tag, all: b.subarray(at, off + len), body: b.subarray(off, off + len) };
}

function children(b: Buffer): Tlv[] {
  const out: Tlv[] = [];
  for (let at = 0; at < b.length;) {
    const t = readTlv(b, at);
    out.push(t);
    at += t.all.length;
  }
  return out;
}

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const der = (tag: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);

/** UTF8String, PrintableString, T61String, IA5String, VisibleString, UniversalString, BMPString. */
const CANON_STRINGS = new Set([0x0c, 0x13, 0x14, 0x16, 0x1a, 0x1c, 0x1e]);

function stringValue(tag: number, body: Buffer): string {
  if (tag === 0x1e) return body.swap16().toString('utf16le'); // BMPString: UCS-2 big-endian
  if (tag === 0x1c) {
    let s = '';
    for (let i = 0; i + 3 < body.length; i += 4) s += String.fromCodePoint(body.readUInt32BE(i));
    return s;
  }
  return tag === 0x0c ? body.toString('utf8') : body.toString('latin1');
}

/**
 * OpenSSL's subject name hash (`openssl x509 -subject_hash`, X509_NAME_hash_ex in
 * crypto/x509/x_name.c): the first four bytes of SHA-1, little-endian, over the name's canonical
 * encoding: every string value as UTF8String, ASCII lower-cased, leading and trailing white space
 * dropped and inner runs of it made one space; each RDN a DER SET, the SETs end to end.
 */
export function opensslSubjectHash(certDer: Buffer): string {
  const tbs = children(readTlv(certDer, 0).body)[0];
  if (!tbs) throw new Error('DER: no tbsCertificate');
  const f = children(tbs.body);
  // [0] version, serialNumber, signature, issuer, validity, subject (RFC 5280 §4.1).
  const subject = f[f[0]?.tag === 0xa0 ? 5 : 4];
  if (subject?.tag !== 0x30) throw new Error('DER: no subject');
  const rdns = children(subject.body).map((set) => {
    const avas = children(set.body).map((ava) => {
      const [oid, value] = children(ava.body);
      if (!oid || !value) throw new Error('DER: bad AttributeTypeAndValue');
      let v = value.all;
      if (CANON_STRINGS.has(value.tag)) {
        const s = stringValue(value.tag, Buffer.from(value.body))
          .replace(/^[ \t\n\v\f\r]+|[ \t\n\v\f\r]+$/g, '')
          .replace(/[ \t\n\v\f\r]+/g, ' ')
          .replace(/[A-Z]/g, (c) => c.toLowerCase());
        v = der(0x0c, Buffer.from(s, 'utf8'));
      }
      return der(0x30, Buffer.concat([oid.all, v]));
    });
    // X.690 §11.6: a DER SET OF is sorted by its elements' encodings.
    avas.sort((a, b) => Buffer.compare(a, b));
    return der(0x31, Buffer.concat(avas));
  });
  const md = createHash('sha1').update(Buffer.concat(rdns)).digest();
  return md.readUInt32LE(0).toString(16).padStart(8, '0');
}
