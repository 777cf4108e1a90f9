#!/usr/bin/env bash
# Installs what the VM lab needs on a Debian 12 host: QEMU and OpenZFS 2.3 from
# bookworm-backports (the ZFS modules are built by DKMS for the guest kernel), plus the
# small tools used to assemble ramdisks and disk images, and shellcheck for `make lint`.
# Idempotent: a stamp file keyed by this script's hash makes the second run free.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stamp=/var/lib/zroam-lab/host-setup.$(sha256sum "$0" | cut -c1-16)
[ -e "$stamp" ] && exit 0

export DEBIAN_FRONTEND=noninteractive
sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# contrib for bookworm (zfs lives there), backports for OpenZFS 2.3 and QEMU 10.
if ! grep -rqs 'contrib' /etc/apt/sources.list.d/debian.sources; then
  sudo_ sed -i '/^Suites: bookworm bookworm-updates/{n;s/^Components: main$/Components: main contrib/}' \
    /etc/apt/sources.list.d/debian.sources
fi
if [ ! -e /etc/apt/sources.list.d/backports.sources ]; then
  sudo_ tee /etc/apt/sources.list.d/backports.sources >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
sudo_ apt-get update -q

sudo_ apt-get install -y -q --no-install-recommends \
  busybox-static cpio gdisk dosfstools mtools ovmf systemd-boot-efi kmod xz-utils zstd \
  file jq util-linux fdisk mdadm cryptsetup-bin dracut-core shellcheck openssl \
  dropbear-bin openssh-client swtpm swtpm-tools libtss2-esys-3.0.2-0 libtss2-mu0 libtss2-rc0 \
  libtss2-tcti-device0 libtss2-tctildr0 clevis clevis-luks jose tang-common socat curl scdoc libarchive-tools gawk debootstrap
sudo_ apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
# zfs-dkms pulls the backports kernel (image + headers) and builds spl/zfs for it.
sudo_ apt-get install -y -q -t bookworm-backports zfs-dkms zfsutils-linux

# The guest kernel is the newest installed kernel that has DKMS-built zfs.ko.
kver=$("$here/guest-kernel.sh")
echo "lab: guest kernel $kver"
sudo_ mkdir -p "$(dirname "$stamp")"
sudo_ touch "$stamp"
