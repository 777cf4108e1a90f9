#!/usr/bin/env bash
# A Debian 12 system on a ZFS root, installed the way its users install one, for the Debian
# lab (debian_lab.py): two disks, each an ESP and a ZFS partition, the root pool a mirror
# made by Debian's own OpenZFS 2.1.11 on its own kernel 6.1 (the builder VM of LAB_ROW=zfs21),
# the debootstrapped root of debian-root.sh copied in, Debian's zfs-initramfs and
# systemd-boot set up, then zroam's .deb installed with `dpkg -i` inside the system (a
# chroot in the builder VM, the pool imported): its trigger runs update-initramfs, whose
# post-update hooks give the ESP the new image through kernel-install.
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

job() {
  cat <<JOB
# Where the builder's time goes, in its log: seconds since its kernel started; 
# also on the console, which the builder's serial log keeps even when the job times out.
t() { echo "LAB-T \$(cut -d' ' -f1 /proc/uptime) \$*" | tee /dev/console; }
$(lab_job_disks 2 "$LAB_OURS" 256M)
t disks
# The root pool as a Debian-on-ZFS guide makes it, by Debian's own zpool (2.1.11).
zpool create -f -o ashift=12 -o cachefile=none -O acltype=posixacl -O xattr=sa -O compression=lz4 \\
  -O relatime=on -O normalization=formD -O mountpoint=none -O canmount=off -R /mnt rpool mirror /dev/vda2 /dev/vdb2
zfs create -o canmount=off -o mountpoint=none rpool/ROOT
zfs create -o canmount=noauto -o mountpoint=/ rpool/ROOT/debian
zfs mount rpool/ROOT/debian
zpool set bootfs=rpool/ROOT/debian rpool
t pool
tar -xf /dev/vdc -C /mnt
t root copied
mkdir -p /tmp/p && tar -xf /dev/vdd -C /tmp/p
# The zfs modules, where DKMS would have put them.
mkdir -p /mnt/lib/modules/$kver/updates/dkms
cp /tmp/p/dkms/*.ko /mnt/lib/modules/$kver/updates/dkms/
mkdir -p /mnt/boot/efi /mnt/usr/local/sbin
mount -t vfat /dev/vda1 /mnt/boot/efi
esp=\$(blkid -s PARTUUID -o value /dev/vda1)
echo "PARTUUID=\$esp /boot/efi vfat umask=0077,nofail,x-systemd.device-timeout=10s 0 1" >> /mnt/etc/fstab
cp /tmp/p/zroam-lab.service /mnt/etc/systemd/system/
cp /tmp/p/zroam-lab /mnt/usr/local/sbin/ && chmod 0755 /mnt/usr/local/sbin/zroam-lab
cp /tmp/p/zroam.deb /mnt/tmp/
mount -t proc proc /mnt/proc; mount -t sysfs sys /mnt/sys; mount -o bind /dev /mnt/dev
# SYSTEMD_RELAX_ESP_CHECKS: bootctl and kernel-install look the ESP up through udev's
# /dev/block links, which the builder's devtmpfs lacks (systemd's switch for image builds).
chroot /mnt /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
  SYSTEMD_RELAX_ESP_CHECKS=1 sh -ex -c '
  depmod $kver
  zgenhostid -f $LAB_OURS
  systemd-machine-id-setup
  # zroam.esp.budget: copying a kernel and a 40 MB ramdisk under emulation takes longer than
  # the 15 s a real disk needs.
  echo "root=ZFS=rpool/ROOT/debian console=ttyS0 loglevel=4 zroam.esp.budget=90" > /etc/kernel/cmdline
  bootctl install --no-variables --esp-path=/boot/efi
  systemctl enable zroam-lab.service
  # Installing zroam: its trigger rebuilds the image, the hooks put it on the ESP.
  echo "LAB-T \$(cut -d" " -f1 /proc/uptime) set up" | tee /dev/console
  dpkg -i /tmp/zroam.deb
  echo "LAB-T \$(cut -d" " -f1 /proc/uptime) zroam installed" | tee /dev/console
  rm /tmp/zroam.deb
  lsinitramfs /boot/initrd.img-$kver | grep -E "usr/sbin/zroam|scripts/zfs\$"
  cat /etc/machine-id > /machine-id.lab
  find /boot/efi -type f | sort
'
t chroot done
mv /mnt/machine-id.lab /out/machine-id
echo "\$esp" > /out/esp-a; blkid -s PARTUUID -o value /dev/vdb1 > /out/esp-b
zpool get -H -o value guid rpool > /out/guid
umount /mnt/boot/efi /mnt/dev /mnt/sys /mnt/proc
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
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/p/dkms"
  cp "$deb" "$work/p/zroam.deb"
  # shellcheck disable=SC2046 # one word per module file
  cp $(dkms_ko "$tree") "$work/p/dkms/"
  marker_unit >"$work/p/zroam-lab.service"
  marker_script >"$work/p/zroam-lab"
  tar -cf "$work/payload.tar" -C "$work/p" .
  truncate -s 3G "$dir/vda.img" "$dir/vdb.img"
  job >"$dir/job.sh"
  LAB_JOB_TIMEOUT=2400 lab_run_job "$dir/job.sh" "$dir/out" "$dir/vda.img" "$dir/vdb.img" "$root_tar" "$work/payload.tar" >&2

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
