#!/bin/sh
# Fetches Debian's netboot installer (d-i) from the package debian-installer-12-netboot-amd64:
# downloaded with apt-get and unpacked with dpkg-deb -x (nothing installed), the kernel and the
# text-mode initrd cached in OUTDIR/debian-installer/amd64/{linux,initrd.gz}
# (default ~/.cache/crowbar/debian-installer), the layout the debian-12-install BootEnv names
# under the boot sidecar's file root.
# usage: fetch-debian-installer.sh [OUTDIR]
set -eu
OUT=${1:-$HOME/.cache/crowbar/debian-installer}
D=$OUT/debian-installer/amd64
[ -s "$D/linux" ] && [ -s "$D/initrd.gz" ] && exit 0
W=$(mktemp -d /tmp/cbdi-XXXXXX)
trap 'rm -rf "$W"' EXIT
dl() { (cd "$W" && apt-get download -q debian-installer-12-netboot-amd64 >/dev/null 2>&1); }
dl || { apt-get update -qq >/dev/null 2>&1; dl; } ||
  { echo "fetch-debian-installer.sh: apt-get download debian-installer-12-netboot-amd64 failed (run apt-get update?)" >&2; exit 1; }
dpkg-deb -x "$W"/debian-installer-12-netboot-amd64_*.deb "$W/x"
S=$W/x/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64
mkdir -p "$D"
cp "$S/linux" "$W/linux"
cp "$S/initrd.gz" "$W/initrd.gz"
mv "$W/linux" "$D/linux"
mv "$W/initrd.gz" "$D/initrd.gz"
echo "debian-installer: $D"
