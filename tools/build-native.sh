#!/usr/bin/env bash
# Builds the sidecars' native UDP loops with the machine's C compiler against the Node-API headers
# of the npm package node-api-headers (Node-API is ABI stable: one build loads in every Node >= 22):
# the DNS sidecar's (dns-sidecar/native/udp.c, ADR 0020) and the DHCP sidecar's
# (dhcp-sidecar/native/udp4.c, ADR 0023). A sidecar serves UDP with dgram, and logs why, when its
# addon is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
inc="$root/node_modules/node-api-headers/include"
[ -f "$inc/node_api.h" ] || { echo "build-native: $inc/node_api.h missing (npm ci first)" >&2; exit 1; }
build() {
  local src="$1" out="$2"
  mkdir -p "$(dirname "$out")"
  "${CC:-cc}" -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
    -I"$inc" -o "$out.tmp" "$src" -pthread
  mv "$out.tmp" "$out"
}
build "$root/dns-sidecar/native/udp.c" "$root/dns-sidecar/native/build/crowbar_udp.node"
build "$root/dhcp-sidecar/native/udp4.c" "$root/dhcp-sidecar/native/build/crowbar_dhcp_udp.node"
