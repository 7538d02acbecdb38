#!/bin/bash
# A qemu VM's power, for the BMC emulators of the power driver tests. It is ipmi_sim's
# chassis_control program (lan.conf `chassis_control "<this> <state dir>"`: OpenIPMI's BMC
# simulator runs `<this> <dir> get power|boot` and `<this> <dir> set power|boot|reset <value>` for
# the IPMI chassis commands), and what the sushy-tools Redfish emulator's change notifications are
# turned into (test/harness/sushy.ts). It makes a real qemu VM start and stop.
#   <dir>/qemu-args   the VM's qemu arguments, one a line (written by the test)
#   <dir>/boot        the next boot device ipmi_sim was told (pxe, default, none, ...)
#   <dir>/qemu.pid    the running VM's pid (power is on while that process lives)
#   <dir>/boots.log   one line per power-on: the boot order it started with
set -euo pipefail
dir=$1 op=$2 parm=$3 val=${4:-}
pidf=$dir/qemu.pid

running() { [[ -s $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; }

power_on() {
  running && return 0
  local order=c
  [[ "$(cat "$dir/boot" 2>/dev/null || true)" == pxe ]] && order=n
  mapfile -t args <"$dir/qemu-args"
  rm -f "$pidf"
  qemu-system-x86_64 "${args[@]}" -boot "order=$order" -daemonize -pidfile "$pidf" \
    >>"$dir/qemu.log" 2>&1
  echo "$order" >>"$dir/boots.log"
  # IPMI boot flags without "persistent" apply to the next boot only (IPMI 2.0 §28.12).
  echo default >"$dir/boot"
}

power_off() {
  running || return 0
  local pid i
  pid=$(cat "$pidf")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidf"
}

case "$op $parm" in
  "get power") if running; then echo power:1; else echo power:0; fi ;;
  "get boot") echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
  "set power") if [[ $val == 1 ]]; then power_on; else power_off; fi ;;
  "set boot") echo "$val" >"$dir/boot" ;;
  "set reset") power_off; power_on ;;
  *) echo "unsupported: $op $parm" >&2; exit 1 ;;
esac
