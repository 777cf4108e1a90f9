#!/usr/bin/env python3
"""zroam inside the real generators' ramdisks: dracut (with and without systemd in the
initramfs) and initramfs-tools, each built by the generator itself from a `make install
DESTDIR=…` staging (tests/lab/gen-images.sh), alone and beside OpenZFS's own zfs-dracut /
zfs-initramfs. Each image boots scenarios 1, 2 and 12 (ZFS on LUKS: the passphrase is
typed at zroam's console prompt, or at systemd's console agent in a systemd image) of the
boot lab, those beside the stock module 1, 2 and 6; zroam must be the one that mounts the
root (its report says "mounted"), and the name collision must be settled by zroam's rules,
not by the stock module's import by name. Scenarios 5 and 6 alone are zroam's own choice
among labels, the same code in every image: the boot lab runs them in zroam's ramdisk, the
"with" images run 6, and the mkinitcpio image runs both.

mkinitcpio is not in Debian: tests/mkinitcpio/real.sh runs the real mkinitcpio v41 (the
snapshot in ../shared/vendor, unpacked into the lab cache) with zroam's hooks, alone and
with archzfs's stock `zfs` hook beside, and its images boot the same scenarios.

Each generator also builds an image carrying the mirror's root pin (the hooks install what
`zroam pin` makes; ZROAM_PIN hands it to them here, the lab host's / not being ZFS): it
boots the mirror beside a stick named like it with this system's hostid, and must mount the
mirror (scenario 16 with the image's own pin). The images without the stock module boot a
snapshot as a clone and drive the menu on the console (be_lab's GEN_ONLY).

usage: gen_lab.py ZROAM_BINARY [CASE...]   CASE: KIND-with | KIND-without | KIND-pinned (KIND: dracut-systemd,
                                           dracut-shell, initramfs-tools, mkinitcpio)
                                           | initramfs-tools-dropbear | dracut-shell-plymouth
"""
import os
import re
import shutil
import sys
import tempfile
import time

import be_lab
import boot_lab
from vmlab import BOOT_SETS, CACHE, HERE, Lab, boot_images, ssh_key, generator_initrd, generator_lab, lab_args, lab_jobs, log, print_table, run_parallel, run_scenario, sh

KINDS = ["dracut-systemd", "dracut-shell", "initramfs-tools"]
SCENARIOS = ["1-mirror", "2-usb-degraded", "12-luks-mirror"]
# The real mkinitcpio runs the generator lab's whole set (it has no other lab).
MKINITCPIO_SCENARIOS = ["1-mirror", "2-usb-degraded", "5-foreign-stick", "6-name-collision", "12-luks-mirror"]
# Beside the stock module what differs is who imports: the mirror, the degraded mirror and
# the name collision (the stock module would import by name) tell it; the rest is zroam's
# own decision, the same in both images.
WITH_SCENARIOS = ["1-mirror", "2-usb-degraded", "6-name-collision"]


def mirror_pin(binary):
    """A file holding the lab mirror's root pin, as `zroam pin` makes it."""
    pin = os.path.join(tempfile.mkdtemp(), "root.pin")
    with open(pin, "wb") as f:
        f.write(Lab(binary, initrd="-", sets=("mirror",)).pin("mirror"))
    return pin


# The shipped key hooks: the pinned images carry them, and must carry what they need.
KEYD = os.path.join(HERE, "..", "..", "initramfs-tools", "share", "key.d")
HELPER = os.path.join(HERE, "..", "..", "initramfs-tools", "share", "zroam-install.sh")


def hook_tools_missing(img):
    """What the shipped key hooks need and zroam's LUKS extras (token plugins, tpm2-tss), as
    the install helper resolves them on this host, that the image lacks (by path, /usr and
    sbin merged; a busybox applet does not count)."""
    need = sh("sh", "-c", '. "$0"; d=$(mktemp -d); mkdir -p "$d/etc/zroam/key.d"; cp "$1"/* "$d/etc/zroam/key.d/"; '
              'zroam_hook_needs "$d"; zroam_luks_extras; rm -rf "$d"', HELPER, KEYD).split()
    norm = lambda p: re.sub(r"^sbin/", "bin/", re.sub(r"^/?(usr/)?", "", p))  # Arch links sbin to bin
    have = set()
    for line in sh("lsinitrd", img).splitlines():
        m = re.search(r"(?:\d{4}|\d\d:\d\d) (\S+)(?: -> (\S+))?$", line)
        if m and not (m.group(2) or "").endswith("busybox"):
            have.add(norm(m.group(1)))
    return [f"{p} (for the key hooks)" for p in need if norm(p) not in have]


def image(binary, case):
    """The ramdisk for a case, and the scenarios it boots."""
    if case.startswith("mkinitcpio-"):
        # The real mkinitcpio v41 (tests/mkinitcpio/real.sh), archzfs's `zfs` hook beside
        # zroam's in the "with" image.
        stock = case.split("-", 1)[1]
        pin = mirror_pin(binary) if stock == "pinned" else None
        img = sh("bash", os.path.join(HERE, "..", "mkinitcpio", "real.sh"), binary, "without" if pin else stock,
                 *([pin] if pin else []), env=dict(os.environ, LAB_KEYD=KEYD if pin else "")).strip()
        if pin:
            return img, ["16-pinned-image"], hook_tools_missing(img)
        return img, WITH_SCENARIOS if stock == "with" else MKINITCPIO_SCENARIOS + list(be_lab.GEN_ONLY), []
    if case == "initramfs-tools-dropbear":
        _, pub = ssh_key(CACHE)
        keyfile = os.path.join(tempfile.mkdtemp(), "authorized_keys")
        with open(keyfile, "w") as f:
            f.write(pub)
        return generator_initrd(binary, "initramfs-tools", "without", dropbear=keyfile), list(boot_lab.DROPBEAR_ONLY), []
    if case == "dracut-shell-plymouth":
        return generator_initrd(binary, "dracut-shell", "without", plymouth="details"), list(boot_lab.PLYMOUTH_ONLY), []
    kind, stock = case.rsplit("-", 1)
    if stock == "pinned":
        img = generator_initrd(binary, kind, "without", mirror_pin(binary), keyd=KEYD)
        return img, ["16-pinned-image"], hook_tools_missing(img)
    # The images without the stock module also boot a snapshot and the menu; the systemd
    # one also has its questions answered by systemd's agent and by zroam unlock.
    extra = list(be_lab.GEN_ONLY) if stock == "without" else []
    if case == "dracut-systemd-without":
        extra += list(boot_lab.SYSTEMD_ONLY)
    return generator_initrd(binary, kind, stock), (WITH_SCENARIOS if stock == "with" else SCENARIOS) + extra, []


def run_case(binary, case):
    """Builds the case's image and boots its scenarios; returns their rows."""
    try:
        initrd, scenarios, missing = image(binary, case)
    except Exception as x:
        log(f"{case}: cannot build the image: {x}")
        return [(case, "image", "FAIL", "-", "0", str(x))]
    lab = generator_lab(binary, case, initrd)
    rows = []
    if missing:
        rows.append((case, "image contents", "FAIL", "-", "0", "missing: " + ", ".join(missing)))
        log(f"{case}: the image lacks: {', '.join(missing)}")
    every = {**boot_lab.SCENARIOS, **boot_lab.GEN_ONLY, **be_lab.GEN_ONLY, **boot_lab.SYSTEMD_ONLY, **boot_lab.DROPBEAR_ONLY,
             **boot_lab.PLYMOUTH_ONLY}
    rows += [run_scenario(n, every[n], lab, prefix=f"{case} ") for n in scenarios]
    if all(r[2] == "ok" for r in rows):
        shutil.rmtree(lab.work, ignore_errors=True)
    return rows


def main():
    parsed = lab_args(__doc__)
    if parsed is None:
        return 2
    binary, args = parsed
    cases = args or [f"{k}-{s}" for k in KINDS for s in ("without", "with", "pinned")] + [
        "initramfs-tools-dropbear", "dracut-shell-plymouth", "mkinitcpio-without", "mkinitcpio-with", "mkinitcpio-pinned"]
    t0 = time.monotonic()
    # The pool images once, before the workers share them.
    boot_images(*BOOT_SETS)
    # Cases are independent and no scenario here asserts timing: lab_jobs() at a time.
    rows = [row for rs in run_parallel(cases, lambda c: run_case(binary, c), lab_jobs()) for row in rs]
    failed = print_table("lab-gen", rows, t0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
