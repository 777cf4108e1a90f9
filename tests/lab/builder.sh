#!/usr/bin/env bash
# The builder VM: the guest kernel with a throwaway busybox ramdisk that carries OpenZFS
# (zpool, zfs, zdb) and disk tools, used to make pool images with the real zpool — the
# host runs another kernel and cannot load the DKMS-built zfs.ko.
#
# Source it, then:
#   lab_builder_initrd            -> prints the cached ramdisk path (built once per hash)
#   lab_run_job JOB OUTDIR DISK.. -> boots the VM with DISK.. as virtio disks (vda, vdb, …),
#                                    runs JOB (a shell script) inside, and unpacks what the job
#                                    left in /out into OUTDIR (via a raw "out" disk, no 9p).
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=each.sh
source "$LAB_DIR/each.sh"
# shellcheck source=slots.sh
source "$LAB_DIR/slots.sh"
export ZROAM_LAB_CACHE=${ZROAM_LAB_CACHE:-/var/cache/zroam-lab}
# The lab's OpenZFS row. Unset: the host's OpenZFS (DKMS modules for the newest host
# kernel that has them, the host's zpool). LAB_ROW=zfs21: Debian 12's own OpenZFS 2.1.11
# on its kernel 6.1, built by zfs21.sh into a staging tree (kernel, modules, userland).
LAB_ROW=${LAB_ROW:-}
case "$LAB_ROW" in
  "")
    LAB_KVER=$("$LAB_DIR/guest-kernel.sh")
    LAB_KERNEL=/boot/vmlinuz-$LAB_KVER
    LAB_MODROOT=/
    LAB_ZFS_ROOT=
    ;;
  zfs21)
    LAB_ROW_TREE=$("$LAB_DIR/zfs21.sh" base)
    LAB_KVER=$(cat "$LAB_ROW_TREE/KVER")
    LAB_KERNEL=$LAB_ROW_TREE/vmlinuz
    LAB_MODROOT=$LAB_ROW_TREE/modules
    LAB_ZFS_ROOT=$LAB_ROW_TREE/root
    ;;
  *) echo "lab: unknown LAB_ROW '$LAB_ROW' (empty or zfs21)" >&2; exit 2 ;;
esac
# The lab's hostids: the builder's own ("our" pools, the ramdisks' /etc/hostid) and another
# machine's.
LAB_OURS=5eed1234
# shellcheck disable=SC2034 # for the scripts that source this file
LAB_FOREIGN=0badcafe
# Storage and filesystem modules the lab's guests may need, plus OpenZFS. virtio_pci is
# built into the host's kernel but a module in Debian 12's 6.1: without it no virtio disk.
LAB_MODULES=(virtio_pci virtio_blk virtio_scsi sd_mod ahci nvme xhci_pci usb_storage uas vfat nls_cp437
  nls_ascii efivarfs loop raid1 dm_crypt xts algif_skcipher spl zfs)
LAB_TOOLS=(zpool zfs zdb zgenhostid sgdisk mkfs.vfat blkid wipefs mdadm cryptsetup)

lab_log() { echo "lab: $*" >&2; }

# Name of the Nth virtio disk (0 -> vda).
lab_disk_name() { printf 'vd%b' "\\x$(printf %x $((97 + $1)))"; }

# Byte offset and size of partition N of a disk image, from sgdisk: "OFFSET SIZE".
lab_part_geom() {
  local info first last
  info=$(sgdisk -i "$2" "$1")
  first=$(awk '/^First sector:/ {print $3}' <<<"$info")
  last=$(awk '/^Last sector:/ {print $3}' <<<"$info")
  echo "$((first * 512)) $(((last - first + 1) * 512))"
}

# Job lines (for lab_run_job) that set the builder's hostid and give each of the first N
# virtio disks an ESP (FAT32, 64 MiB unless ESP_SIZE says otherwise) and a ZFS partition
# (the rest): lab_job_disks N HOSTID [ESP_SIZE]
lab_job_disks() {
  local n=$1 esp=${3:-64M} disks="" i
  for ((i = 0; i < n; i++)); do disks+=" $(lab_disk_name $i)"; done
  cat <<JOB
zgenhostid -f $2
for d in$disks; do
  sgdisk -n1:0:+$esp -t1:EF00 -c1:EFI -n2:0:0 -t2:BF01 -c2:zfs /dev/\$d
  blockdev --rereadpt /dev/\$d
done
# devtmpfs creates partition nodes asynchronously: wait (bounded) for them.
for d in$disks; do
  i=0; while [ ! -b /dev/\${d}2 ] && [ \$i -lt 100 ]; do sleep 0.05; i=\$((i+1)); done
  mkfs.vfat -F 32 -n EFI /dev/\${d}1 2>&1 | grep -v codepage
done
JOB
}

# /etc/hostid bytes (little-endian) of a hostid: lab_hostid_file PATH [HOSTID] (ours by default).
lab_hostid_file() {
  local h=${2:-$LAB_OURS}
  printf '%b' "\\x${h:6:2}\\x${h:4:2}\\x${h:2:2}\\x${h:0:2}" >"$1"
}

# Copy a binary and the shared libraries it needs into a ramdisk tree. OpenZFS's tools come
# from the row's tree when it has its own userland; its libraries are found there first
# (2.1's libnvpair.so.3 and libuutil.so.3 share their sonames with the host's 2.3) and keep
# their paths relative to that tree.
lab_copy_exec() {
  local root=$1 bin lib libpath=
  if [ -n "$LAB_ZFS_ROOT" ] && [ -x "$LAB_ZFS_ROOT/sbin/$2" ]; then
    bin=$LAB_ZFS_ROOT/sbin/$2
    libpath=$LAB_ZFS_ROOT/lib/x86_64-linux-gnu
  else
    bin=$(command -v "$2") || { echo "lab: $2 is not installed on the host (tests/lab/host-setup.sh)" >&2; return 1; }
  fi
  install -D -m 0755 "$bin" "$root/bin/$(basename "$bin")"
  for lib in $(LD_LIBRARY_PATH=$libpath ldd "$bin" 2>/dev/null | grep -o '/[^ ]*'); do
    [ -e "$root${lib#"$LAB_ZFS_ROOT"}" ] || install -D -m 0755 "$lib" "$root${lib#"$LAB_ZFS_ROOT"}"
  done
}

# Unpack kernel modules (with their dependencies, in load order) into a ramdisk tree;
# Debian ships .ko.xz, which busybox insmod cannot read, so they are decompressed here.
lab_copy_modules() {
  local root=$1; shift
  local order=$root/etc/modules.order ko dst
  : > "$order"
  modprobe -d "$LAB_MODROOT" -S "$LAB_KVER" -a --show-depends "$@" | awk '$1 == "insmod" {print $2}' |
    while read -r ko; do
      dst=/lib/modules/$(basename "${ko%.xz}")
      grep -qxF "$dst" "$order" && continue
      mkdir -p "$root/lib/modules"
      case "$ko" in
        *.xz) xz -dc "$ko" > "$root$dst" ;;
        *.zst) zstd -qdc "$ko" > "$root$dst" ;;
        *) cp "$ko" "$root$dst" ;;
      esac
      echo "$dst" >> "$order"
    done
}

lab_builder_initrd() {
  local key out root
  key=$( (cat "${BASH_SOURCE[0]}"; echo "$LAB_ROW $LAB_KVER"; sha256sum "$LAB_MODROOT/lib/modules/$LAB_KVER/updates/dkms/zfs.ko"*) |
    sha256sum | cut -c1-16)
  out=$ZROAM_LAB_CACHE/builder-$key.cpio.gz
  if [ ! -s "$out" ]; then
    lab_log "building the builder ramdisk for $LAB_KVER"
    mkdir -p "$ZROAM_LAB_CACHE"
    root=$(mktemp -d)
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,etc,mnt,out}
    cp /bin/busybox "$root/bin/busybox"
    for t in "${LAB_TOOLS[@]}"; do lab_copy_exec "$root" "$t"; done
    # zpool loads libgcc_s at run time (thread cancellation) without listing it.
    cp -L /lib/x86_64-linux-gnu/libgcc_s.so.1 "$root/lib/x86_64-linux-gnu/"
    lab_copy_modules "$root" "${LAB_MODULES[@]}"
    # For `zpool create -o compatibility=…`.
    if [ -d "${LAB_ZFS_ROOT:-}/usr/share/zfs/compatibility.d" ]; then
      mkdir -p "$root/usr/share/zfs"
      cp -a "$LAB_ZFS_ROOT/usr/share/zfs/compatibility.d" "$root/usr/share/zfs/"
    fi
    ln -s /proc/self/mounts "$root/etc/mtab"
    cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in $(cat /etc/modules.order); do insmod "$m" 2>/dev/null; done
out=$(sed -n 's/.*lab\.out=\([a-z]*\).*/\1/p' /proc/cmdline)
i=0; while [ ! -b "/dev/$out" ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done
[ -b "/dev/$out" ] || echo "LAB: out disk /dev/$out never appeared"
echo "LAB: job starts"
cd /out && sh -e -x /job.sh > /out/job.log 2>&1; echo $? > /out/rc
echo "LAB: job rc=$(cat /out/rc)"; tail -n 20 /out/job.log
tar -cf "/dev/$out" -C /out . && sync
poweroff -f
INIT
    chmod +x "$root/init"
    (cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$root"
  fi
  echo "$out"
}

# lab_run_job JOB OUTDIR DISK...
lab_run_job() {
  local job=$1 outdir=$2; shift 2
  local initrd work n=0 args=() rc
  initrd=$(lab_builder_initrd)
  work=$(mktemp -d)
  mkdir -p "$work/root" "$outdir"
  cp "$job" "$work/root/job.sh"
  # A second cpio appended to the first: the kernel unpacks both.
  (cd "$work/root" && echo job.sh | cpio -o -H newc --quiet | gzip -1) > "$work/job.cpio"
  cat "$initrd" "$work/job.cpio" > "$work/initrd"
  for d in "$@"; do args+=(-drive "file=$d,format=raw,if=virtio,cache=unsafe"); n=$((n + 1)); done
  truncate -s 64M "$work/out.img"
  args+=(-drive "file=$work/out.img,format=raw,if=virtio")
  local t0=$SECONDS
  # The guest's vCPUs hold the host's cores (slots.sh) while it runs.
  if ! lab_slots "${LAB_JOB_SMP:-2}" timeout "${LAB_JOB_TIMEOUT:-600}" qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp "${LAB_JOB_SMP:-2}" -m 2048 -nographic \
      -no-reboot -nodefaults -serial stdio -kernel "$LAB_KERNEL" -initrd "$work/initrd" \
      -append "console=ttyS0 panic=-1 quiet lab.out=$(lab_disk_name $n)" "${args[@]}" > "$outdir/serial.log" 2>&1; then
    lab_log "builder VM failed or timed out; serial log: $outdir/serial.log"
    rm -rf "$work"; return 1
  fi
  tar -xf "$work/out.img" -C "$outdir" 2>/dev/null || true
  rm -rf "$work"
  rc=$(cat "$outdir/rc" 2>/dev/null || echo missing)
  lab_log "job $(basename "$job") finished in $((SECONDS - t0)) s (rc=$rc)"
  if [ "$rc" != 0 ]; then
    lab_log "job failed; see $outdir/job.log and $outdir/serial.log"
    tail -n 30 "$outdir/job.log" "$outdir/serial.log" >&2 || true
    return 1
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    initrd) lab_builder_initrd ;;
    run) shift; lab_run_job "$@" ;;
    *) echo "usage: builder.sh initrd | run JOB OUTDIR DISK..." >&2; exit 2 ;;
  esac
fi
