#!/usr/bin/env bash
# The boot lab's ramdisk, built by `zroam image` as users build theirs: zroam as /init,
# zpool/zfs, kmod, cryptsetup, busybox, the portable storage drivers, the lab's hostid; the
# lab adds dropbear and virtio_net (remote unlock). Cached by its inputs.
# Usage: boot-initrd.sh ZROAM_BINARY   -> prints the cached ramdisk's path
# LAB_ROW (builder.sh) picks the OpenZFS row: its kernel's modules and its zpool/zfs.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=builder.sh
source "$here/builder.sh"

bin=$(realpath "$1")
export ZROAM_LIBDIR=$here/../../initramfs-tools/share
moddir=${LAB_MODROOT%/}/lib/modules/$LAB_KVER
key=$( (cat "$0" "$bin" "$(dirname "$bin")/zroam-image" "$ZROAM_LIBDIR/zroam-install.sh"; echo "$LAB_KVER"; sha256sum "$moddir/updates/dkms/zfs.ko"*
  [ -z "$LAB_ROW" ] || echo "row $LAB_ROW ${LAB_ROW_TREE##*/}") | sha256sum | cut -c1-16)
out=$ZROAM_LAB_CACHE/zroam-image${LAB_ROW:+-$LAB_ROW}-$key.img
if [ ! -s "$out" ]; then
  mkdir -p "$ZROAM_LAB_CACHE"
  # No host LUKS to detect here: the lab's scenarios need it. The host has no pool of its
  # own: no pin (the scenarios add theirs).
  "$bin" image -o "$out" --kver "$LAB_KVER" --modules-root "$LAB_MODROOT" ${LAB_ZFS_ROOT:+--zfs-root "$LAB_ZFS_ROOT"} \
    --luks --hostid "$LAB_OURS" --include dropbear --modules virtio_net >&2
fi
echo "$out"
