#!/usr/bin/env bash
# The boot lab's ramdisk: zroam itself as /init (no shell script in the boot path), with
# zpool/zfs, kmod's modprobe, cryptsetup, the storage, dm-crypt and OpenZFS modules of the
# guest kernel, a static busybox for the emergency shell (and udhcpc/ip for remote
# unlock), and dropbear with virtio-net: the remote-unlock scenarios add an authorized_keys.
# Usage: boot-initrd.sh ZROAM_BINARY   -> prints the cached ramdisk's path
# LAB_ROW (builder.sh) picks the OpenZFS row: its kernel's modules and its zpool/zfs.
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=builder.sh
source "$here/builder.sh"

bin=$(realpath "$1")
# Modules the lab's buses need (virtio_pci: built into the host's kernel, a module in Debian
# 12's), plus OpenZFS and, for ESPs, vfat.
MODS=(virtio_pci virtio_blk virtio_scsi sd_mod ahci nvme xhci_pci usb_storage uas vfat nls_cp437 nls_ascii efivarfs
  dm_crypt xts algif_skcipher spl zfs virtio_net)

# The row's modules and kernel (LAB_MODROOT is / for the host's row, the staging tree's
# modules root for another row, whose tree also names the row's userland).
moddir=${LAB_MODROOT%/}/lib/modules/$LAB_KVER
key=$( (cat "$0" "$bin"; echo "$LAB_KVER" "${MODS[*]}"; sha256sum "$moddir/updates/dkms/zfs.ko"*
  [ -z "$LAB_ROW" ] || echo "row $LAB_ROW ${LAB_ROW_TREE##*/}") | sha256sum | cut -c1-16)
out=$ZROAM_LAB_CACHE/zroam-initrd${LAB_ROW:+-$LAB_ROW}-$key.cpio.gz
if [ ! -s "$out" ]; then
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root"/{bin,dev,proc,sys,run,sysroot,etc/zfs,tmp}
  install -m 0755 "$bin" "$root/init"
  cp /bin/busybox "$root/bin/busybox"
  for a in $(/bin/busybox --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
  for t in zpool zfs modprobe cryptsetup dropbear; do rm -f "$root/bin/$t"; lab_copy_exec "$root" "$t"; done
  # `zroam unlock` in an SSH session: the agent is /init under its own name.
  ln -s /init "$root/bin/zroam"
  mkdir -p "$root/root"
  echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
  cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$root/lib/x86_64-linux-gnu/"
  # Each module with its dependencies, at its usual path; depmod indexes just these. They go
  # in uncompressed: the kernel unpacking .ko.xz under emulation costs seconds per boot.
  # (dst: the module's path in the ramdisk, its path under the row's modules root)
  modprobe -d "$LAB_MODROOT" -S "$LAB_KVER" -a --show-depends "${MODS[@]}" | awk '$1 == "insmod" {print $2}' | sort -u |
    while read -r ko; do
      dst=$root${ko#"${LAB_MODROOT%/}"}
      case $ko in
        *.xz) mkdir -p "$(dirname "$dst")"; xz -dc "$ko" > "${dst%.xz}" ;;
        *) install -D -m 0644 "$ko" "$dst" ;;
      esac
    done
  cp "$moddir"/modules.{builtin,builtin.modinfo,order} "$root/lib/modules/$LAB_KVER/"
  depmod -b "$root" "$LAB_KVER"
  ln -s /proc/self/mounts "$root/etc/mtab"
  lab_hostid_file "$root/etc/hostid"
  mknod -m 0600 "$root/dev/console" c 5 1
  mkdir -p "$ZROAM_LAB_CACHE"
  (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
  mv "$out.tmp" "$out"
  lab_log "zroam ramdisk: $(du -h "$out" | cut -f1)"
fi
echo "$out"
