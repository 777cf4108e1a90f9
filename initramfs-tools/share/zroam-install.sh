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
# The ESP mirror: FAT with the codepage and charset zroam mounts it with, and efivarfs (which
# ESP the firmware booted). Distribution kernels build them as modules that no generator
# takes for a ZFS root; without them the ESP stage can only report.
zroam_esp_drivers="vfat nls_cp437 nls_ascii efivarfs"

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

# Directories a library named without a path is looked for in (Debian's multiarch ones,
# then Arch's and Fedora's).
zroam_libdirs="/lib/x86_64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/lib /usr/lib64 /lib"

# The files NAME stands for on this host, one a line: an absolute path (a shell pattern) as
# it is, a library (lib*.so*) in zroam_libdirs, a program in PATH. Fails if there is none.
zroam_resolve() (
    case $1 in
    /*)
        found=1
        for f in $1; do [ -e "$f" ] && echo "$f" && found=0; done
        return $found
        ;;
    lib*.so*)
        for d in $zroam_libdirs; do
            [ -e "$d/$1" ] && { echo "$d/$1"; return 0; }
        done
        return 1
        ;;
    *) command -v "$1" ;;
    esac
)

# What zroam's LUKS unlocking loads at run time besides cryptsetup itself (dlopen: ldd does
# not list it): cryptsetup's token plugins, so that a LUKS2 TPM2 token enrolled with
# systemd-cryptenroll opens with no question, and the tpm2-tss libraries the TPM2 plugin
# loads. Prints what this host has, one file a line. The TPM2 plugin stays out when this
# host lacks tpm2-tss (Debian's systemd ships the plugin, the libraries are optional): the
# host itself cannot open a TPM2 token then, and the image would only carry a plugin that
# fails to load.
zroam_luks_extras() (
    plugins=$(zroam_resolve "/lib/x86_64-linux-gnu/cryptsetup/libcryptsetup-token-*.so" ||
        zroam_resolve "/usr/lib/cryptsetup/libcryptsetup-token-*.so" ||
        zroam_resolve "/usr/lib64/cryptsetup/libcryptsetup-token-*.so") || return 0
    for p in $plugins; do
        case $p in
        *systemd-tpm2*)
            libs=
            for n in $zroam_tpm2_libs; do
                l=$(zroam_resolve "$n") || continue 2
                libs="$libs
$l"
            done
            echo "$p$libs"
            ;;
        *) echo "$p" ;;
        esac
    done
)
zroam_tpm2_libs="libtss2-esys.so.0 libtss2-rc.so.0 libtss2-mu.so.0 libtss2-tcti-device.so.0 libtss2-tctildr.so.0"

# The files for the NAMEs (zroam_resolve), one a line; the names this host lacks are named
# on stderr by the caller's WHAT ($zroam_needed_by) and skipped.
zroam_needs() (
    for n in "$@"; do
        zroam_resolve "$n" || echo "zroam: ${zroam_needed_by:-the image} needs $n, which this host lacks" >&2
    done
    return 0
)

# What the key hooks staged under $1 (etc/zroam/key.d) need in the image: each names it on
# a line "# zroam-needs: NAME..." (programs, libraries, absolute paths). Prints the files,
# one a line, for the caller to install with its generator's binary installer (which adds
# their libraries).
zroam_hook_needs() (
    for h in "$1"/etc/zroam/key.d/*; do
        [ -f "$h" ] || continue
        # shellcheck disable=SC2046 # the names are a word list
        zroam_needed_by="key hook ${h##*/}" zroam_needs $(sed -n 's/^# zroam-needs://p' "$h")
    done
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
