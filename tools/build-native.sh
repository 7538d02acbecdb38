#!/usr/bin/env bash
# Builds the DNS sidecar's native UDP loop (dns-sidecar/native/udp.c, ADR 0020) with the machine's
# C compiler against the Node-API headers of the npm package node-api-headers (Node-API is ABI
# stable: one build loads in every Node >= 22). The sidecar serves UDP with dgram, and logs why,
# when the result is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/dns-sidecar/native/udp.c"
out="$root/dns-sidecar/native/build/crowbar_udp.node"
inc="$root/node_modules/node-api-headers/include"
[ -f "$inc/node_api.h" ] || { echo "build-native: $inc/node_api.h missing (npm ci first)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"${CC:-cc}" -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
  -I"$inc" -o "$out.tmp" "$src" -pthread
mv "$out.tmp" "$out"
