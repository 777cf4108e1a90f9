#!/usr/bin/env bash
# mkinitcpio is not packaged in Debian: this harness implements the part of its build API
# that install hooks call (add_binary, add_module, add_file, add_dir, add_symlink,
# add_runscript), records every call, and packs a busybox image whose /init follows
# mkinitcpio's runtime contract (cmdline as shell variables, run_hook of each hook, then
# "$mount_handler" /new_root, then switch_root). It runs zroam's real install and runtime
# hooks (mkinitcpio/install/zroam, mkinitcpio/hooks/zroam).
# Usage: harness.sh ZROAM_BINARY [PIN] -> prints the image path; IMAGE.calls lists the API
# calls. PIN: a root pin file the install hook puts in the image (ZROAM_PIN). LAB_KEYD: a
# directory of key hooks the image carries (ZROAM_KEYD), with what they need.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lab/builder.sh
source "$repo/tests/lab/builder.sh"

ZROAM_BIN=$(realpath "$1")
# The hook is sourced from the source tree: its shared install helper is there too.
ZROAM_LIBDIR=$repo/initramfs-tools/share
ZROAM_PIN=${2:+$(realpath "$2")}
# LAB_KEYD: key hooks the image carries (never the lab host's /etc/zroam/key.d).
ZROAM_KEYD=${LAB_KEYD:-/nonexistent} ZROAM_CREDS=/nonexistent ZROAM_CONF=/nonexistent
export ZROAM_BIN ZROAM_LIBDIR ZROAM_PIN ZROAM_KEYD ZROAM_CREDS ZROAM_CONF
HOSTID=5eed1234
key=$( (cat "$0" "$ZROAM_BIN" "$repo"/mkinitcpio/*/zroam "$ZROAM_LIBDIR"/zroam-install.sh; echo "$LAB_KVER"
  [ -z "$ZROAM_PIN" ] || cat "$ZROAM_PIN"; [ -z "${LAB_KEYD:-}" ] || cat "$LAB_KEYD"/*) | sha256sum | cut -c1-16)
out=$ZROAM_LAB_CACHE/gen/mkinitcpio${ZROAM_PIN:+-pinned}${LAB_KEYD:+-keyd}-$key.img
[ -s "$out" ] && { echo "$out"; exit 0; }
mkdir -p "$(dirname "$out")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
BUILDROOT=$work/root
calls=$work/calls
mkdir -p "$BUILDROOT"/{usr/bin,usr/lib,dev,proc,sys,run,new_root,etc,hooks}
# Arch's merged layout. Relative links only: the harness writes through them from the host.
ln -s usr/bin "$BUILDROOT/bin"
ln -s usr/bin "$BUILDROOT/sbin"
ln -s bin "$BUILDROOT/usr/sbin"
ln -s usr/lib "$BUILDROOT/lib"
ln -s usr/lib "$BUILDROOT/lib64"
: >"$calls"
record() { echo "$*" >>"$calls"; }

# --- the build API, as mkinitcpio's functions behave for these arguments ---
add_dir() { record add_dir "$@"; mkdir -p "$BUILDROOT$1"; }
add_symlink() { record add_symlink "$@"; mkdir -p "$(dirname "$BUILDROOT$1")"; ln -sfn "${2:-$(readlink -f "$1")}" "$BUILDROOT$1"; }
add_file() {
  record add_file "$@"
  local dest=${2:-$1}
  install -D -m "${3:-0644}" "$1" "$BUILDROOT$dest"
}
add_binary() {
  record add_binary "$@"
  local src=$1 dest=${2:-} lib
  [[ $src == /* ]] || src=$(command -v "$src") || { echo "harness: add_binary: $1 not found" >&2; return 1; }
  [[ -e $src ]] || { echo "harness: add_binary: $src not found" >&2; return 1; }
  dest=${dest:-$src}
  install -D -m 0755 "$src" "$BUILDROOT$dest"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$BUILDROOT$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$BUILDROOT$lib"
  done
}
EARLY=()
add_module() {
  record add_module "$@"
  local name=${1%\?} ko
  local deps
  if ! deps=$(modprobe -S "$LAB_KVER" --show-depends "$name" 2>/dev/null); then
    [[ $1 == *\? ]] && return 0
    echo "harness: add_module: $name not found for $LAB_KVER" >&2
    return 1
  fi
  while read -r ko; do
    case $ko in
    *.xz) mkdir -p "$(dirname "$BUILDROOT$ko")"; xz -dc "$ko" >"$BUILDROOT${ko%.xz}" ;;
    *) install -D -m 0644 "$ko" "$BUILDROOT$ko" ;;
    esac
  done < <(awk '$1 == "insmod" {print $2}' <<<"$deps")
  EARLY+=("$name")
}
add_runscript() {
  record add_runscript
  install -D -m 0755 "$hookdir/hooks/$hook" "$BUILDROOT/hooks/$hook"
  HOOKS+=("$hook")
}
# Not implemented here: a hook that calls them fails loudly instead of half-working.
for f in add_full_dir add_checked_modules add_all_modules add_firmware add_udev_rule; do
  eval "$f() { echo \"harness: $f is not implemented\" >&2; return 1; }"
done

# --- the "base" hook's share: busybox, kmod, the mtab link ---
install -m 0755 /bin/busybox "$BUILDROOT/usr/bin/busybox"
for a in $(/bin/busybox --list); do [ -e "$BUILDROOT/usr/bin/$a" ] || ln -s busybox "$BUILDROOT/usr/bin/$a"; done
rm -f "$BUILDROOT/usr/bin/modprobe"
add_binary modprobe /usr/bin/modprobe
add_symlink /etc/mtab /proc/self/mounts

# --- the hook under test ---
HOOKS=()
hookdir=$repo/mkinitcpio
hook=zroam
# shellcheck source=../../mkinitcpio/install/zroam
source "$hookdir/install/$hook"
build
help >"$work/help"
[ -s "$work/help" ] || { echo "harness: help() printed nothing" >&2; exit 1; }
# The hostid of the lab's "own" machine (the image takes the host's through add_file).
printf '%b' "\\x${HOSTID:6:2}\\x${HOSTID:4:2}\\x${HOSTID:2:2}\\x${HOSTID:0:2}" >"$BUILDROOT/etc/hostid"

cp /lib/modules/"$LAB_KVER"/modules.{builtin,builtin.modinfo,order} "$BUILDROOT/lib/modules/$LAB_KVER/"
depmod -b "$BUILDROOT" "$LAB_KVER"
printf 'HOOKS="%s"\nEARLYMODULES="%s"\n' "${HOOKS[*]}" "${EARLY[*]}" >"$BUILDROOT/config"
install -m 0755 "$here/init" "$BUILDROOT/init"
mknod -m 0600 "$BUILDROOT/dev/console" c 5 1
(cd "$BUILDROOT" && find . | cpio -o -H newc --quiet | gzip -1) >"$out.tmp"
mv "$out.tmp" "$out"
cp "$calls" "$out.calls"
lab_log "mkinitcpio harness image: $(du -h "$out" | cut -f1)"
echo "$out"
