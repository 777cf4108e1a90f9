#!/usr/bin/env bash
# Images made by the real mkinitcpio v41: the snapshot in ../shared/vendor (never copied into
# the project) unpacked into the lab cache with its meson placeholders substituted for
# Debian's paths, and its `base` hook pointed at Debian's static busybox. Its hook
# directories hold zroam's install and runtime hooks as `make install` stages them and, for
# the stock cases, archzfs's `zfs` hook from the same vendor folder.
# Usage: real.sh ZROAM_BINARY STOCK [PIN] -> prints the image path
#   STOCK: without (HOOKS=(base udev block zroam)) | with (… zfs zroam) | only (… zfs)
#   LAB_KEYD=DIR: key hooks the image carries (ZROAM_KEYD), with what they need
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lab/builder.sh
source "$repo/tests/lab/builder.sh"
vendor=${ZROAM_VENDOR:-$repo/../shared/vendor}
bin=$(realpath "$1") stock=$2 pin=${3:-} keyd=${LAB_KEYD:-}
case $stock in with | without | only) ;; *) echo "real.sh: STOCK is with, without or only" >&2; exit 2 ;; esac

# mkinitcpio itself, once per snapshot and script.
src=$vendor/mkinitcpio-41.tar.gz zfshook=$vendor/archzfs-zfs-hook-d3fdb16.tar.gz
for f in "$src" "$zfshook"; do
  [ -r "$f" ] || { echo "lab: $f is missing: ZROAM_VENDOR names the folder of the lab's third-party snapshots" >&2; exit 1; }
done
mkkey=$( (cat "$0"; sha256sum "$src" "$zfshook") | sha256sum | cut -c1-16)
mk=$ZROAM_LAB_CACHE/mkinitcpio-41-$mkkey
if [ ! -x "$mk/lib/mkinitcpio" ]; then
  # Built aside and renamed: two cases of the lab may get here at once.
  mt=$(mktemp -d "$mk.XXXXXX")
  mkdir -p "$mt/lib" "$mt/zfs"
  tar -xzf "$src" -C "$mt/lib" --strip-components=1
  tar -xzf "$zfshook" -C "$mt/zfs" --strip-components=1
  # Meson's placeholders, for Debian; the library is the unpacked tree itself.
  grep -rlZ '@[A-Z_]*@' "$mt/lib" | xargs -0 sed -i \
    -e "s|@VERSION@|41|g" -e "s|@INITCPIO_LIBDIR@|$mk/lib|g" -e "s|@INITCPIO_SYSCONFDIR@|$mk/etc|g" \
    -e "s|@SYSCONFDIR@|$mk/etc|g" -e "s|@BINDIR@|$mk/bin:/usr/sbin:/usr/bin|g" -e "s|@UDEVD_PATH@|/lib/systemd/systemd-udevd|g" \
    -e "s|@TMPFILES_PATH@|/usr/bin/systemd-tmpfiles|g" -e "s|@VCONSOLE_CONF@|/etc/vconsole.conf|g"
  # Arch's paths, Debian's files: the static busybox (Arch ships it at
  # /usr/lib/initcpio/busybox), libkmod in the multiarch directory, no /etc/udev/hwdb.bin.
  sed -i "s|/usr/lib/initcpio/busybox|/bin/busybox|g" "$mt/lib/install/base"
  sed -i -e "s|/usr/lib/libkmod.so.2|/lib/x86_64-linux-gnu/libkmod.so.2|" -e "\|/etc/udev/hwdb.bin|d" "$mt/lib/install/udev"
  # archzfs's install hook, for Debian too: libgcc_s in the multiarch directory, and no
  # zinject (a fault-injection tool in Debian's zfs-test, not needed to boot).
  sed -i -e "s|/lib/libgcc_s.so.1|/lib/x86_64-linux-gnu/libgcc_s.so.1|" -e '/^ *zinject \\$/d' "$mt/zfs/zfs-utils.initcpio.install"
  chmod +x "$mt/lib/mkinitcpio"
  # mkinitcpio's awk is GNU awk (NUL record separators); Debian's default awk is mawk.
  # /usr/sbin comes before /usr/bin: a host link /usr/bin/X -> /sbin/X would become a loop
  # in Arch's layout, where usr/sbin links to bin.
  mkdir -p "$mt/bin" && ln -s /usr/bin/gawk "$mt/bin/awk"
  mkdir -p "$mt/etc"
  mv -T "$mt" "$mk" 2>/dev/null || rm -rf "$mt"
fi

key=$( (cat "$0" "$bin" "$repo"/mkinitcpio/*/zroam "$repo"/mkinitcpio/post/zroam-esp "$repo"/initramfs-tools/share/zroam-install.sh; echo "$mkkey $stock $LAB_KVER"
  [ -z "$pin" ] || cat "$pin"; [ -z "$keyd" ] || { echo keyd; cat "$keyd"/*; }) | sha256sum | cut -c1-16)
out=$ZROAM_LAB_CACHE/gen/mkinitcpio41-$stock${pin:+-pinned}${keyd:+-keyd}-$key.img
[ -s "$out" ] && { echo "$out"; exit 0; }
mkdir -p "$(dirname "$out")"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
make -s -C "$repo" install DESTDIR="$tmp/dest" PREFIX=/usr BIN="$bin" >/dev/null
mkdir -p "$tmp/hooks/install" "$tmp/hooks/hooks"
case $stock in
without) hooks="base udev block zroam" ;;
with) hooks="base udev block zfs zroam" ;;
only) hooks="base udev block zfs" ;;
esac
if [ "$stock" != only ]; then
  cp "$tmp/dest/usr/lib/initcpio/install/zroam" "$tmp/hooks/install/"
  cp "$tmp/dest/usr/lib/initcpio/hooks/zroam" "$tmp/hooks/hooks/"
fi
if [ "$stock" != without ]; then
  cp "$mk/zfs/zfs-utils.initcpio.install" "$tmp/hooks/install/zfs"
  cp "$mk/zfs/zfs-utils.initcpio.hook" "$tmp/hooks/hooks/zfs"
fi
# The lab's "own" machine's hostid, in the place of the host's (bound over /etc/hostid in
# mkinitcpio's mount namespace), as gen-images.sh does for the other generators.
lab_hostid_file "$tmp/hostid"
cat >"$tmp/mkinitcpio.conf" <<CONF
MODULES=()
BINARIES=()
FILES=()
HOOKS=($hooks)
COMPRESSION=gzip
CONF
# Nothing of the lab host's /etc/zroam: only what the case names.
# shellcheck disable=SC2016 # the inline script expands its own arguments
ZROAM_PIN=$pin ZROAM_KEYD=${keyd:-/nonexistent} ZROAM_CREDS=/nonexistent ZROAM_CONF=/nonexistent \
  ZROAM_BIN=$tmp/dest/usr/sbin/zroam ZROAM_LIBDIR=$tmp/dest/usr/lib/zroam \
  MKINITCPIO_INSTALL="$tmp/hooks/install:$mk/lib/install" MKINITCPIO_HOOKS="$tmp/hooks/hooks:$mk/lib/hooks" \
  unshare -m sh -c 'mount --bind "$0" /etc/hostid && exec "$@"' "$tmp/hostid" \
  "$mk/lib/mkinitcpio" -c "$tmp/mkinitcpio.conf" -k "$LAB_KVER" -g "$tmp/out.img" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log" >&2; echo "lab: mkinitcpio 41 ($stock stock) failed" >&2; exit 1; }
[ -n "${LAB_GEN_LOG:-}" ] && cp "$tmp/log" "$LAB_GEN_LOG"
mv "$tmp/out.img" "$out"
lab_log "mkinitcpio 41 image ($stock stock): $(du -h "$out" | cut -f1)"
echo "$out"
