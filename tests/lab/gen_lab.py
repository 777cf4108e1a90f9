#!/usr/bin/env python3
"""zroam inside the real generators' ramdisks: dracut (with and without systemd in the
initramfs) and initramfs-tools, each built by the generator itself from a `make install
DESTDIR=…` staging (tests/lab/gen-images.sh), alone and beside OpenZFS's own zfs-dracut /
zfs-initramfs. Each image boots scenarios 2 and 12 (ZFS on LUKS: the passphrase is
typed at zroam's console prompt, or at systemd's console agent in a systemd image) of the
boot lab, those beside the stock module 2 and 6-collision-settled (scenario 6 without its
zroam.pool= boot); zroam must be the one that mounts the root (its report says "mounted"),
and the name collision must be settled by zroam's rules, not by the stock module's import
by name. Scenario 5 is zroam's own choice among labels, the same code in every image, but
for the hostid the image carries: the boot lab runs it in zroam's ramdisk and the
mkinitcpio image (whose stock hook leaves /etc/hostid out) runs it too.

mkinitcpio is not in Debian: tests/mkinitcpio/real.sh runs the real mkinitcpio v41 (the
snapshot in ../shared/vendor, unpacked into the lab cache) with zroam's hooks, alone and
with archzfs's stock `zfs` hook beside, and its images boot the same scenarios.

Each generator also builds an image carrying the mirror's root pin (the hooks install what
`zroam pin` makes; ZROAM_PIN hands it to them here, the lab host's / not being ZFS): it
boots the mirror beside a stick named like it with this system's hostid, and must mount the
mirror (scenario 16 with the image's own pin). The images without the stock module boot a
snapshot as a clone and drive the menu on the console (be_lab's GEN_ONLY).

The case mkinitcpio-only (not in the default list, named on the command line) boots archzfs's
stock hook without zroam (HOOKS=(base udev block zfs)) in scenarios 2, 5 and 6 and asserts
nothing of it: each boot's row says what happened (the BE that booted and when, a panic or a
shell) with the stock hook's own messages, the record behind README's mkinitcpio column. A
row fails only when the boot ended in none of those ways.

usage: gen_lab.py ZROAM_BINARY [CASE...]   CASE: KIND-with | KIND-without | KIND-pinned (KIND: dracut-systemd,
                                           dracut-shell, initramfs-tools, mkinitcpio)
                                           | initramfs-tools-dropbear | dracut-shell-plymouth
                                           | mkinitcpio-only
"""
import os
import re
import shutil
import sys
import tempfile
import time

import be_lab
import boot_lab
from vmlab import BOOT_SETS, CACHE, HERE, SPL_HOSTID, Lab, boot_images, ssh_key, generator_initrd, generator_lab, lab_args, lab_jobs, log, print_table, run_parallel, run_scenario, sh

# The degraded mirror moved to USB is the plain boot through each image: zroam's import
# from the generator's hook, with udev's devices; the whole mirror in place tells nothing
# more (the boot lab and `make bench` boot it in place), and leaving it out keeps
# `make check` within its time.
SCENARIOS = ["2-usb-degraded", "12-luks-mirror"]
# The real mkinitcpio also boots a pool last used by another machine: its stock hook leaves
# /etc/hostid out, zroam's hook puts it in. (Its name collision is the "with" image's.)
MKINITCPIO_SCENARIOS = ["2-usb-degraded", "5-foreign-stick", "12-luks-mirror"]
# Beside the stock module what differs is who imports: the degraded mirror (zroam waits for
# the missing member; the stock module could import first) and the name collision (the
# stock module would import by name, and must not after zroam refuses) tell it; the rest is
# zroam's own decision, the same in both images. (The whole mirror in place told nothing
# the degraded one does not: both are zroam's import or the stock one's.)
WITH_SCENARIOS = ["2-usb-degraded", "6-collision-settled"]


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
        img = generator_initrd(binary, "mkinitcpio", "without" if pin else stock, pin, keyd=KEYD if pin else None)
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


# mkinitcpio-only: archzfs's hook reads root=ZFS=POOL/DATASET, or root=zfs (the pools'
# bootfs), and imports the pool read-only unless the command line says `rw` (Arch's own
# command lines do); zfs_force=1 adds -f to its imports. Its install hook does not put
# /etc/hostid in the image, so the system's hostid there is 0 and a pool last used with
# another one is "previously in use from another system" (archzfs issue 603): Arch's users
# give the hostid as spl.spl_hostid=, as most boots here do. The disks are those of
# boot_lab's scenarios; each boot: (tag, disks, command line).
STOCK_ONLY = {
    "2-usb-degraded": [(t, lambda lab, t: [(lab.disk("mirror", 1, t), "usb")], a) for t, a in (
        ("s2a", "root=ZFS=rpool/ROOT/debian rw"), ("s2b", f"root=ZFS=rpool/ROOT/debian rw {SPL_HOSTID}"))],
    "5-foreign-stick": [(t, lambda lab, t: [(lab.disk("foreign", 0, t), "usb")], a) for t, a in (
        ("s5a", f"root=ZFS=rpool/ROOT/foreign rw {SPL_HOSTID}"), ("s5b", f"root=ZFS=rpool/ROOT/foreign rw {SPL_HOSTID} zfs_force=1"))],
    "6-name-collision": [(t, lambda lab, t: [(lab.disk("single", 0, t), "virtio"), (lab.disk("foreign", 0, t), "usb")], a)
                         for t, a in (("s6a", f"root=ZFS=rpool/ROOT/debian rw {SPL_HOSTID}"), ("s6b", f"root=zfs rw {SPL_HOSTID}"))],
}
# What the stock hook, mkinitcpio's init and the kernel say when a boot goes wrong.
STOCK_SAYS = re.compile(r"(ZFS: .*|cannot import .*|.*more than one matching pool.*|Kernel panic.*|"
                        r"Failed to mount .*|Bailing out.*|ERROR: .*)")


def stock_boot(lab, name, tag, disks, append):
    """One boot of an image without zroam: a row whose note says how it ended."""
    t = time.monotonic()
    r = lab.boot(tag, disks(lab, tag), append=append, timeout=180)
    if r.be:
        how = f"booted {r.be['be']} (root {r.be['root']})"
    elif "Kernel panic" in r.serial:
        how = "kernel panic"
    elif r.shell:
        how = "emergency shell"
    else:
        how = None
    said = []
    for m in STOCK_SAYS.finditer(r.serial.replace("\r", "")):
        if m.group(1).strip() not in said:
            said.append(m.group(1).strip())
    note = f"{append}: {how or 'no BE, no shell, no panic'}" + "".join(f" | {x}" for x in said)
    log(f"mkinitcpio-only {name} {tag}: {note}")
    return ("mkinitcpio-only", f"{name} {tag}", "ok" if how else "FAIL", f"{r.be['uptime']:.2f}" if r.be else "-",
            f"{time.monotonic() - t:.0f}", note)


def run_case(binary, case):
    """Builds the case's image and boots its scenarios; returns their rows."""
    if case == "mkinitcpio-only":
        lab = generator_lab(binary, case, generator_initrd(binary, "mkinitcpio", "only"))
        rows = [stock_boot(lab, n, *boot) for n, boots in STOCK_ONLY.items() for boot in boots]
        log(f"mkinitcpio-only: serial logs in {lab.work}")
        return rows
    try:
        initrd, scenarios, missing = image(binary, case)
    except Exception as x:
        log(f"{case}: cannot build the image: {x}")
        return [(case, "image", "FAIL", "-", "0", str(x))]
    lab = generator_lab(binary, case, initrd)
    # zroam preload loads zfs.ko from the earliest hook in every image without the stock
    # module (beside it the stock units may win that race), with the storage drivers first
    # in dracut under systemd and in initramfs-tools.
    if not case.endswith("-with"):
        lab.zfs_by = "preload"
        lab.preload_drivers = case.startswith(("dracut-systemd", "initramfs-tools"))
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


# Every case, the longest first (their walls in the last tables: the images without the
# stock module boot 3 to 6 scenarios, the pinned ones 1): the two workers take them in this
# order, so the last to end are short and neither worker idles long at the end.
DEFAULT_CASES = [f"{k}-without" for k in ("dracut-systemd", "initramfs-tools", "mkinitcpio", "dracut-shell")] + \
    [f"{k}-with" for k in ("dracut-shell", "dracut-systemd", "initramfs-tools", "mkinitcpio")] + \
    ["dracut-shell-plymouth", "initramfs-tools-dropbear"] + \
    [f"{k}-pinned" for k in ("dracut-shell", "initramfs-tools", "dracut-systemd", "mkinitcpio")]


def main():
    parsed = lab_args(__doc__)
    if parsed is None:
        return 2
    binary, args = parsed
    cases = args or DEFAULT_CASES
    t0 = time.monotonic()
    # The pool images once, before the workers share them.
    boot_images(*BOOT_SETS)
    # Cases are independent and no scenario here asserts timing: lab_jobs() at a time.
    rows = [row for rs in run_parallel(cases, lambda c: run_case(binary, c), lab_jobs()) for row in rs]
    failed = print_table("lab-gen", rows, t0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
