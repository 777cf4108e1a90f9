# shellcheck shell=sh
# shellcheck disable=SC2034 # the lists are read by the hooks that source this file
# What every zroam image takes, whichever generator builds it: sourced at image build time
# by the dracut (90zroam/module-setup.sh), initramfs-tools (hooks/zroam) and mkinitcpio
# (install/zroam) hooks, never copied into an image. `make install` puts it in
# PREFIX/lib/zroam/; each hook finds it from its own installed path, or in $ZROAM_LIBDIR
# (staged installs, tests). POSIX sh: initramfs-tools runs its hooks with /bin/sh.
# Definitions only.

# Disks move between buses: the common storage drivers, taken even in host-only images.
zroam_storage_drivers="ahci nvme virtio_blk virtio_scsi sd_mod xhci_pci ehci_pci usb_storage uas"
# ZFS on LUKS: zroam opens the containers itself (dm-crypt and the usual LUKS ciphers).
zroam_luks_drivers="dm_crypt xts algif_skcipher"

# The zroam binary to install: ZROAM_BIN overrides (staged installs, tests), else PATH,
# else make install's default. Prints the path; the caller checks it.
zroam_bin() {
    echo "${ZROAM_BIN:-$(command -v zroam || echo /usr/local/sbin/zroam)}"
}

# glibc loads libgcc_s at run time for zpool's threads; ldd does not list it. Prints the
# first that exists (Arch's, then Debian's multiarch ones); fails if there is none.
zroam_libgcc_s() (
    for l in /usr/lib/libgcc_s.so.1 /lib/x86_64-linux-gnu/libgcc_s.so.1 \
        /usr/lib/x86_64-linux-gnu/libgcc_s.so.1; do
        [ -e "$l" ] && { echo "$l"; return 0; }
    done
    return 1
)

# The files zroam reads from the image's /etc, staged under $1; prints each one's path
# relative to $1, one a line, for the caller to put into its image:
# - etc/zroam/root.pin: the root's identity. $ZROAM_PIN names a pin file to use (a stick's
#   image, staged builds); else `zroam pin` writes the pin of the pool that holds /.
# - etc/zroam/zroam.conf: the host's settings ($ZROAM_CONF, else /etc/zroam/zroam.conf).
# - etc/zroam/key.d/*: the key hooks ($ZROAM_KEYD, else /etc/zroam/key.d), executable ones,
#   and etc/zroam/creds/*.cred: keys sealed to the TPM for the tpm2-creds hook.
# - etc/motd: the login message of an SSH server in the image (dropbear-initramfs shows it):
#   run `zroam unlock`.
# - etc/shadow: root's entry only, and only when zroam.conf says shell=password.
zroam_stage_etc() (
    d=$1
    mkdir -p "$d/etc/zroam"
    if [ -n "${ZROAM_PIN:-}" ]; then
        cp "$ZROAM_PIN" "$d/etc/zroam/root.pin" && echo etc/zroam/root.pin
    elif "$(zroam_bin)" pin -o "$d/etc/zroam/root.pin" 2>"$d/pin.err"; then
        echo etc/zroam/root.pin
    else
        echo "zroam: this image carries no root pin: $(cat "$d/pin.err")" >&2
    fi
    rm -f "$d/pin.err"
    keyd=${ZROAM_KEYD:-/etc/zroam/key.d}
    for h in "$keyd"/*; do
        { [ -f "$h" ] && [ -x "$h" ]; } || continue
        mkdir -p "$d/etc/zroam/key.d"
        cp -p "$h" "$d/etc/zroam/key.d/" && echo "etc/zroam/key.d/${h##*/}"
    done
    for c in "${ZROAM_CREDS:-/etc/zroam/creds}"/*.cred; do
        [ -f "$c" ] || continue
        mkdir -p "$d/etc/zroam/creds"
        cp -p "$c" "$d/etc/zroam/creds/" && echo "etc/zroam/creds/${c##*/}"
    done
    "$(zroam_bin)" unlock --motd >"$d/etc/motd" && echo etc/motd
    conf=${ZROAM_CONF:-/etc/zroam/zroam.conf}
    [ -f "$conf" ] || return 0
    cp "$conf" "$d/etc/zroam/zroam.conf" && echo etc/zroam/zroam.conf
    if grep -Eq '^[[:space:]]*shell[[:space:]]*=[[:space:]]*"?password' "$conf"; then
        (umask 077 && grep '^root:' "${ZROAM_SHADOW:-/etc/shadow}" >"$d/etc/shadow") && echo etc/shadow
    fi
)
