#!/bin/sh
# Builds the STAND-IN INSTALLER overlay (tests only; see standin-installer/agent): a second
# initramfs loaded after the discovery image that replaces its agent.
# usage: build-standin.sh OUT.gz
set -eu
S=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d /tmp/pro-standin-XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/etc/crowbar"
install -m 755 "$S/standin-installer/agent" "$W/etc/crowbar/agent"
(cd "$W" && find . | cpio -o -H newc --quiet -R 0:0 | gzip -6) >"$1"
