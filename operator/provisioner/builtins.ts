/**
 * The provisioner's built-in objects, created at start when absent (never overwritten, so a
 * site edits them freely): the destructive role `provisioner-os-install` and the BootEnv
 * `debian-12-install` (Debian's netboot installer with a per-node preseed from the provisioner
 * API). Its kernel and initrd are paths under the boot sidecar's file root by default (where the
 * lab puts the files of Debian's `debian-installer-12-netboot-amd64` package); a site points them
 * at its mirror, e.g. http://mirror/debian/dists/bookworm/main/installer-amd64/current/images/netboot/debian-installer/amd64/linux.
 */
import type { BootEnvSpec, RoleSpec } from '../../generated/crowbar.ts';
import type { CrowbarClient } from '../kube/client.ts';
import { isConflict } from '../kube/errors.ts';
import { OS_INSTALL_JIG, OS_INSTALL_ROLE } from './os-install.ts';

export const DEBIAN_BOOTENV = 'debian-12-install';

export const OS_INSTALL_ROLE_SPEC: RoleSpec = {
  jig: OS_INSTALL_JIG,
  flags: ['destructive'],
  description:
    'Installs an operating system (target_os: an installer BootEnv): sets the boot environment, waits for the boot sidecar to acknowledge it, reboots. Bind roles that need the installed system below it.',
  template: { target_os: DEBIAN_BOOTENV },
};

/**
 * The late command: the installer fetches this node's `late.sh` from the provisioner API and runs
 * it with the installed system at /target; the fetch is retried (bounded) because the operator
 * serving it may be restarting. The stand-in installer of the tests runs this same line.
 * The API is HTTPS; its CA is /etc/crowbar/ca.pem, which the boot sidecar's CA initrd put into the
 * installer's root (ADR 0019); busybox wget verifies against SSL_CERT_FILE through openssl.
 */
export const LATE_COMMAND =
  'export SSL_CERT_FILE=/etc/crowbar/ca.pem; n=0; until wget -q -O /tmp/crowbar-late.sh {{api}}/provision/v1/nodes/{{name}}/files/late.sh; do n=$((n+1)); [ $n -ge 300 ] && exit 1; sleep 2; done; sh /tmp/crowbar-late.sh';

/** d-i preseed (Debian 12): unattended, root by the operator's SSH key only. */
export const DEBIAN_PRESEED = `# Crowbar preseed for {{name}} (rendered per node by the provisioner API)
d-i debian-installer/locale string en_US.UTF-8
d-i keyboard-configuration/xkb-keymap select us
d-i netcfg/choose_interface select auto
d-i netcfg/get_hostname string {{hostname}}
d-i netcfg/get_domain string {{domain}}
d-i netcfg/hostname string {{hostname}}
d-i mirror/country string manual
d-i mirror/http/hostname string deb.debian.org
d-i mirror/http/directory string /debian
d-i mirror/http/proxy string
d-i passwd/root-login boolean true
d-i passwd/make-user boolean false
d-i passwd/root-password-crypted password !
d-i clock-setup/utc boolean true
d-i time/zone string Etc/UTC
d-i clock-setup/ntp boolean false
d-i partman-auto/method string regular
d-i partman-auto/choose_recipe select atomic
d-i partman-partitioning/confirm_write_new_label boolean true
d-i partman/choose_partition select finish
d-i partman/confirm boolean true
d-i partman/confirm_nooverwrite boolean true
d-i apt-setup/use_mirror boolean true
tasksel tasksel/first multiselect standard, ssh-server
d-i pkgsel/include string curl
d-i pkgsel/upgrade select none
popularity-contest popularity-contest/participate boolean false
d-i grub-installer/only_debian boolean true
d-i grub-installer/bootdev string default
d-i finish-install/reboot_in_progress note
d-i preseed/late_command string ${LATE_COMMAND}
`;

/**
 * What the late command runs (`late.sh`, POSIX sh, busybox-compatible), with the installed system
 * at /target: root's key, the node's identity and a first-boot unit that reports it alive, then
 * the completion callback, then a bounded wait until the boot sidecar has acknowledged \`local\`,
 * so that the reboot that follows boots the disk (§8.5 step 4, without the race).
 */
export const DEBIAN_LATE_SH = `#!/bin/sh
set -eu
T=\${CROWBAR_TARGET:-/target}
# The node API's CA (the boot sidecar's CA initrd): the installed system keeps it for its calls.
# An http:// API exists only where its operator was told --api-allow-plain-http (a test's stand-in
# machines); everywhere else it is https and nothing goes without the CA.
CA=/etc/crowbar/ca.pem
case '{{api}}' in https://*) TLS=1 ;; *) TLS= ;; esac
if [ -n "$TLS" ]; then
  grep -q 'BEGIN CERTIFICATE' "$CA" 2>/dev/null || { echo "no CA certificate at $CA: refusing https without a trust anchor" >&2; exit 1; }
  export SSL_CERT_FILE=$CA
fi
mkdir -p "$T/root/.ssh" "$T/etc/crowbar" "$T/etc/systemd/system/multi-user.target.wants"
if [ -n "$TLS" ]; then
  cp "$CA" "$T/etc/crowbar/ca.pem"
  chmod 644 "$T/etc/crowbar/ca.pem"
fi
chmod 700 "$T/root/.ssh"
echo '{{sshKey}}' >"$T/root/.ssh/authorized_keys"
chmod 600 "$T/root/.ssh/authorized_keys"
printf 'name=%s\\napi=%s\\ntoken=%s\\n' '{{name}}' '{{api}}' '{{nodeToken}}' >"$T/etc/crowbar/node"
chmod 600 "$T/etc/crowbar/node"
cat >"$T/etc/crowbar/firstboot" <<'EOS'
#!/bin/sh
# Reports the installed node alive (CROWBAR-MODEL.md §10.1: nodes set their own alive flag), over
# HTTPS verified against the node API's CA only: curl (the preseed installs it), else busybox wget
# with openssl (SSL_CERT_FILE).
. /etc/crowbar/node
CA=/etc/crowbar/ca.pem
alive() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --cacert "$CA" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data '{"message":"installed system up"}' "$api/api/v1/nodes/$name/alive"
  else
    SSL_CERT_FILE=$CA wget -q -O /dev/null --header "Authorization: Bearer $token" --header 'Content-Type: application/json' --post-data '{"message":"installed system up"}' "$api/api/v1/nodes/$name/alive"
  fi
}
n=0
until alive; do
  n=$((n + 1)); [ $n -ge 60 ] && exit 1; sleep 2
done
EOS
chmod 755 "$T/etc/crowbar/firstboot"
cat >"$T/etc/systemd/system/crowbar-firstboot.service" <<'EOS'
[Unit]
Description=Report this node alive to Crowbar
Wants=network-online.target
After=network-online.target ssh.service
[Service]
Type=oneshot
ExecStart=/etc/crowbar/firstboot
[Install]
WantedBy=multi-user.target
EOS
ln -sf ../crowbar-firstboot.service "$T/etc/systemd/system/multi-user.target.wants/crowbar-firstboot.service"
A='Authorization: Bearer {{installToken}}'
# The operator may be restarting (its API with it): retried, bounded; the callback is idempotent.
n=0
until wget -q -O /dev/null --header "$A" --post-data '' '{{api}}/provision/v1/nodes/{{name}}/installed'; do
  n=$((n + 1)); [ $n -ge 300 ] && { echo 'the completion callback was not taken in 10 min' >&2; exit 1; }; sleep 2
done
n=0
until wget -q -O - --header "$A" '{{api}}/provision/v1/nodes/{{name}}/bootenv' | grep -qx 'applied=local'; do
  n=$((n + 1)); [ $n -ge 600 ] && { echo 'local was not acknowledged in 10 min' >&2; exit 1; }; sleep 1
done
`;

export function debianBootEnv(): BootEnvSpec {
  return {
    description:
      'Debian 12 netboot installer (d-i) with a per-node preseed from the provisioner API',
    kernel: 'debian-installer/amd64/linux',
    initrds: ['debian-installer/amd64/initrd.gz'],
    // netcfg/no_default_route: a provisioning network without a router (a site mirror on it) is
    // fine; d-i would otherwise ask before it has fetched the preseed. netcfg/get_nameservers
    // (empty): netcfg asks for name servers at critical priority when DHCP names none, also
    // before the preseed (seen here with dnsmasq --port=0); answered on the command line it
    // is not asked, and name servers that DHCP does give are still used.
    kernelArgs: `initrd={{initrd}} auto=true priority=critical netcfg/no_default_route=true url={{api}}/provision/v1/nodes/{{name}}/files/preseed.cfg netcfg/get_nameservers= console=ttyS0,115200n8 --- console=ttyS0,115200n8`,
    files: [
      { name: 'preseed.cfg', template: DEBIAN_PRESEED },
      { name: 'late.sh', template: DEBIAN_LATE_SH },
    ],
  };
}

/** Creates the built-ins that do not exist; `api` is the provisioner URL machines reach. */
export async function ensureBuiltins(
  client: CrowbarClient,
  fieldManager: string,
  api: string | undefined,
): Promise<string[]> {
  const made: string[] = [];
  const create = async (f: () => Promise<unknown>, what: string) => {
    try {
      await f();
      made.push(what);
    } catch (e) {
      if (!isConflict(e)) throw e;
    }
  };
  if (!(await client.get('Role', OS_INSTALL_ROLE)))
    await create(
      () =>
        client.create(
          'Role',
          { metadata: { name: OS_INSTALL_ROLE }, spec: OS_INSTALL_ROLE_SPEC },
          fieldManager,
        ),
      `Role ${OS_INSTALL_ROLE}`,
    );
  // The boot sidecar renders kernelArgs; the provisioner URL is the operator's to know.
  if (api !== undefined && !(await client.get('BootEnv', DEBIAN_BOOTENV))) {
    const spec = debianBootEnv();
    spec.kernelArgs = (spec.kernelArgs ?? '').replace('{{api}}', api);
    await create(
      () => client.create('BootEnv', { metadata: { name: DEBIAN_BOOTENV }, spec }, fieldManager),
      `BootEnv ${DEBIAN_BOOTENV}`,
    );
  }
  return made;
}
