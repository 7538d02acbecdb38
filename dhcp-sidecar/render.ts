/** Per-node boot files rendered from a BootEnv's templates (pure). */
import type { BootEnvSpec } from '../generated/crowbar.ts';

export interface RenderVars {
  name: string;
  mac: string;
  address: string;
  server: string;
  http: string;
  bootEnv: string;
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

function allVars(env: BootEnvSpec, v: RenderVars): Record<string, string> {
  const base: Record<string, string> = { ...v };
  const initrds = (env.initrds ?? []).map((i) => fileUrl(i, v.http));
  base['initrd'] = (env.initrds?.[0] ?? '').split('/').pop() ?? '';
  base['kernel'] = env.kernel ? fileUrl(env.kernel, v.http) : '';
  base['initrdUrls'] = initrds.join(' ');
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
 * `extra` (the CA initrd) after the boot environment's own initrds. A BootEnv's own `ipxeScript`
 * is its author's: it gets the CA initrd's URL as {{caInitrd}} and nothing is added to it.
 */
export function ipxeScript(
  env: BootEnvSpec | undefined,
  v: RenderVars,
  extra?: ExtraInitrd,
): string {
  if (!env || env.local === true || !env.kernel)
    return '#!ipxe\necho Crowbar: boot from local disk\nexit\n';
  const vars = allVars(env, v);
  if (env.ipxeScript)
    return renderTemplate(env.ipxeScript, { ...vars, caInitrd: extra?.url ?? '' });
  const lines = ['#!ipxe', `echo Crowbar: ${v.name} boots ${v.bootEnv}`];
  const args = vars['kernelArgs'] ?? '';
  lines.push(
    `kernel ${vars['kernel'] ?? ''} ${extra ? withInitrdArg(args, extra.name) : args}`.trimEnd(),
  );
  for (const i of env.initrds ?? []) lines.push(`initrd ${fileUrl(i, v.http)}`);
  if (extra) lines.push(`initrd ${extra.url}`);
  lines.push('boot', '');
  return lines.join('\n');
}

/** A per-node file from the boot environment's templates, or undefined when it has none. */
export function nodeFile(env: BootEnvSpec | undefined, name: string, v: RenderVars) {
  const f = env?.files?.find((x) => x.name === name);
  return f && env ? renderTemplate(f.template, allVars(env, v)) : undefined;
}
