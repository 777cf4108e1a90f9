#!/usr/bin/env bash
# Makes (once) a minimal Debian 12 "bookworm" root that can boot from a ZFS root pool, and
# prints the path of its tarball. The lab copies this tree into its pool images and then
# installs zroam's .deb into it, so the tree carries what a real ZFS-root system has and
# nothing that zroam would bring: the kernel, udev, systemd as init, initramfs-tools,
# OpenZFS's userland and its stock initramfs hook (the baseline), systemd-boot and the
# FAT tools for the ESPs, and binutils (objcopy: `zroam image` wraps a stick's kernel and
# ramdisk into one EFI file with it).
#
# The tarball is cached as $ZROAM_LAB_CACHE/debian-root-<key>.tar, <key> being the first
# 16 hex digits of this script's sha256: changing the recipe makes a new tarball, and a
# second run with the same recipe only prints the path.
#
# Usage: debian-root.sh        (as root; needs deb.debian.org)
set -euo pipefail

readonly SUITE=bookworm
readonly MIRROR=http://deb.debian.org/debian
readonly LAB_HOSTNAME=zroam-lab

cache=${ZROAM_LAB_CACHE:-/var/cache/zroam-lab}
self=$(readlink -f "${BASH_SOURCE[0]}")
key=$(sha256sum "$self" | cut -c1-16)
out=$cache/debian-root-$key.tar

log() { printf 'debian-root: %s\n' "$*" >&2; }

if [ -f "$out" ]; then
    echo "$out"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { log "must run as root (debootstrap, chroot, mounts)"; exit 1; }
mkdir -p "$cache"

# Two lab runs started together must not both spend minutes building the same tree: the
# second waits for the first and then finds the tarball.
exec 9>"$cache/.debian-root.lock"
flock 9
if [ -f "$out" ]; then
    echo "$out"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap >&2
fi

start=$(date +%s)
# The work directory is inside the cache so that the final mv is a rename on one
# filesystem: a reader never sees a half-written tarball.
work=$(mktemp -d "$cache/.debian-root-$key.XXXXXX")
root=$work/root

# Unmounts whatever is still mounted below the work directory (deepest first), then
# removes it: an interrupted build leaves neither mounts nor a half-made tree behind.
cleanup() {
    local m mounts
    if [ -d "$work" ]; then
        mounts=$(findmnt -rn -o TARGET | grep -F "$work/" | sort -r || true)
        for m in $mounts; do
            umount -l "$m" || true
        done
        rm -rf --one-file-system "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_root() {
    chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

# Stage 1: the base system. minbase keeps to Priority: required plus apt; the init, udev and
# initramfs-tools are what turns it into a system that boots by itself. contrib is named
# now so that the sources.list debootstrap writes already has it (OpenZFS is in contrib).
log "debootstrap $SUITE (minbase) from $MIRROR"
debootstrap --variant=minbase --components=main,contrib \
    --include=systemd-sysv,udev,kmod,initramfs-tools,zstd,busybox,dosfstools,ca-certificates \
    "$SUITE" "$root" "$MIRROR" >&2

# Keep the tree small: no documentation, manuals or translations in what dpkg unpacks from
# now on. The copyright files stay (they are the licences of what we redistribute).
cat >"$root/etc/dpkg/dpkg.cfg.d/01-lab-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
path-exclude=/usr/share/lintian/*
EOF
# Nor the kernel's drivers for hardware no lab guest has: graphics, sound, media, network
# cards and the network stack's extras, wireless, InfiniBand, the SCSI/SAS host adapters and
# PATA chips, the HID devices beyond a plain keyboard, the embedded-board buses (I2C, SPI,
# GPIO, MFD, pin control, ...), sensors and platform drivers. They are most of a kernel
# package's 400 MB, which every image would copy and the kernel update would unpack under
# emulation; and initramfs-tools' MODULES=most takes each of them into every image, with
# a few processes per module (realpath, readlink, cp, modinfo): 13,000 process starts, 13
# minutes of the kernel update under emulation. What the lab's machines have stays:
# virtio, AHCI, USB (xHCI, mass storage, UAS), NVMe, SCSI disks, device mapper and the
# file systems, so the image update-initramfs makes (still MODULES=most) carries every
# driver a disk moved between those buses needs. (bookworm's kernel packages ship
# /lib/modules, merged into /usr by a link: that is the path dpkg matches. Later
# path-include lines take files back out of an exclusion.)
m='/lib/modules/*/kernel'
{
  for d in gpu media net infiniband iio staging comedi scsi hid i2c spi gpio mfd pinctrl pwm \
    regulator reset phy mtd mmc memstick message firewire hwmon platform watchdog video misc \
    leds w1 edac isdn atm accessibility bluetooth thermal power nfc usb/serial usb/gadget \
    usb/misc usb/typec input/joystick input/touchscreen input/tablet input/misc; do
    echo "path-exclude=$m/drivers/$d/*"
  done
  for f in scsi/scsi_mod scsi/scsi_common scsi/sd_mod scsi/sr_mod scsi/sg scsi/virtio_scsi hid/hid \
    hid/hid-generic hid/usbhid/usbhid; do
    echo "path-include=$m/drivers/$f.ko*"
  done
  echo "path-exclude=$m/drivers/ata/pata_*"
  for d in sound net/wireless net/mac80211 net/bluetooth net/netfilter net/sched net/bridge \
    net/6lowpan net/atm net/can net/ieee802154 net/nfc net/rxrpc; do
    echo "path-exclude=$m/$d/*"
  done
} >"$root/etc/dpkg/dpkg.cfg.d/02-lab-nodrivers"

# Packages are installed into a tree, not a running system: no service may start on the
# host. The file is removed again before the tree is packed.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# The zfs kernel modules come from outside Debian's package system (the lab builds them
# with DKMS on the host). zfs-dkms must never come in: it would pull a compiler and kernel
# headers and try to build the modules in here. It is pinned away for good, so that a
# later apt-get in the lab cannot bring it either...
cat >"$root/etc/apt/preferences.d/no-zfs-dkms" <<'EOF'
Package: zfs-dkms
Pin: release *
Pin-Priority: -1
EOF

# ...and zfs-initramfs Depends on "zfs-modules | zfs-dkms", a hard dependency. A small
# local package provides the virtual zfs-modules and says where the modules really are.
dummy=$work/zfs-modules-external
mkdir -p "$dummy/DEBIAN"
cat >"$dummy/DEBIAN/control" <<'EOF'
Package: zfs-modules-external
Version: 1.0
Architecture: all
Maintainer: zroam lab <lab@localhost>
Provides: zfs-modules
Section: kernel
Priority: optional
Description: marker: the zfs kernel modules are installed outside the package system
 The zroam lab builds spl.ko and zfs.ko with DKMS on the host and copies them
 into this root's /lib/modules; this package only satisfies zfs-modules.
EOF
dpkg-deb --root-owner-group --build "$dummy" "$root/tmp/zfs-modules-external.deb" >/dev/null

# Stage 2, in the tree itself with apt: apt sees the pin and the provider, which
# debootstrap's own resolver would not. Recommends are off so that zfsutils-linux does not
# ask for zfs-dkms/zfs-zed and the kernel does not bring firmware and apparmor.
for fs in proc sys dev dev/pts; do
    mkdir -p "$root/$fs"
done
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"

in_root dpkg -i /tmp/zfs-modules-external.deb >&2
in_root apt-get update >&2
in_root apt-get install -y --no-install-recommends \
    linux-image-amd64 zfsutils-linux zfs-initramfs \
    systemd-boot systemd-boot-efi cryptsetup-bin binutils >&2

if in_root dpkg -s zfs-dkms >/dev/null 2>&1; then
    log "zfs-dkms got installed: the recipe is wrong"
    exit 1
fi

# Identity of one machine: a tree that is copied into several images must not give them
# all the same machine-id (systemd makes one at first boot when the file is empty) or the
# same ZFS hostid (each lab image sets its own with zgenhostid, it is part of what is
# tested). The hostname is the lab's.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root/etc/hostid"
echo "$LAB_HOSTNAME" >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
    "$LAB_HOSTNAME" >"$root/etc/hosts"

# zfsutils-linux's postinst made an /etc/hostid and the kernel's initramfs took it in:
# build the image again without it, so that the tree's initramfs agrees with its /etc.
in_root update-initramfs -u -k all >&2

for fs in dev/pts dev sys proc; do
    umount "$root/$fs"
done

# The root file system is a ZFS dataset that ZFS mounts itself (mountpoint=/): fstab has
# no line for it. The ESP lines are the lab's to add, per image.
cat >"$root/etc/fstab" <<'EOF'
# <file system> <mount point> <type> <options> <dump> <pass>
# / is a ZFS dataset, mounted by the initramfs; ZFS mounts the other datasets itself.
EOF

# What the exclusion file kept out from now on, removed from what debootstrap had already
# unpacked; and the downloads and package lists, which apt fetches again when needed.
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/man"/* "$root/usr/share/info"/* "$root/usr/share/lintian"/*
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin "$root/var/cache/apt/archives"/*.deb
rm -f "$root/usr/sbin/policy-rc.d" "$root/tmp/zfs-modules-external.deb"
rm -rf "$root/var/log"/*.log "$root/var/log/apt"/*
# debootstrap copied the host's resolver configuration in for the downloads: it is this
# host's, not the lab machine's.
rm -f "$root/etc/resolv.conf"

# Numeric owners (the host's names are not the tree's) and extended attributes (file
# capabilities) as they are.
tar --numeric-owner --xattrs --xattrs-include='*' -C "$root" -cf "$work/root.tar" .
mv -f "$work/root.tar" "$out"
log "built in $(($(date +%s) - start)) s: $(du -h "$out" | cut -f1)"
echo "$out"
