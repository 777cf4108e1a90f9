#!/usr/bin/env bash
# Ramdisks made by the real generators for the guest kernel, with zroam installed the way a
# package would (`make install DESTDIR=…`), optionally beside OpenZFS's own zfs-dracut /
# zfs-initramfs. The host keeps its own /usr: each generator runs in a private mount
# namespace where the staged files are bind-mounted at the paths the generator reads
# (/usr/lib/dracut/modules.d, /usr/share/initramfs-tools) and /etc/hostid is the lab's.
# Usage: gen-images.sh ZROAM_BINARY KIND STOCK [PIN] -> prints the cached ramdisk's path
#   KIND: dracut-systemd | dracut-shell | initramfs-tools     STOCK: with | without | only
#   (only: OpenZFS's own module and no zroam, the benchmark's baseline)
#   PIN: a root pin file the hooks install (ZROAM_PIN), as `zroam pin` makes it on a host
#   whose / is on ZFS; without it the images carry none (the lab host's / is not ZFS).
#   LAB_DROPBEAR=PUBKEY (initramfs-tools): Debian's dropbear-initramfs beside zroam, set up
#   as its README says (a host key, PUBKEY as authorized_keys) in an overlay of /etc that
#   only the generator's namespace sees.
#   LAB_KEYD=DIR: key hooks the image carries (ZROAM_KEYD), with what they need; without it
#   none (never the lab host's /etc/zroam/key.d).
#   LAB_PLYMOUTH=THEME (dracut-*): Debian's plymouth, unpacked and laid over /usr, with
#   THEME (text or details) set in an overlay of /etc; dracut's plymouth module takes it.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=builder.sh
source "$here/builder.sh"

bin=$(realpath "$1") kind=$2 stock=$3 pin=${4:-} dropbear=${LAB_DROPBEAR:-} plymouth=${LAB_PLYMOUTH:-} keyd=${LAB_KEYD:-}
[ -z "$dropbear" ] || [ "$kind" = initramfs-tools ] || { echo "LAB_DROPBEAR is for initramfs-tools" >&2; exit 2; }
case $kind:$plymouth in *: | dracut-*:text | dracut-*:details) ;; *) echo "LAB_PLYMOUTH is text or details, for dracut" >&2; exit 2 ;; esac
case $kind in dracut-systemd | dracut-shell | initramfs-tools) ;; *) echo "unknown kind $kind" >&2; exit 2 ;; esac
case $stock in with | without | only) ;; *) echo "stock must be with, without or only" >&2; exit 2 ;; esac

# A stock-only image does not depend on zroam: it survives rebuilds of the binary.
key=$( (cd "$repo" && cat "$here/gen-images.sh"
  [ "$stock" = only ] || { cat "$bin" Makefile; find dracut/90zroam initramfs-tools -type f | LC_ALL=C sort | xargs cat; }
  [ -z "$pin" ] || cat "$pin"
  [ -z "$dropbear" ] || { echo dropbear; cat "$dropbear"; }
  [ -z "$plymouth" ] || echo "plymouth $plymouth"
  [ -z "$keyd" ] || { echo keyd; cat "$keyd"/*; }
  echo "$LAB_KVER $kind $stock"; dpkg-query -W dracut-core initramfs-tools zfsutils-linux) | sha256sum | cut -c1-16)
out=$ZROAM_LAB_CACHE/gen/$kind-$stock${pin:+-pinned}${dropbear:+-dropbear}${plymouth:+-plymouth}${keyd:+-keyd}-$key.img
[ -s "$out" ] && { echo "$out"; exit 0; }
mkdir -p "$(dirname "$out")"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# zroam as a package would install it.
make -s -C "$repo" install DESTDIR="$tmp/dest" PREFIX=/usr BIN="$bin" >/dev/null
# Debian packages the lab lays over the host's tree: NAME[=VERSION]... unpacked into
# $tmp/DIR, downloaded or, offline, taken from the lab cache.
unpack() {
  local into=$tmp/$1 d f deb
  shift
  mkdir -p "$ZROAM_LAB_CACHE/debs" "$into"
  for d in "$@"; do
    f=${d%%=*}
    (cd "$tmp" && apt-get download -q "$d" >/dev/null 2>&1) || cp "$ZROAM_LAB_CACHE/debs/${f}"_*.deb "$tmp/"
    cp -n "$tmp/${f}"_*.deb "$ZROAM_LAB_CACHE/debs/" 2>/dev/null || true
    for deb in "$tmp/${f}"_*.deb; do dpkg-deb -x "$deb" "$into"; done
  done
}
# OpenZFS's generator support, unpacked from the Debian packages of the installed OpenZFS.
if [ "$stock" != without ]; then
  ver=$(dpkg-query -W -f '${Version}' zfsutils-linux)
  unpack stock "zfs-dracut=$ver" "zfs-initramfs=$ver"
fi
lab_hostid_file "$tmp/hostid"

# The generator's directory as it would be with the packages installed.
view=$tmp/view
case $kind in
dracut-*)
  mkdir -p "$view"
  cp -a /usr/lib/dracut/modules.d/. "$view/"
  [ "$stock" != only ] && cp -a "$tmp/dest/usr/lib/dracut/modules.d/." "$view/"
  [ "$stock" != without ] && cp -a "$tmp/stock/usr/lib/dracut/modules.d/." "$view/"
  mnt=/usr/lib/dracut/modules.d
  case $stock in without) mods="zroam" ;; with) mods="zroam zfs" ;; only) mods="zfs" ;; esac
  omit=""
  [ "$kind" = dracut-shell ] && omit="systemd systemd-initrd dracut-systemd"
  gen=(dracut --force --no-hostonly --no-early-microcode --reproducible --compress gzip
    --add "$mods" ${omit:+--omit "$omit"} --kver "$LAB_KVER" "$tmp/out.img")
  if [ -n "$plymouth" ]; then
    unpack plymouth plymouth libplymouth5
    mkdir -p "$tmp/etc-up/plymouth" "$tmp/etc-work"
    printf '[Daemon]\nTheme=%s\n' "$plymouth" >"$tmp/etc-up/plymouth/plymouthd.conf"
    cp "$tmp/hostid" "$tmp/etc-up/hostid"
    # shellcheck disable=SC2016 # the inline script expands its own arguments
    # The overlay of /usr covers the view bound at dracut's modules.d: bound again on it.
    gen=(sh -c 'mount -t overlay overlay -o "lowerdir=$0/plymouth/usr:/usr" /usr &&
      mount --bind "$0/view" /usr/lib/dracut/modules.d &&
      mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0/etc-up,workdir=$0/etc-work" /etc && exec "$@"' "$tmp" "${gen[@]}")
  fi
  ;;
initramfs-tools)
  mkdir -p "$view"
  cp -a /usr/share/initramfs-tools/. "$view/"
  [ "$stock" != only ] && cp -a "$tmp/dest/usr/share/initramfs-tools/." "$view/"
  [ "$stock" != without ] && cp -a "$tmp/stock/usr/share/initramfs-tools/." "$view/"
  mnt=/usr/share/initramfs-tools
  gen=(mkinitramfs -o "$tmp/out.img" "$LAB_KVER")
  if [ -n "$dropbear" ]; then
    unpack dropbear dropbear-initramfs
    cp -a "$tmp/dropbear/usr/share/initramfs-tools/." "$view/"
    # What the package's postinst and its README leave in /etc/dropbear/initramfs.
    mkdir -p "$tmp/etc-up/dropbear/initramfs" "$tmp/etc-work"
    cp "$tmp/dropbear/etc/dropbear/initramfs/dropbear.conf" "$tmp/etc-up/dropbear/initramfs/"
    cp "$dropbear" "$tmp/etc-up/dropbear/initramfs/authorized_keys"
    dropbearkey -t ed25519 -f "$tmp/etc-up/dropbear/initramfs/dropbear_ed25519_host_key" >/dev/null 2>&1
    # The overlay covers the bind-mounted /etc/hostid: the lab's goes in it too.
    cp "$tmp/hostid" "$tmp/etc-up/hostid"
    # shellcheck disable=SC2016 # the inline script expands its own arguments
    gen=(sh -c 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$0/etc-up,workdir=$0/etc-work" /etc && exec "$@"' "$tmp" "${gen[@]}")
  fi
  ;;
esac

# The generators reset PATH: ZROAM_BIN names the staged binary, ZROAM_LIBDIR the staged
# install helper (PREFIX/lib/zroam is not in the view); each hook honours them.
# shellcheck disable=SC2016 # the inline script expands its own arguments
# Nothing of the lab host's /etc/zroam goes in: only what the case names.
ZROAM_PIN=$pin ZROAM_KEYD=${keyd:-/nonexistent} ZROAM_CREDS=/nonexistent ZROAM_CONF=/nonexistent ZROAM_BIN=$tmp/dest/usr/sbin/zroam ZROAM_LIBDIR=$tmp/dest/usr/lib/zroam \
  unshare -m bash -c '
  set -e
  mount --bind "$1" "$2"
  mount --bind "$3" /etc/hostid
  shift 3
  "$@"' gen "$view" "$mnt" "$tmp/hostid" "${gen[@]}" >"$tmp/log" 2>&1 ||
  { cat "$tmp/log" >&2; echo "lab: $kind ($stock stock) failed" >&2; exit 1; }
[ -n "${LAB_GEN_LOG:-}" ] && cp "$tmp/log" "$LAB_GEN_LOG"
mv "$tmp/out.img" "$out"
lab_log "$kind ramdisk ($stock OpenZFS's own module): $(du -h "$out" | cut -f1)"
echo "$out"
