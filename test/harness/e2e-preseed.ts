/** The preseed of `make e2e-install` (test/e2e/install.test.ts): the built-in one on a local mirror. */
import { DEBIAN_PRESEED } from '../../operator/provisioner/builtins.ts';

/**
 * The built-in preseed, pointed at the sidecar's mirror (what a site does for its own mirror),
 * with what that mirror holds: no security or updates suites (only bookworm is mirrored), the
 * ssh-server task without `standard` (a few hundred MB less to mirror and unpack under TCG).
 */
export function e2ePreseed(mirrorHost: string): string {
  const p = DEBIAN_PRESEED.replace(
    'd-i mirror/http/hostname string deb.debian.org',
    `d-i mirror/http/hostname string ${mirrorHost}`,
  )
    .replace(
      'd-i mirror/http/directory string /debian',
      'd-i mirror/http/directory string /files/debian',
    )
    .replace(
      'tasksel tasksel/first multiselect standard, ssh-server',
      'tasksel tasksel/first multiselect ssh-server',
    );
  if (p.includes('deb.debian.org') || !p.includes('/files/debian') || p.includes('standard,'))
    throw new Error('the built-in preseed changed: update e2ePreseed');
  return `${p}d-i mirror/suite string bookworm
d-i mirror/udeb/suite string bookworm
d-i apt-setup/services-select multiselect
d-i apt-setup/non-free-firmware boolean false
d-i apt-setup/non-free boolean false
d-i apt-setup/contrib boolean false
d-i apt-setup/cdrom/set-first boolean false
d-i hw-detect/load_firmware boolean false
d-i base-installer/install-recommends boolean false
d-i base-installer/kernel/image string linux-image-amd64
`;
}
