#!/usr/bin/env bash
# Builds the sidecars' native UDP loops with the machine's C compiler against the Node-API headers
# of the npm package node-api-headers (Node-API is ABI stable: one build loads in every Node >= 22):
# the DNS sidecar's (dns-sidecar/native/udp.c, ADR 0020) and the DHCP sidecar's
# (dhcp-sidecar/native/udp4.c, ADR 0023), which share tools/native/napi-addon.h. A sidecar serves
# UDP with dgram, and logs why, when its addon is missing.
#
# `build-native.sh SRC OUT` builds one addon; with SANITIZE=1 under AddressSanitizer and UBSan
# (the tests' build: test/harness/sanitized-addon.ts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
inc="$root/node_modules/node-api-headers/include"
[ -f "$inc/node_api.h" ] || { echo "build-native: $inc/node_api.h missing (npm ci first)" >&2; exit 1; }
opt=(-O2 -g)
[ "${SANITIZE:-}" = 1 ] && opt=(-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer)
build() {
  local src="$1" out="$2"
  mkdir -p "$(dirname "$out")"
  "${CC:-cc}" "${opt[@]}" -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
    -I"$inc" -I"$root/tools/native" -o "$out.tmp" "$src" -pthread
  mv "$out.tmp" "$out"
}
if [ $# -eq 2 ]; then
  build "$1" "$2"
  exit 0
fi
[ $# -eq 0 ] || { echo "usage: build-native.sh [SRC OUT]" >&2; exit 2; }
build "$root/dns-sidecar/native/udp.c" "$root/dns-sidecar/native/build/crowbar_udp.node"
build "$root/dhcp-sidecar/native/udp4.c" "$root/dhcp-sidecar/native/build/crowbar_dhcp_udp.node"
