#!/bin/sh
# Builds the discovery image (our Sledgehammer, CROWBAR-MODEL.md §8.2) from Debian packages only:
# Debian's kernel and the modules a machine needs to reach the network and see its disks,
# busybox-static (shell, udhcpc, wget, init), dropbear (sshd), util-linux's flock and openssl
# (the TLS client busybox wget runs for https, behind ./openssl, a shim that makes it verify) with
# the libraries they link, and the agent (./agent). The .debs are fetched with apt-get download and unpacked with dpkg-deb -x:
# nothing is installed on this host. The result is cached outside the repository:
#   OUTDIR/vmlinuz, OUTDIR/vmlinuz-virt, OUTDIR/initrd.gz (zstd-compressed), OUTDIR/version
#   (OUTDIR default ~/.cache/crowbar/discovery)
# Two kernels, one initrd holding the modules of both: vmlinuz is Debian's generic kernel (every
# machine), vmlinuz-virt Debian's cloud kernel (linux-image-cloud-amd64): LZ4 instead of xz, so
# it unpacks itself ~6 s of TCG CPU faster, but it has no e1000, e1000e, igb or AHCI (nor most
# physical NICs). The sledgehammer BootEnv gives it only to machines whose boot NIC is virtio
# (its `variants`; the agent sends a machine it cannot fully see back to the generic kernel,
# docs/adr/0032-discovery-kernel-variants.md).
# The cache key is a hash of this script, the agent, the shim and inittab: a changed one is
# rebuilt.
# usage: build.sh [OUTDIR]
set -eu
S=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${CROWBAR_DISCOVERY_DIR:-$HOME/.cache/crowbar/discovery}}
KEY=$(cat "$S/build.sh" "$S/agent" "$S/inittab" "$S/openssl" | sha256sum | cut -c1-16)
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/vmlinuz-virt" ] && [ -s "$OUT/initrd.gz" ] && [ "$(cat "$OUT/version" 2>/dev/null)" = "$KEY" ]; then
  exit 0
fi
W=$(mktemp -d /tmp/cbdisc-image-XXXXXX)
trap 'rm -rf "$W"' EXIT
kpkg() { apt-cache depends "$1" | awk '/Depends: linux-image-[0-9]/{print $2; exit}'; }
KPKG=$(kpkg linux-image-amd64)
VPKG=$(kpkg linux-image-cloud-amd64)
# apt-get warns that root downloads unsandboxed into a private temp dir: expected here.
dl() { (cd "$W" && apt-get download -q "$KPKG" "$VPKG" busybox-static dropbear-bin libtomcrypt1 libtommath1 util-linux openssl libssl3 >/dev/null 2>&1); }
# A fresh machine may have no package lists yet: update once and try again.
[ -n "$KPKG" ] && [ -n "$VPKG" ] && dl || { apt-get update -qq >/dev/null 2>&1; KPKG=$(kpkg linux-image-amd64); VPKG=$(kpkg linux-image-cloud-amd64); dl; } ||
  { echo "build.sh: apt-get download failed (is the Debian mirror reachable? run apt-get update)" >&2; exit 1; }
dpkg-deb -x "$W"/"$KPKG"_*.deb "$W/k"
dpkg-deb -x "$W"/"$VPKG"_*.deb "$W/v"
dpkg-deb -x "$W"/busybox-static_*.deb "$W/bb"
for p in dropbear-bin libtomcrypt1 libtommath1 util-linux openssl libssl3; do dpkg-deb -x "$W"/${p}_*.deb "$W/db"; done
KV=$(ls "$W/k/lib/modules" | head -1)
VV=$(ls "$W/v/lib/modules" | head -1)
R=$W/root
mkdir -p "$R/bin" "$R/sbin" "$R/etc/crowbar" "$R/etc/dropbear" "$R/root/.ssh" \
  "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/run" "$R/var/lib" "$R/usr/bin" "$R/usr/sbin"
chmod 700 "$R/root" "$R/root/.ssh"
chmod 1777 "$R/tmp"
cp "$W/bb/bin/busybox" "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do
  [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
done
ln -sf bin/busybox "$R/init"
# Modules: network (virtio, e1000/e1000e, igb), disks (virtio-blk, virtio-scsi, AHCI, NVMe), with
# every dependency, as each kernel's own modules.dep says (depmod from kmod on the extracted
# tree); the cloud kernel lacks some of them (modprobe finds nothing: skipped). The booted
# kernel's `uname -r` picks its tree.
modules() { # <extracted package dir> <kernel version>
  depmod -b "$1" "$2"
  mkdir -p "$R/lib/modules/$2"
  for m in virtio_pci virtio_net e1000 e1000e igb virtio_blk virtio_scsi sd_mod ahci nvme; do
    modprobe -d "$1" -S "$2" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'
  done | sort -u | while read -r f; do
    rel=${f#"$1"}
    mkdir -p "$R$(dirname "$rel")"
    cp "$f" "$R$rel"
  done
  for f in modules.order modules.builtin modules.builtin.modinfo; do
    cp "$1/lib/modules/$2/$f" "$R/lib/modules/$2/"
  done
  depmod -b "$R" "$2"
}
modules "$W/k" "$KV"
modules "$W/v" "$VV"
# dropbear, util-linux's flock (the script jig's runner locks its journal; busybox has no flock),
# openssl (busybox wget's https runs `openssl s_client`; the shim in PATH fixes busybox's
# arguments and always verifies; docs/adr/0019-node-api-tls-for-discovery.md) and the shared
# libraries they link (from this Debian's own packages). No openssl.cnf and no CA store: the only
# trust anchor is the node API's CA, /etc/crowbar/ca.pem, from the boot sidecar's CA initrd.
cp "$W/db/usr/sbin/dropbear" "$R/usr/sbin/dropbear"
cp "$W/db/usr/bin/flock" "$R/usr/bin/flock"
mkdir -p "$R/usr/lib/crowbar"
cp "$W/db/usr/bin/openssl" "$R/usr/lib/crowbar/openssl"
install -m 755 "$S/openssl" "$R/usr/bin/openssl"
DBLIB=$W/db/usr/lib/x86_64-linux-gnu
mkdir -p "$R/lib/x86_64-linux-gnu"
for b in "$W/db/usr/sbin/dropbear" "$W/db/usr/bin/flock" "$W/db/usr/bin/openssl"; do
  if LD_LIBRARY_PATH=$DBLIB ldd "$b" | grep -q 'not found'; then
    echo "build.sh: $b needs a library not in its packages:" >&2
    LD_LIBRARY_PATH=$DBLIB ldd "$b" >&2
    exit 1
  fi
  for lib in $(LD_LIBRARY_PATH=$DBLIB ldd "$b" | awk '/=> \//{print $3}'); do
    cp -L "$lib" "$R/lib/x86_64-linux-gnu/"
  done
done
mkdir -p "$R/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
install -m 755 "$S/agent" "$R/etc/crowbar/agent"
install -m 644 "$S/inittab" "$R/etc/inittab"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root::19000:0:99999:7:::\n' >"$R/etc/shadow"
chmod 600 "$R/etc/shadow"
printf 'root:x:0:\n' >"$R/etc/group"
printf '/bin/sh\n' >"$R/etc/shells"
printf 'PATH=/bin:/sbin:/usr/bin:/usr/sbin\nexport PATH\n' >"$R/etc/profile"
echo "$KEY" >"$R/etc/crowbar/image-version"
mkdir -p "$OUT"
# zstd, not gzip: the kernel unpacks the initramfs on the machine's one CPU before anything else
# runs (under TCG, gunzip of these 17 MB took 1.5 s of it) and zstd unpacks several times
# faster; it is smaller too (5.4 vs 6.9 MB to fetch). ADR 0027. The kernel reads the format from
# the magic number, so the file keeps its name (what every BootEnv names) and a gzipped CA or
# overlay initrd after it still unpacks.
(cd "$R" && find . | cpio -o -H newc --quiet -R 0:0 | zstd -q -19 -T0) >"$W/initrd.gz"
cp "$W/k/boot/vmlinuz-$KV" "$W/vmlinuz"
cp "$W/v/boot/vmlinuz-$VV" "$W/vmlinuz-virt"
mv "$W/initrd.gz" "$OUT/initrd.gz"
mv "$W/vmlinuz" "$OUT/vmlinuz"
mv "$W/vmlinuz-virt" "$OUT/vmlinuz-virt"
echo "$KEY" >"$OUT/version"
echo "discovery image $KEY (kernels $KV, $VV): $OUT"
