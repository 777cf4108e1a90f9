#!/bin/bash
# dracut module: zroam imports the ZFS root pool and mounts the boot environment at
# $NEWROOT; dracut (or systemd in the initrd) switches root. All decisions are zroam's.

# The generators' shared driver list and binary lookup: zroam-install.sh, installed in
# PREFIX/lib/zroam beside PREFIX/lib/dracut; ZROAM_LIBDIR overrides (staged installs,
# tests). dracut sets $moddir only while it calls check, installkernel and install: each
# loads it.
zroam_install_sh() {
    # shellcheck source=../../initramfs-tools/share/zroam-install.sh
    . "${ZROAM_LIBDIR:-$moddir/../../../zroam}/zroam-install.sh"
}

check() {
    zroam_install_sh || return 1
    [[ -x $(zroam_bin) ]] || return 1
    require_binaries zpool zfs || return 1
    return 0
}

depends() {
    return 0
}

installkernel() {
    zroam_install_sh || return 1
    local -a storage luks esp
    read -ra storage <<<"$zroam_storage_drivers"
    read -ra luks <<<"$zroam_luks_drivers"
    read -ra esp <<<"$zroam_esp_drivers"
    instmods -c zfs
    # Disks move between buses: take the common storage drivers even in host-only images.
    hostonly='' instmods "${storage[@]}"
    # ZFS on LUKS: zroam opens the containers itself (dm-crypt and the usual LUKS ciphers).
    hostonly='' instmods "${luks[@]}"
    # The ESP mirror: FAT and efivarfs.
    hostonly='' instmods "${esp[@]}"
}

# shellcheck disable=SC2154 # dracut sets $initdir and the systemd*dir paths for modules
install() {
    zroam_install_sh || return 1
    inst_simple "$(zroam_bin)" /usr/sbin/zroam
    inst_multiple zpool zfs modprobe
    # Optional: cryptsetup for ZFS on LUKS; systemd-ask-password for passphrases when the
    # image has systemd's password agents (plymouth's own module brings plymouth).
    inst_multiple -o cryptsetup systemd-ask-password
    local f
    if command -v cryptsetup >/dev/null; then
        for f in $(zroam_luks_extras); do
            inst_multiple -o "$f"
        done
    fi
    # glibc loads libgcc_s at run time for zpool's threads; ldd does not list it.
    inst_libdir_file "libgcc_s.so*"
    [[ -f /etc/hostid ]] && inst_simple -H /etc/hostid
    # The root pin, zroam.conf and (shell=password) root's shadow entry and sulogin.
    local etc
    etc=$(mktemp -d)
    for f in $(zroam_stage_etc "$etc"); do
        inst_simple "$etc/$f" "/$f"
        if [[ $f == etc/shadow ]]; then
            inst_multiple -o sulogin
            grep -qs '^root:' "$initdir/etc/passwd" || grep '^root:' /etc/passwd >>"$initdir/etc/passwd"
        fi
    done
    # What the key hooks need (their "# zroam-needs:" lines).
    for f in $(zroam_hook_needs "$etc"); do
        inst_multiple -o "$f"
    done
    rm -rf "$etc"

    inst_hook cmdline 95 "$moddir/zroam-cmdline.sh"
    # zfs.ko takes seconds to load: zroam preload starts it as early as the image allows,
    # while udev loads the drivers (a unit wanted by sysinit.target that nothing waits for;
    # without systemd a cmdline hook, after 01-parse-kernel's rd.driver.blacklist).
    if dracut_module_included systemd; then
        inst_simple "$moddir/zroam-preload.service" "$systemdsystemunitdir/zroam-preload.service"
        $SYSTEMCTL -q --root "$initdir" add-wants sysinit.target zroam-preload.service
        inst_simple "$moddir/zroam.service" "$systemdsystemunitdir/zroam.service"
        $SYSTEMCTL -q --root "$initdir" add-requires initrd-root-fs.target zroam.service
    else
        inst_hook cmdline 02 "$moddir/zroam-preload.sh"
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
