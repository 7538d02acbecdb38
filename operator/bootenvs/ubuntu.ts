/**
 * The `ubuntu-24.04-install` BootEnv (pure): Ubuntu's live-server installer (subiquity) booted
 * over the network, driven by autoinstall through cloud-init's NoCloud data source.
 *
 * - Kernel and initrd are the ISO's `casper/vmlinuz` and `casper/initrd` (a site mirror, or the
 *   ISO unpacked under the boot sidecar's file root); casper fetches the ISO itself from `url=`.
 * - Kernel arguments: `ip=dhcp url=<iso> autoinstall ds=nocloud;s=<per-node URL>/
 *   cloud-config-url=/dev/null`. The per-node URL is the boot sidecar's `/nodes/<mac>/`, which
 *   serves this BootEnv's `files` rendered for the node (`user-data`, `meta-data`,
 *   `vendor-data`). `cloud-config-url=/dev/null` stops cloud-init in the installer from reading
 *   `url=` (its alias for a cloud-config URL) and downloading the ISO a second time. The `;` goes
 *   unquoted: Debian's iPXE passes it through as it is (quotes or a backslash would reach
 *   cloud-init literally and break `ds=`).
 * - The files are templates with the sidecar's variables ({{name}}, {{mac}}, {{http}},
 *   {{bootEnv}}, ...; see crds/bootenvs.crowbar.dev.yaml), rendered per node by
 *   dhcp-sidecar/render.ts (or the provisioner API, with the same rules). They are built here
 *   as data and serialised with js-yaml, so the rendered text is valid YAML for any value of
 *   those variables that holds no single quote (FQDNs, MACs and URLs do not).
 */
import yaml from 'js-yaml';
import type { BootEnvSpec } from '../../generated/crowbar.ts';

export const UBUNTU_2404_INSTALL = 'ubuntu-24.04-install';

export interface UbuntuInstallOptions {
  /** Kernel location: an http(s) URL or a path under the sidecar's file root. */
  kernel?: string;
  /** Initrd location, likewise. */
  initrd?: string;
  /** The live-server ISO casper downloads (`url=`), a template like the kernel arguments. */
  isoUrl?: string;
  /** Public keys put in root's authorized_keys on the installed system (the operator's key). */
  sshAuthorizedKeys: readonly string[];
  /**
   * Shell commands run at the end of the install (subiquity `late-commands`, run in the
   * installer with the target at /target), after root's key is in place: e.g. the completion
   * callback to the provisioner API. Templates with the sidecar's variables.
   */
  lateCommands?: readonly string[];
  /** curtin storage layout: lvm (default) or direct. */
  storageLayout?: 'lvm' | 'direct';
  /** Extra packages to install. */
  packages?: readonly string[];
  locale?: string;
  timezone?: string;
  /** More kernel arguments (e.g. console=ttyS0,115200). */
  extraKernelArgs?: string;
}

/** The per-node NoCloud seed URL (ends in '/': cloud-init appends user-data, meta-data). */
export const NOCLOUD_SEED = '{{http}}/nodes/{{mac}}/';

const SSH_KEY =
  /^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+( [^'\n]*)?$/;

/** The subiquity autoinstall document (the value of the `autoinstall:` key). */
export function autoinstallDocument(o: UbuntuInstallOptions): Record<string, unknown> {
  for (const k of o.sshAuthorizedKeys) {
    if (!SSH_KEY.test(k))
      throw new Error(
        `not an OpenSSH public key (one line, no single quotes): ${JSON.stringify(k.slice(0, 40))}`,
      );
  }
  const keyCommands = [
    'mkdir -p /target/root/.ssh',
    'chmod 700 /target/root/.ssh',
    ...o.sshAuthorizedKeys.map((k) => `echo '${k}' >> /target/root/.ssh/authorized_keys`),
    'chmod 600 /target/root/.ssh/authorized_keys',
  ];
  return {
    version: 1,
    'interactive-sections': [],
    'refresh-installer': { update: false },
    locale: o.locale ?? 'en_US.UTF-8',
    keyboard: { layout: 'us' },
    timezone: o.timezone ?? 'Etc/UTC',
    network: {
      version: 2,
      ethernets: { boot: { match: { macaddress: '{{mac}}' }, dhcp4: true } },
    },
    storage: { layout: { name: o.storageLayout ?? 'lvm' } },
    ssh: { 'install-server': true, 'allow-pw': false },
    packages: ['curl', ...(o.packages ?? [])],
    // cloud-config for the installed system's first boot (instead of `identity`: no password
    // user; Crowbar reaches the machine as root with its key).
    'user-data': {
      fqdn: '{{name}}',
      prefer_fqdn_over_hostname: false,
      preserve_hostname: false,
      disable_root: false,
      ssh_pwauth: false,
    },
    'late-commands': [...keyCommands, ...(o.lateCommands ?? [])],
    shutdown: 'reboot',
  };
}

/** The `user-data` template: `#cloud-config` with the autoinstall document. */
export function userDataTemplate(o: UbuntuInstallOptions): string {
  const body = yaml.dump(
    { autoinstall: autoinstallDocument(o) },
    { lineWidth: -1, noRefs: true, quotingType: "'" },
  );
  return `#cloud-config\n# Crowbar: Ubuntu autoinstall for {{name}} ({{mac}}), boot environment {{bootEnv}}\n${body}`;
}

/** The `meta-data` template: a new instance id per node and boot environment. */
export const META_DATA_TEMPLATE =
  'instance-id: crowbar-{{name}}-{{bootEnv}}\nlocal-hostname: {{name}}\n';

/** The BootEnv's spec. */
export function ubuntuInstallBootEnv(o: UbuntuInstallOptions): BootEnvSpec {
  const iso = o.isoUrl ?? '{{http}}/files/ubuntu-24.04/ubuntu-24.04-live-server-amd64.iso';
  const args = [
    'initrd={{initrd}}',
    'ip=dhcp',
    `url=${iso}`,
    'autoinstall',
    `ds=nocloud;s=${NOCLOUD_SEED}`,
    'cloud-config-url=/dev/null',
    o.extraKernelArgs ?? '',
  ]
    .filter((a) => a !== '')
    .join(' ');
  return {
    description:
      'Ubuntu 24.04 LTS server, installed unattended (subiquity autoinstall via NoCloud)',
    local: false,
    kernel: o.kernel ?? 'ubuntu-24.04/casper/vmlinuz',
    initrds: [o.initrd ?? 'ubuntu-24.04/casper/initrd'],
    kernelArgs: args,
    files: [
      { name: 'user-data', template: userDataTemplate(o) },
      { name: 'meta-data', template: META_DATA_TEMPLATE },
      { name: 'vendor-data', template: '' },
    ],
  };
}
