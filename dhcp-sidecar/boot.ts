/**
 * Boot decisions (pure): from what the client says about itself (options 60, 77, 93, 175) and the
 * boot environment its node should be in, which first stage or script it gets. ANCHORS §7.2.
 */
import type { BootEnvSpec } from '../generated/crowbar.ts';
import {
  Opt,
  getClientArch,
  getIpxeBusId,
  getString,
  getUserClasses,
  type DhcpPacket,
} from './codec.ts';

/** RFC 4578 §2.1 and the IANA processor architecture registry. */
export const Arch = {
  BIOS: 0,
  EFI_IA32: 6,
  EFI_X64: 7,
  EFI_BC: 9,
  EFI_X64_HTTP: 16,
} as const;

export interface ClientInfo {
  arch: number | undefined;
  /** Option 60 starts with PXEClient. */
  pxe: boolean;
  /** Option 60 starts with HTTPClient (UEFI HTTP boot). */
  httpClient: boolean;
  /** iPXE: user class "iPXE" (option 77) or iPXE's encapsulated options (175). */
  ipxe: boolean;
  /** iPXE's boot NIC as `vendor:device` (PCI IDs, lower-case hex), from option 175.177. */
  pciNic?: string;
}

export function classify(p: DhcpPacket): ClientInfo {
  const vc = getString(p, Opt.VENDOR_CLASS) ?? '';
  const bus = getIpxeBusId(p);
  return {
    arch: getClientArch(p),
    pxe: vc.startsWith('PXEClient'),
    httpClient: vc.startsWith('HTTPClient'),
    ipxe: getUserClasses(p).includes('iPXE') || p.options.has(Opt.IPXE_ENCAP),
    ...(bus?.busType === 1 ? { pciNic: `${bus.vendor}:${bus.device}` } : {}),
  };
}

/** A network-boot client is one that can act on boot options at all. */
export function isNetbootClient(c: ClientInfo): boolean {
  return c.pxe || c.httpClient || c.ipxe || c.arch !== undefined;
}

export interface BootFiles {
  bios: string;
  uefi: string;
}

export const DEFAULT_BOOT_FILES: BootFiles = { bios: 'undionly.kpxe', uefi: 'snponly.efi' };

export interface BootDecision {
  /** BOOTP file field and option 67: a TFTP path or an HTTP URL. */
  file: string;
  /** TFTP transport (sets option 66 and sname); HTTP URLs need no server name. */
  tftp: boolean;
  /** Option 60 to echo (PXEClient or HTTPClient), if any. */
  vendorClass?: 'PXEClient' | 'HTTPClient';
  /** Tell iPXE not to wait for ProxyDHCP offers (option 175, sub-option 176). */
  ipxeNoProxy: boolean;
}

export interface BootContext {
  mac: string;
  /** e.g. http://10.0.0.1:8080 */
  httpBase: string;
  files?: BootFiles;
}

/**
 * Path of a node's iPXE script on the HTTP server; `pciNic` (the boot NIC's PCI IDs, as iPXE
 * told DHCP) rides along so that the script can pick a BootEnv's kernel variant for it.
 */
export function ipxeScriptPath(mac: string, pciNic?: string): string {
  return pciNic === undefined ? `/ipxe/${mac}` : `/ipxe/${mac}?pci=${pciNic}`;
}

/**
 * What a client should boot, or undefined for no boot options: the environment is local or
 * unknown, or the client is not a network-boot client, or its architecture has no first stage.
 */
export function decideBoot(
  c: ClientInfo,
  env: BootEnvSpec | undefined,
  ctx: BootContext,
): BootDecision | undefined {
  if (!env || env.local === true) return undefined;
  if (!isNetbootClient(c)) return undefined;
  const files = ctx.files ?? DEFAULT_BOOT_FILES;
  // iPXE asks again after the first stage: hand it the per-node script, so nothing loops.
  if (c.ipxe) {
    return {
      file: `${ctx.httpBase}${ipxeScriptPath(ctx.mac, c.pciNic)}`,
      tftp: false,
      ipxeNoProxy: true,
      ...(c.httpClient ? { vendorClass: 'HTTPClient' as const } : {}),
    };
  }
  const arch = c.arch ?? Arch.BIOS;
  if (c.httpClient) {
    // UEFI HTTP boot (RFC 4578 arch 16, x64 HTTP): the first stage over HTTP, class echoed.
    if (arch !== Arch.EFI_X64_HTTP && arch !== Arch.EFI_X64 && arch !== Arch.EFI_BC)
      return undefined;
    return {
      file: `${ctx.httpBase}/boot/${files.uefi}`,
      tftp: false,
      vendorClass: 'HTTPClient',
      ipxeNoProxy: false,
    };
  }
  let first: string | undefined;
  if (arch === Arch.BIOS) first = files.bios;
  else if (arch === Arch.EFI_X64 || arch === Arch.EFI_BC) first = files.uefi;
  if (first === undefined) return undefined;
  return {
    file: first,
    tftp: true,
    ...(c.pxe ? { vendorClass: 'PXEClient' as const } : {}),
    ipxeNoProxy: false,
  };
}
