#!/bin/sh
# Builds the PXE test image (cached): a Debian kernel and a busybox initramfs whose /init gets an
# address with udhcpc and POSTs a JSON callback to the URL on its kernel command line
# (pxetest.callback=...), then powers off. The kernel .deb is downloaded with apt-get and
# unpacked with dpkg-deb -x: nothing is installed. Recipe: shared/reference/PXE-LAB.md §4.
# usage: build-pxe-image.sh OUTDIR   -> OUTDIR/vmlinuz, OUTDIR/initrd.gz
set -eu
OUT=$1
[ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ] && exit 0
S=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/cbdhcp-image-XXXXXX)
trap 'rm -rf "$W"' EXIT
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
(cd "$W" && apt-get download -q "$KPKG" >/dev/null)
dpkg-deb -x "$W"/"$KPKG"_*.deb "$W/k"
KV=$(ls "$W/k/lib/modules" | head -1)
R=$W/root
mkdir -p "$R/bin" "$R/etc" "$R/lib/modules" "$R/dev" "$R/proc" "$R/sys"
cp /bin/busybox "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
install -m 755 "$S/pxe-image/init" "$R/init"
install -m 755 "$S/pxe-image/udhcpc.sh" "$R/etc/udhcpc.sh"
M=$W/k/lib/modules/$KV/kernel
for f in drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko net/core/failover.ko \
         drivers/net/net_failover.ko drivers/net/virtio_net.ko; do
  cp "$M/$f" "$R/lib/modules/"
done
mkdir -p "$OUT"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -9) > "$W/initrd.gz"
cp "$W/k/boot/vmlinuz-$KV" "$W/vmlinuz"
mv "$W/initrd.gz" "$OUT/initrd.gz"
mv "$W/vmlinuz" "$OUT/vmlinuz"
