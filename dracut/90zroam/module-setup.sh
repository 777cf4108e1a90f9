#!/bin/bash
# dracut module: zroam imports the ZFS root pool and mounts the boot environment at
# $NEWROOT; dracut (or systemd in the initrd) switches root. All decisions are zroam's.

# The binary to install; ZROAM_BIN overrides (staged installs, tests).
zroam_bin() {
    local b=${ZROAM_BIN:-$(command -v zroam || echo /usr/local/sbin/zroam)}
    [[ -x $b ]] && echo "$b"
}

check() {
    [[ -n $(zroam_bin) ]] || return 1
    require_binaries zpool zfs || return 1
    return 0
}

depends() {
    return 0
}

installkernel() {
    instmods -c zfs
    # Disks move between buses: take the common storage drivers even in host-only images.
    hostonly='' instmods ahci nvme virtio_blk virtio_scsi sd_mod xhci_pci ehci_pci usb_storage uas
    # ZFS on LUKS: zroam opens the containers itself (dm-crypt and the usual LUKS ciphers).
    hostonly='' instmods dm_crypt xts algif_skcipher
}

install() {
    inst_simple "$(zroam_bin)" /usr/sbin/zroam
    inst_multiple zpool zfs modprobe
    # Optional: cryptsetup for ZFS on LUKS; systemd-ask-password for passphrases when the
    # image has systemd's password agents (plymouth's own module brings plymouth).
    inst_multiple -o cryptsetup systemd-ask-password
    # glibc loads libgcc_s at run time for zpool's threads; ldd does not list it.
    inst_libdir_file "libgcc_s.so*"
    [[ -f /etc/hostid ]] && inst_simple -H /etc/hostid

    inst_hook cmdline 95 "$moddir/zroam-cmdline.sh"
    if dracut_module_included systemd; then
        inst_simple "$moddir/zroam.service" "$systemdsystemunitdir/zroam.service"
        $SYSTEMCTL -q --root "$initdir" add-requires initrd-root-fs.target zroam.service
    else
        inst_hook mount 90 "$moddir/zroam-mount.sh"
    fi

    # OpenZFS's 90zfs in the same image would import the pool by name and mount the root a
    # second time: zroam wins, so its root-mounting parts are taken out (it is installed
    # before this module: same priority, "zfs" sorts first). omit_dracutmodules+=" zroam "
    # gives the stock behaviour back.
    if dracut_module_included zfs; then
        local h=/lib/dracut/hooks
        rm -f "$initdir$h"/cmdline/95-parse-zfs.sh \
            "$initdir$h"/mount/98-mount-zfs.sh \
            "$initdir$h"/pre-mount/90-zfs-load-key.sh \
            "$initdir$systemdutildir"/system-generators/dracut-zfs-generator \
            "$initdir$systemdsystemconfdir"/initrd.target.wants/zfs-import.target \
            "$initdir$systemdsystemconfdir"/initrd-root-fs.target.requires/zfs-nonroot-necessities.service
    fi
}
