/**
 * The node API's CA as an initrd (pure): a gzipped newc cpio archive holding /etc/crowbar/ca.pem,
 * which the boot sidecar serves next to every netbooted kernel so the discovery image, installers
 * and the installed system verify the node API (ADR 0019). The kernel unpacks every initrd it is
 * given over the same root in order (Documentation/driver-api/early-userspace/buffer-format.rst),
 * so this one adds the file to whatever image comes before it.
 */
import { X509Certificate } from 'node:crypto';
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
  return gzipSync(
    newcArchive([
      { name: 'etc', mode: 0o040755 },
      { name: 'etc/crowbar', mode: 0o040755 },
      { name: CA_PATH, mode: 0o100644, data: Buffer.from(checkCaPem(pem)) },
    ]),
  );
}
