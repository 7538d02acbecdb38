/** Per-node boot files rendered from a BootEnv's templates (pure). */
import type { BootEnvSpec } from '../generated/crowbar.ts';

export interface RenderVars {
  name: string;
  mac: string;
  address: string;
  server: string;
  http: string;
  bootEnv: string;
  /** The boot NIC's PCI IDs (`vendor:device`, lower-case hex), when iPXE told us. */
  pciNic?: string;
  /** False when the Node's spec.kernelVariants is `off`: always the BootEnv's own kernel. */
  variants?: boolean;
}

/** The kernel and initrds a machine boots from a BootEnv, and the variant's name if one matched. */
export interface KernelChoice {
  kernel: string | undefined;
  initrds: readonly string[];
  variant: string;
}

/** A boot NIC's `vendor:device` PCI IDs in lower-case hex (the vendor as the CRD spells it). */
export const PCI_NIC = /^([0-9a-f]{4}):[0-9a-f]{4}$/;

/** Whether a kernel or initrd location can be served (the sidecar checks its file root). */
export type Available = (location: string) => boolean;

/**
 * The first of the BootEnv's `variants` whose NIC vendors hold the boot NIC's vendor and whose
 * files are `available`, unless the node has variants off or the NIC is unknown; else the
 * BootEnv's own kernel and initrds. A variant whose kernel was never put in place costs a
 * slower boot, not a failed one.
 */
export function chooseKernel(
  env: BootEnvSpec,
  v: Pick<RenderVars, 'pciNic' | 'variants'>,
  available: Available = () => true,
): KernelChoice {
  const own: KernelChoice = { kernel: env.kernel, initrds: env.initrds ?? [], variant: '' };
  const vendor = PCI_NIC.exec(v.pciNic ?? '')?.[1];
  if (v.variants === false || vendor === undefined) return own;
  for (const x of env.variants ?? []) {
    if (!x.nicVendors.includes(vendor)) continue;
    const initrds = x.initrds ?? own.initrds;
    if (available(x.kernel) && initrds.every(available))
      return { kernel: x.kernel, initrds, variant: x.name };
  }
  return own;
}

/** Replaces {{ var }} with its value; unknown variables become empty strings. */
export function renderTemplate(t: string, vars: Readonly<Record<string, string>>): string {
  return t.replace(/\{\{\s*([A-Za-z][A-Za-z0-9]*)\s*\}\}/g, (_m, k: string) => vars[k] ?? '');
}

/** A kernel or initrd location as a URL: http(s) URLs as they are, paths under /files/. */
export function fileUrl(location: string, http: string): string {
  if (/^https?:\/\//.test(location)) return location;
  return `${http}/files/${location.replace(/^\/+/, '')}`;
}

/** The name a machine the API does not know is discovered under (Crowbar's d<mac>). */
export function discoveryName(mac: string): string {
  return `d${mac.replace(/:/g, '-')}`;
}

function allVars(env: BootEnvSpec, v: RenderVars, k: KernelChoice): Record<string, string> {
  const base: Record<string, string> = {
    name: v.name,
    mac: v.mac,
    address: v.address,
    server: v.server,
    http: v.http,
    bootEnv: v.bootEnv,
    variant: k.variant,
  };
  base['initrd'] = (k.initrds[0] ?? '').split('/').pop() ?? '';
  base['kernel'] = k.kernel ? fileUrl(k.kernel, v.http) : '';
  base['initrdUrls'] = k.initrds.map((i) => fileUrl(i, v.http)).join(' ');
  base['kernelArgs'] = renderTemplate(env.kernelArgs ?? '', base);
  return base;
}

/**
 * Names `extra` next to the first `initrd=<name>` argument: a kernel booted through its EFI stub
 * (iPXE on UEFI) loads only the initrds its command line names, while a BIOS bzImage boot loads
 * every one iPXE holds and ignores the argument. The first one, not the last: arguments after
 * d-i's `---` are copied to the installed system's kernel command line.
 */
export function withInitrdArg(kernelArgs: string, extra: string): string {
  const m = /(^|\s)initrd=\S*/.exec(kernelArgs);
  if (!m) return kernelArgs;
  const end = m.index + m[0].length;
  return `${kernelArgs.slice(0, end)} initrd=${extra}${kernelArgs.slice(end)}`;
}

/** Extra initrds the sidecar adds to every kernel it boots (the node API's CA, ADR 0019). */
export interface ExtraInitrd {
  url: string;
  /** Its name in iPXE (the URL's last segment). */
  name: string;
}

/**
 * The iPXE script a node gets: its boot environment's kernel, initrds and arguments, then
 * `extra` (the CA initrd) after the boot environment's own initrds; `choice` is the kernel
 * {@link chooseKernel} picked for it (default: picked here, every location taken as available). A BootEnv's own `ipxeScript`
 * is its author's: it gets the CA initrd's URL as {{caInitrd}} and nothing is added to it.
 */
export function ipxeScript(
  env: BootEnvSpec | undefined,
  v: RenderVars,
  extra?: ExtraInitrd,
  choice?: KernelChoice,
): string {
  if (!env || env.local === true || !env.kernel)
    return '#!ipxe\necho Crowbar: boot from local disk\nexit\n';
  const k = choice ?? chooseKernel(env, v);
  const vars = allVars(env, v, k);
  if (env.ipxeScript)
    return renderTemplate(env.ipxeScript, { ...vars, caInitrd: extra?.url ?? '' });
  const what = k.variant ? `${v.bootEnv} (kernel variant ${k.variant})` : v.bootEnv;
  const lines = ['#!ipxe', `echo Crowbar: ${v.name} boots ${what}`];
  const args = vars['kernelArgs'] ?? '';
  lines.push(
    `kernel ${vars['kernel'] ?? ''} ${extra ? withInitrdArg(args, extra.name) : args}`.trimEnd(),
  );
  for (const i of k.initrds) lines.push(`initrd ${fileUrl(i, v.http)}`);
  if (extra) lines.push(`initrd ${extra.url}`);
  lines.push('boot', '');
  return lines.join('\n');
}

/** A per-node file from the boot environment's templates, or undefined when it has none. */
export function nodeFile(
  env: BootEnvSpec | undefined,
  name: string,
  v: RenderVars,
  available?: Available,
) {
  const f = env?.files?.find((x) => x.name === name);
  return f && env
    ? renderTemplate(f.template, allVars(env, v, chooseKernel(env, v, available)))
    : undefined;
}
