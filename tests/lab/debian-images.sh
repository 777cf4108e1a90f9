#!/usr/bin/env bash
# A Debian 12 system on a ZFS root, installed the way its users install one, for the Debian
# lab (debian_lab.py): two disks, each an ESP and a ZFS partition, the root pool a mirror
# made by Debian's own OpenZFS 2.1.11 on its own kernel 6.1 (the builder VM of LAB_ROW=zfs21),
# the debootstrapped root of debian-root.sh copied in, Debian's zfs-initramfs and
# systemd-boot set up, then zroam's .deb installed with `dpkg -i` inside the system: its
# trigger runs update-initramfs, whose post-update hooks give the ESP the new image through
# kernel-install.
#
# Staged, as image builders do, because update-initramfs under emulation takes 9 minutes:
#   1. the builder VM makes the pool and writes the root pin (`zroam pin --pool`);
#   2. on the host, in a chroot of the system's tree (no host device inside it), the
#      system's own dpkg installs zroam with ZROAM_PIN naming that pin (zroam's hooks honour
#      it for staged builds: the host's / is not the pool) and update-initramfs, bootctl and
#      kernel-install fill /boot and the ESP's tree, natively;
#   3. the builder VM copies the tree into the pool and the ESP's files onto the first ESP.
#
# Usage: debian-images.sh ZROAM_DEB   -> prints the directory: vda.img, vdb.img,
#          manifest.json (pool GUID, kernel release, the ESPs' PARTUUIDs)
#        debian-images.sh --update    -> prints the directory of the kernel update the lab
#          installs later: the new kernel's package, its zfs modules' package, KVER
# Cached by the hash of this script and its inputs (the root, the 2.1 tree, the .deb, the
# builder ramdisk; the update: the update row's tree).
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
export LAB_ROW=zfs21
# shellcheck source=builder.sh
source "$here/builder.sh"

dkms_ko() { ls "$1/modules/lib/modules/$(cat "$1/KVER")/updates/dkms/"*.ko; }

# The kernel update, as Debian ships it: the new kernel's own package, and the zfs modules
# for it packaged the way a DKMS-less system would get them. Its own cache directory: the
# disks do not wait for its compile.
update_dir() {
  local upd_tree upd_kver dir work
  upd_tree=$("$here/zfs21.sh" update)
  upd_kver=$(cat "$upd_tree/KVER")
  dir=$ZROAM_LAB_CACHE/debian-update-$( (cat "$0"; basename "$upd_tree") | sha256sum | cut -c1-16)
  if [ ! -s "$dir/KVER" ]; then
    work=$(mktemp -d "$ZROAM_LAB_CACHE/.debian-update.XXXXXX")
    trap 'rm -rf "${work:-}"' EXIT
    mkdir -p "$work/zm/DEBIAN" "$work/zm/lib/modules/$upd_kver/updates/dkms" "$work/out"
    cp "$upd_tree/debs/linux-image-${upd_kver}_"*.deb "$work/out/"
    # shellcheck disable=SC2046 # one word per module file
    cp $(dkms_ko "$upd_tree") "$work/zm/lib/modules/$upd_kver/updates/dkms/"
    cat >"$work/zm/DEBIAN/control" <<CONTROL
Package: zfs-modules-$upd_kver
Version: $(cat "$upd_tree/ZFS_VERSION")
Architecture: amd64
Maintainer: zroam lab <lab@localhost>
Provides: zfs-modules
Section: kernel
Priority: optional
Description: OpenZFS $(cat "$upd_tree/ZFS_VERSION") modules for Linux $upd_kver (built by the lab)
CONTROL
    dpkg-deb --root-owner-group --build "$work/zm" "$work/out/zfs-modules-$upd_kver.deb" >/dev/null
    echo "$upd_kver" >"$work/out/KVER"
    rm -rf "$dir"
    mv -T "$work/out" "$dir"
    rm -rf "$work"
    trap - EXIT
  fi
  echo "$dir"
}

if [ "${1:-}" = --update ]; then
  update_dir
  exit 0
fi

deb=$(realpath "$1")
root_tar=$("$here/debian-root.sh")
tree=$LAB_ROW_TREE
kver=$LAB_KVER

# What the guest's console shows once the system is up: the marker the lab waits for, the
# report, the pool, then the job of a "labjob" disk if there is one (the kernel update),
# then power off.
marker_unit() {
  cat <<'UNIT'
[Unit]
Description=zroam lab: report the boot on the serial console, run the lab's job, power off
After=multi-user.target
[Service]
Type=oneshot
# A kernel update under emulation takes minutes, not systemd's default 90 s; the lab bounds
# the whole boot from outside.
TimeoutStartSec=30min
ExecStart=/usr/local/sbin/zroam-lab
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
UNIT
}

marker_script() {
  cat <<'SCRIPT'
#!/bin/sh
# The lab's view of a boot that reached multi-user.target (zroam-lab.service).
target=$(systemctl is-active multi-user.target)
up=$(systemctl show -P UserspaceTimestampMonotonic)
root=$(findmnt -n -o SOURCE /)
ro=rw; findmnt -n -o OPTIONS / | grep -qE '(^|,)ro(,|$)' && ro=ro
echo "ZROAM-BE-INIT be=$root uptime=$((up / 1000000)).$(printf %06d $((up % 1000000)) | cut -c1-2) root=$ro child=no target=$target kernel=$(uname -r)"
systemd-analyze 2>/dev/null | head -n 1
echo "ZROAM-REPORT-BEGIN"; cat /run/zroam/report.json 2>/dev/null; echo; echo "ZROAM-REPORT-END"
echo "ZROAM-POOL-BEGIN"; zpool status -P rpool; echo "ZROAM-POOL-END"
# /boot/efi is the first disk's ESP (fstab, nofail): once udev has seen the disks, wait for
# its mount when that ESP is here, so that the lab's job finds it; alone, the second disk
# boots without it.
udevadm settle -t 60 || true
esp=$(awk '$2 == "/boot/efi" {print $1}' /etc/fstab)
if [ -e "/dev/disk/by-partuuid/${esp#PARTUUID=}" ]; then systemctl start boot-efi.mount || true; fi
findmnt -n /boot/efi || echo "LAB: /boot/efi not mounted"
job=/dev/disk/by-id/virtio-labjob
if [ -b "$job" ]; then
  mkdir -p /run/labjob && tar -xf "$job" -C /run/labjob
  echo "LAB: job starts"
  (cd /run/labjob && sh -ex ./job.sh) 2>&1
  echo "LAB: job rc=$?"
fi
sync
systemctl poweroff
SCRIPT
}

# Where the builder's time goes, in its log: seconds since its kernel started; also on the
# console, which the builder's serial log keeps even when a job times out.
timer() {
  cat <<'JOB'
t() { echo "LAB-T $(cut -d' ' -f1 /proc/uptime) $*" | tee /dev/console; }
JOB
}

# Stage 1 (disks vda, vdb; vdc: zroam's binary): the pool, its pin, the ESPs' PARTUUIDs.
pool_job() {
  timer
  cat <<JOB
$(lab_job_disks 2 "$LAB_OURS" 256M)
t disks
# The root pool as a Debian-on-ZFS guide makes it, by Debian's own zpool (2.1.11).
zpool create -f -o ashift=12 -o cachefile=none -O acltype=posixacl -O xattr=sa -O compression=lz4 \\
  -O relatime=on -O normalization=formD -O mountpoint=none -O canmount=off -R /mnt rpool mirror /dev/vda2 /dev/vdb2
zfs create -o canmount=off -o mountpoint=none rpool/ROOT
zfs create -o canmount=noauto -o mountpoint=/ rpool/ROOT/debian
zpool set bootfs=rpool/ROOT/debian rpool
t pool
mkdir -p /tmp/z && tar -xf /dev/vdc -C /tmp/z
/tmp/z/zroam pin --pool rpool -o /out/root.pin
blkid -s PARTUUID -o value /dev/vda1 > /out/esp-a
blkid -s PARTUUID -o value /dev/vdb1 > /out/esp-b
zpool get -H -o value guid rpool > /out/guid
zpool export rpool
JOB
}

# Stage 2, on the host: the system's own tools in a chroot of its tree. The chroot gets
# /proc and a /dev of its own with no block device: nothing run in it (zroam's ESP hooks
# look for the root's ESPs) can reach a disk of the host.
stage_tree() {
  local root=$1 p=$2 esp_a=$3 esp_tar=$4
  tar --numeric-owner --xattrs --xattrs-include='*' -xf "$root_tar" -C "$root"
  # The zfs modules, where DKMS would have put them.
  mkdir -p "$root/lib/modules/$kver/updates/dkms" "$root/boot/efi" "$root/usr/local/sbin"
  # shellcheck disable=SC2046 # one word per module file
  cp $(dkms_ko "$tree") "$root/lib/modules/$kver/updates/dkms/"
  # The ESP as Debian's installer writes it, plus nofail: the second disk boots alone too.
  echo "PARTUUID=$esp_a /boot/efi vfat umask=0077,nofail 0 1" >>"$root/etc/fstab"
  marker_unit >"$root/etc/systemd/system/zroam-lab.service"
  marker_script >"$root/usr/local/sbin/zroam-lab" && chmod 0755 "$root/usr/local/sbin/zroam-lab"
  cp "$deb" "$root/tmp/zroam.deb"
  cp "$p/root.pin" "$root/tmp/root.pin"
  mount -t proc proc "$root/proc"
  # The ESP's stand-in: a file system of its own, as bootctl wants; its files go onto the
  # real ESP in stage 3.
  mount -t tmpfs -o size=256m,mode=0700 esp "$root/boot/efi"
  mount -t tmpfs -o mode=0755 dev "$root/dev"
  mknod -m 0666 "$root/dev/null" c 1 3; mknod -m 0666 "$root/dev/zero" c 1 5
  mknod -m 0666 "$root/dev/random" c 1 8; mknod -m 0666 "$root/dev/urandom" c 1 9
  mknod -m 0666 "$root/dev/tty" c 5 0
  ln -s /proc/self/fd "$root/dev/fd"
  # SYSTEMD_RELAX_ESP_CHECKS: bootctl and kernel-install take /boot/efi for the ESP though
  # it is a directory here (systemd's switch for image builds).
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    SYSTEMD_RELAX_ESP_CHECKS=1 ZROAM_PIN=/tmp/root.pin sh -ex -c "
    depmod $kver
    zgenhostid -f $LAB_OURS
    systemd-machine-id-setup
    # zroam.esp.budget: copying a kernel and a 40 MB ramdisk under emulation takes longer
    # than the 15 s a real disk needs.
    echo 'root=ZFS=rpool/ROOT/debian console=ttyS0 loglevel=4 zroam.esp.budget=90' > /etc/kernel/cmdline
    bootctl install --no-variables --esp-path=/boot/efi
    systemctl enable zroam-lab.service
    # The lab reads the serial console: no login prompt there, whose start hangs the line
    # up under the marker's output.
    systemctl mask serial-getty@ttyS0.service
    # Installing zroam: its trigger rebuilds the image, the hooks put it on the ESP.
    dpkg -i /tmp/zroam.deb
    rm /tmp/zroam.deb /tmp/root.pin
    for f in usr/sbin/zroam etc/zroam/root.pin scripts/zfs; do
      lsinitramfs /boot/initrd.img-$kver | grep -qx \"\$f\" || { echo \"the image lacks \$f\"; exit 1; }
    done
  " >&2
  umount "$root/dev" "$root/proc"
  cp "$root/etc/machine-id" "$p/machine-id"
  find "$root/boot/efi" -type f | sort >&2
  tar -cf "$esp_tar" -C "$root/boot/efi" .
  umount "$root/boot/efi"
}

# Stage 3 (disks vda, vdb; vdc: the tree; vdd: the ESP's files): into the pool.
copy_job() {
  timer
  cat <<JOB
zgenhostid -f $LAB_OURS
zpool import -N -R /mnt rpool
zfs mount rpool/ROOT/debian
tar -xf /dev/vdc -C /mnt
t root copied
mkdir -p /tmp/esp && tar -xf /dev/vdd -C /tmp/esp
mount -t vfat /dev/vda1 /mnt/boot/efi
cp -r /tmp/esp/. /mnt/boot/efi/
find /mnt/boot/efi -type f | sort
umount /mnt/boot/efi
t esp copied
zfs umount -a || true
zpool export rpool
JOB
}

key=$( (cat "$0" "$deb"; basename "$root_tar"; basename "$tree"; basename "$(lab_builder_initrd)") |
  sha256sum | cut -c1-16)
dir=$ZROAM_LAB_CACHE/debian-images
if [ "$(cat "$dir/key" 2>/dev/null)" != "$key" ]; then
  rm -rf "$dir"
  mkdir -p "$dir"
  work=$(mktemp -d "$ZROAM_LAB_CACHE/.debian-images.XXXXXX")
  trap 'umount "$work/root/dev" "$work/root/proc" "$work/root/boot/efi" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
  mkdir -p "$work/z" "$work/root"
  dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/sbin/zroam >"$work/z/zroam" && chmod 0755 "$work/z/zroam"
  tar -cf "$work/zroam.tar" -C "$work/z" zroam
  truncate -s 3G "$dir/vda.img" "$dir/vdb.img"
  pool_job >"$dir/pool-job.sh"
  lab_run_job "$dir/pool-job.sh" "$dir/out" "$dir/vda.img" "$dir/vdb.img" "$work/zroam.tar" >&2
  t0=$SECONDS
  stage_tree "$work/root" "$dir/out" "$(cat "$dir/out/esp-a")" "$work/esp.tar"
  tar --numeric-owner --xattrs --xattrs-include='*' -cf "$work/tree.tar" -C "$work/root" .
  rm -rf --one-file-system "$work/root"
  lab_log "the system's tree staged on the host in $((SECONDS - t0)) s"
  copy_job >"$dir/copy-job.sh"
  lab_run_job "$dir/copy-job.sh" "$dir/out2" "$dir/vda.img" "$dir/vdb.img" "$work/tree.tar" "$work/esp.tar" >&2

  python3 - "$dir" "$kver" <<'PY'
import json, sys
d, kver = sys.argv[1:]
out = lambda n: open(f"{d}/out/{n}").read().strip()
json.dump({"pool": "rpool", "pool_guid": out("guid"), "kver": kver,
           "machine_id": out("machine-id"), "esp": [out("esp-a"), out("esp-b")],
           "disks": [f"{d}/vda.img", f"{d}/vdb.img"]}, open(f"{d}/manifest.json", "w"), indent=1)
PY
  echo "$key" >"$dir/key"
fi
echo "$dir"
