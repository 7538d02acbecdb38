#!/bin/sh
# Builds a partial Debian mirror (bookworm, main, amd64) from which Debian's own netboot installer
# (debian-installer-12-netboot-amd64, tools/fetch-debian-installer.sh) installs a whole system with
# no network but the test's: `make e2e-install` serves it from the boot sidecar's file root.
#
# Debian's own signed files, byte for byte, so that d-i checks Debian's real signature with its
# own keyring (no allow_unauthenticated): dists/bookworm/{InRelease,Release,Release.gpg} (checked
# here with gpgv against the machine's debian-archive-keyring first) and the indexes they hash
# (main/binary-amd64/Packages.{xz,gz} and its Release, main/debian-installer/binary-amd64/
# Packages.{xz,gz}, also under by-hash/SHA256/ where apt asks for them). Then the pool files, each
# checked against the SHA-256 its index gives:
#   - udebs for anna: every udeb for the netboot kernel's ABI (which must be the one of the
#     index's kernel udebs: both come from the same apt source; checked) and every udeb without
#     a kernel, less the graphical installer's and speech synthesis (text installer only);
#   - debs: what `apt-get -s install` (a private apt, empty status, Recommends on) resolves for
#     every Priority required and important package (debootstrap's base set) plus the kernel,
#     grub-pc, openssh-server and the ssh-server task, curl (late.sh's first boot) and what d-i
#     itself installs (console-setup, locales, discover, pciutils, usbutils, ...), a superset,
#     and what debootstrap itself resolves for the base system (debootstrap --print-debs).
# Everything goes through apt's own client (apt-helper download-file, apt-get -s) from the
# machine's apt source (deb.debian.org): a set-up step, never run by a test. Cached in OUTDIR
# (default ~/.cache/crowbar/debian-mirror), kept when complete for this recipe and this d-i.
# usage: debian-mirror.sh [OUTDIR]
set -eu
OUT=${1:-$HOME/.cache/crowbar/debian-mirror}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd) # apt's file: source takes an absolute path
DI=${CROWBAR_DI_DIR:-$HOME/.cache/crowbar/debian-installer}
BASE=${CROWBAR_DEBIAN_URL:-http://deb.debian.org/debian}
SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
HERE=$(cd "$(dirname "$0")" && pwd)
M=$OUT/debian
D=$M/dists/$SUITE

"$HERE/fetch-debian-installer.sh" "$DI" >/dev/null
# The netboot kernel's ABI: its initrd's only lib/modules/ directory.
ABI=$(zcat "$DI/debian-installer/amd64/initrd.gz" | cpio -t --quiet 2>/dev/null | sed -n 's|^lib/modules/\([^/]*\)$|\1|p' | head -n 1)
[ -n "$ABI" ] || { echo "debian-mirror.sh: no lib/modules/ in the netboot initrd" >&2; exit 1; }
RECIPE=$(cat "$0" | sha256sum | cut -c1-12)
STAMP=$OUT/.complete-$RECIPE-$ABI
[ -f "$STAMP" ] && { echo "debian-mirror: $M (cached, d-i kernel $ABI)"; exit 0; }

W=$(mktemp -d /tmp/cbmirror-XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$D"

# apt-helper download-file URI FILE [SHA256:hex] ..., many at once (apt's acquire runs them in
# parallel and checks each hash); a file already there with its hash is kept. What the registry
# refuses is listed in $W/refused ("relpath" lines), not fatal here: the caller decides.
AH="/usr/lib/apt/apt-helper -o APT::Sandbox::User=root download-file"
fetch_list() { # reads "relpath sha256" lines
  : >"$W/batch"
  while read -r rel sum; do
    if [ -f "$M/$rel" ] && [ "$(sha256sum "$M/$rel" | cut -d' ' -f1)" = "$sum" ]; then continue; fi
    mkdir -p "$(dirname "$M/$rel")"
    echo "$rel $sum" >>"$W/batch"
  done
  if [ -s "$W/batch" ]; then
    # shellcheck disable=SC2086
    awk -v b="$BASE" -v m="$M" '{print b "/" $1, m "/" $1, "SHA256:" $2}' "$W/batch" |
      xargs -n 150 $AH >>"$W/fetch.log" 2>&1 || true
  fi
  while read -r rel sum; do
    [ -f "$M/$rel" ] && [ "$(sha256sum "$M/$rel" | cut -d' ' -f1)" = "$sum" ] || echo "$rel" >>"$W/refused"
  done <"$W/batch"
}

# 1. The signed files: fetched fresh, checked with Debian's keyring before anything is used.
for f in InRelease Release Release.gpg; do
  $AH "$BASE/dists/$SUITE/$f" "$W/$f" >/dev/null 2>&1 ||
    { echo "debian-mirror.sh: cannot fetch $BASE/dists/$SUITE/$f" >&2; exit 1; }
done
# As d-i's net-retriever and apt take it: one good signature by a key of the keyring (Debian signs
# with two archive keys; a keyring may hold only one of them).
signed() { gpgv --status-fd 1 --keyring "$KEYRING" "$@" 2>/dev/null | grep -q '^\[GNUPG:\] VALIDSIG '; }
signed "$W/Release.gpg" "$W/Release" ||
  { echo "debian-mirror.sh: dists/$SUITE/Release does not verify against $KEYRING" >&2; exit 1; }
signed "$W/InRelease" ||
  { echo "debian-mirror.sh: dists/$SUITE/InRelease does not verify against $KEYRING" >&2; exit 1; }
cp "$W/InRelease" "$W/Release" "$W/Release.gpg" "$D/"

# 2. The indexes the Release hashes (its SHA256 section), and their by-hash copies.
sha_of() { awk -v f="$1" '/^SHA256:/{s=1;next} /^[^ ]/{s=0} s && $3==f {print $1}' "$D/Release"; }
for idx in main/binary-amd64/Packages.xz main/binary-amd64/Packages.gz main/binary-amd64/Release \
  main/debian-installer/binary-amd64/Packages.xz main/debian-installer/binary-amd64/Packages.gz; do
  sum=$(sha_of "$idx")
  [ -n "$sum" ] || { echo "debian-mirror.sh: $idx is not in dists/$SUITE/Release" >&2; exit 1; }
  echo "dists/$SUITE/$idx $sum"
done >"$W/idx"
: >"$W/refused"
fetch_list <"$W/idx"
[ ! -s "$W/refused" ] || { echo "debian-mirror.sh: the registry refused: $(cat "$W/refused")" >&2; exit 1; }
for idx in main/binary-amd64/Packages.xz main/binary-amd64/Packages.gz \
  main/debian-installer/binary-amd64/Packages.xz main/debian-installer/binary-amd64/Packages.gz; do
  sum=$(sha_of "$idx")
  mkdir -p "$D/$(dirname "$idx")/by-hash/SHA256"
  ln -f "$D/$idx" "$D/$(dirname "$idx")/by-hash/SHA256/$sum"
done

# Package stanzas as "name version filename sha256 size kernel priority" lines.
stanzas() {
  xz -dc "$1" | awk '
    function out() { if (p != "") print p, v, f, s, z, (k == "" ? "-" : k), (r == "" ? "-" : r); p = v = f = s = z = k = r = "" }
    /^Package: / { p = $2 } /^Version: / { v = $2 } /^Filename: / { f = $2 } /^SHA256: / { s = $2 }
    /^Size: / { z = $2 } /^Kernel-Version: / { k = $2 } /^Priority: / { r = $2 }
    /^$/ { out() } END { out() }'
}
stanzas "$D/main/debian-installer/binary-amd64/Packages.xz" >"$W/udebs"
stanzas "$D/main/binary-amd64/Packages.xz" >"$W/debs"

# 3. udebs: the netboot kernel's modules (the ABI must be in the index) and the rest of the text
# installer.
awk -v abi="$ABI" '$6 == abi' "$W/udebs" | grep -q . || {
  echo "debian-mirror.sh: the udeb index has no modules for the netboot kernel $ABI (kernels there: $(awk '$6 != "-" {print $6}' "$W/udebs" | sort -u | tr '\n' ' ')): fetch both from the same apt source" >&2
  exit 1
}
awk -v abi="$ABI" '($6 == abi || $6 == "-") && $1 !~ /gtk|^fonts-|^x11|xserver|directfb|brltty|espeak|speech|speakup/ {print $3, $4, $5}' "$W/udebs" >"$W/want-udebs"

# 4. debs: a private apt (its own state, no apt.conf.d of the machine) on the mirror's own dists/
# resolves the closure; apt-get update checks the dists/ files just fetched against Debian's key.
mkdir -p "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/none"
: >"$W/apt/status"
echo "deb [signed-by=$KEYRING] file:$M $SUITE main" >"$W/sources.list"
cat >"$W/apt.conf" <<EOF
Dir::Etc::Parts "$W/none";
Dir::Etc::SourceParts "$W/none";
Dir::Etc::SourceList "$W/sources.list";
Dir::Etc::Preferences "$W/none/p";
Dir::Etc::PreferencesParts "$W/none";
Dir::State "$W/apt";
Dir::State::Lists "$W/apt/lists";
Dir::State::status "$W/apt/status";
Dir::Cache "$W/apt/cache";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Install-Recommends "true";
Acquire::Languages "none";
EOF
export APT_CONFIG="$W/apt.conf"
apt-get update -qq >"$W/update.log" 2>&1 || { cat "$W/update.log" >&2; exit 1; }
BASESET=$(awk '$7 == "required" || $7 == "important" {print $1}' "$W/debs" | sort -u)
EXTRA="linux-image-amd64 grub-pc os-prober openssh-server task-ssh-server tasksel tasksel-data curl
  ca-certificates busybox initramfs-tools zstd console-setup keyboard-configuration locales discover
  pciutils usbutils eject laptop-detect popularity-contest installation-report apt-utils bzip2
  xz-utils libfribidi0 acpid acpi-support-base"
# shellcheck disable=SC2086
apt-get -s -y install $BASESET $EXTRA >"$W/sim" 2>&1 || { tail -n 30 "$W/sim" >&2; exit 1; }
sed -n 's/^Inst \([^ ]*\) (.*/\1/p' "$W/sim" >"$W/names"
# debootstrap (d-i's runs the same version) follows only the first alternative of a dependency,
# where apt may take another: its own resolution, --print-debs against the mirror's dists/, from
# debootstrap's package unpacked here (nothing installed).
unset APT_CONFIG
(cd "$W" && apt-get download -q debootstrap >/dev/null 2>&1) ||
  { echo "debian-mirror.sh: apt-get download debootstrap failed (run apt-get update?)" >&2; exit 1; }
dpkg-deb -x "$W"/debootstrap_*.deb "$W/ds"
DEBOOTSTRAP_DIR=$W/ds/usr/share/debootstrap "$W/ds/usr/sbin/debootstrap" --print-debs \
  --resolve-deps --arch=amd64 --keyring="$KEYRING" "$SUITE" "$W/target" "file://$M" >"$W/ds.out" 2>"$W/ds.err" ||
  { tail -n 20 "$W/ds.err" >&2; exit 1; }
tr ' ' '\n' <"$W/ds.out" | grep -E '^[a-z0-9][a-z0-9+.-]+$' >>"$W/names"
sort -u "$W/names" >"$W/inst"
awk 'NR == FNR { want[$1] = 1; next } $1 in want { print $3, $4, $5 }' "$W/inst" "$W/debs" >"$W/want-debs"
[ "$(wc -l <"$W/want-debs")" -eq "$(wc -l <"$W/inst")" ] ||
  { echo "debian-mirror.sh: some resolved packages are not in the index" >&2; exit 1; }

awk '{print $1, $2}' "$W/want-udebs" "$W/want-debs" | fetch_list
bytes=$(cat "$W/want-udebs" "$W/want-debs" | awk '{s += $3} END {print s}')
echo "$(wc -l <"$W/want-udebs") udebs, $(wc -l <"$W/want-debs") debs, $((bytes / 1048576)) MiB wanted; $(grep -c . "$W/refused" || true) refused by the registry" >"$OUT/CONTENTS"
sed 's|.*/||' "$W/refused" | sort >"$OUT/REFUSED"
# What anna loads on its own (Priority standard or higher, for this kernel, not in the netboot
# initrd) and what d-i's components load on demand (anna-install): the install cannot go without.
zcat "$DI/debian-installer/amd64/initrd.gz" | cpio -i --quiet --to-stdout var/lib/dpkg/status 2>/dev/null |
  awk '/^Package: /{print $2}' | sort -u >"$W/in-initrd"
xz -dc "$D/main/debian-installer/binary-amd64/Packages.xz" | awk -v abi="$ABI" '
  /^Package: /{p=$2} /^Priority: /{r=$2} /^Kernel-Version: /{k=$2}
  /^$/{ if ((k == "" || k == abi) && (r == "standard" || r == "important" || r == "required")) print p; p = r = k = "" }' |
  sort -u | comm -23 - "$W/in-initrd" >"$W/needed"
printf '%s\n' partman-partitioning debootstrap-udeb apt-mirror-setup tzsetup-udeb >>"$W/needed"
awk 'NR == FNR { need[$1] = 1; next } { n = $1; sub(/_.*/, "", n) } n in need { print n }' \
  "$W/needed" "$OUT/REFUSED" | sort -u >"$OUT/REFUSED-NEEDED"
if [ -s "$OUT/REFUSED-NEEDED" ]; then
  echo "debian-mirror.sh: $M is incomplete: $(cat "$OUT/CONTENTS")." >&2
  echo "  d-i cannot install without these udebs, which the package registry answers 404 for (while it serves their index, main/debian-installer/binary-amd64/Packages, and every deb): $(tr '\n' ' ' <"$OUT/REFUSED-NEEDED")" >&2
  echo "  all refused files: $OUT/REFUSED" >&2
  exit 2
fi
rm -f "$OUT"/.complete-*
touch "$STAMP"
echo "debian-mirror: $M ($(cat "$OUT/CONTENTS"); d-i kernel $ABI)"
