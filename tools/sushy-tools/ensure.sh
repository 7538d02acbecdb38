#!/usr/bin/env bash
# The sushy-tools Redfish emulator (PyPI) for the redfish power driver's tests: a venv under
# ~/.cache/crowbar (override with CROWBAR_SUSHY_DIR), from Debian's python3 and python3-venv,
# with the pinned requirements beside this script. Built only when missing; prints the venv.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${CROWBAR_SUSHY_DIR:-$HOME/.cache/crowbar/sushy-tools-2.2.0}
# A venv cannot be moved (its scripts name their interpreter's path): build it in place and write
# the copy of the requirements last, as the mark of a finished build.
if [[ ! -x $dir/bin/sushy-emulator ]] || ! cmp -s "$here/requirements.txt" "$dir/requirements.txt"; then
  rm -rf "$dir"
  /usr/bin/python3 -m venv "$dir" >&2
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$dir/requirements.txt"
fi
echo "$dir"
