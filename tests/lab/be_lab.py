#!/usr/bin/env python3
"""The boot-environment lab: snapshots and rollbacks at boot, the menu on the serial console,
the other tools' spellings, the BE's children and extra datasets, the pool-level guards
(hibernation, checkpoint) and `zroam be` on a running system. Real pools made by zpool in the
builder VM (mostly the `snaps` set of boot-images.sh), booted with zroam as /init under
QEMU/TCG. No scenario here asserts timing, so LAB_JOBS (default 2) run at a time.

usage: be_lab.py ZROAM_BINARY [SCENARIO...]
"""
import json
import re
import struct
import subprocess
import sys
import uuid

from vmlab import OURS, Lab, between, booted, check, refused, suite_main


def mounts(r):
    """(dataset, mountpoint) of the ZFS mounts the BE's init saw."""
    text = (between(r.serial, "ZROAM-MOUNTS-BEGIN", "ZROAM-MOUNTS-END") or "").replace("\r", "")
    return [(f[0], f[1]) for f in (l.split() for l in text.splitlines()) if len(f) > 2 and f[2] == "zfs"]


def steps(r):
    return (r.report or {}).get("steps", [])


def snaps(lab, tag, n=0):
    return [(lab.disk("snaps", n, tag), "virtio")]


def s_snapshot_clone(lab, e):
    """root=…@pre boots a fresh clone of the BE's and its children's @pre (its marker, not the
    later file); the BE itself is untouched, with its noauto /usr and the extra dataset of its
    /etc/default/zfs mounted where the symlinked path leads inside the root."""
    disks = snaps(lab, "clone")
    r = lab.boot("clone-a", disks, append="root=ZFS=rpool/ROOT/debian@pre")
    booted(r, "debian-pre", e, child="no")
    m = dict(mounts(r))
    want = {"rpool/ROOT/debian_pre": "/", "rpool/ROOT/debian_pre/var": "/var", "rpool/ROOT/debian_pre/usr": "/usr"}
    for ds, at in want.items():
        check(m.get(ds) == at, f"{ds} mounted at {m.get(ds)}, expected {at}: {m}", e)
    check(not any(ds.startswith("rpool/ROOT/debian/") or ds == "rpool/ROOT/debian" for ds in m), f"the BE itself is mounted: {m}", e)
    check("clone of rpool/ROOT/debian@pre as rpool/ROOT/debian_pre" in steps(r), f"steps {steps(r)}", e)
    r2 = lab.boot("clone-b", disks, append="root=zfs:AUTO")
    booted(r2, "debian", e, child="yes")
    m2 = dict(mounts(r2))
    check(m2.get("rpool/ROOT/debian/usr") == "/usr", f"the canmount=noauto /usr child: {m2}", e)
    check(m2.get("rpool/extra") == "/var/lib/escape/extra", f"ZFS_INITRD_ADDITIONAL_DATASETS rpool/extra: {m2}", e)
    r.note = f"clone booted; then the BE with /usr (noauto) and rpool/extra at {m2.get('rpool/extra')}"
    return r


def s_rollback(lab, e):
    """root=…@pre rollback=1 rolls the BE and its children back (the later marker and file are
    gone for good: the next plain boot shows the same)."""
    disks = snaps(lab, "rb")
    r = lab.boot("rb-a", disks, append="root=ZFS=rpool/ROOT/debian@pre rollback=1")
    booted(r, "debian-pre", e, child="no")
    check(dict(mounts(r)).get("rpool/ROOT/debian") == "/", f"mounts {mounts(r)}", e)
    check({"rollback to rpool/ROOT/debian@pre", "rollback to rpool/ROOT/debian/var@pre"} <= set(steps(r)), f"steps {steps(r)}", e)
    r2 = lab.boot("rb-b", disks, append="root=zfs:AUTO")
    booted(r2, "debian-pre", e, child="no")
    return r


def s_bootfs_snapshot_rollback(lab, e):
    """dracut's spellings: bootfs.snapshot names the snapshot after the kernel's release;
    bootfs.rollback=pre rolls back (taking the later snapshot with it); booting that later
    snapshot is then refused with the BE's snapshots listed."""
    disks = snaps(lab, "dr")
    r = lab.boot("dr-a", disks, append="root=zfs:AUTO bootfs.snapshot")
    booted(r, "debian", e, child="yes")
    made = [s.split("@", 1)[1] for s in steps(r) if s.startswith("snapshot rpool/ROOT/debian@")]
    check(len(made) == 1 and re.match(r"\d+\.\d+", made[0]), f"bootfs.snapshot made {steps(r)}", e)
    release = made[0] if made else "none"
    r2 = lab.boot("dr-b", disks, append="root=zfs:AUTO bootfs.rollback=pre")
    booted(r2, "debian-pre", e, child="no")
    r3 = lab.boot("dr-c", disks, append=f"root=ZFS=rpool/ROOT/debian@{release}")
    refused(r3, "choose-be", e, words=[f"rpool/ROOT/debian@{release}", "rpool/ROOT/debian@pre"])
    r.note = f"snapshot @{release}, rolled back to @pre, @{release} then refused"
    return r


def s_missing_snapshot(lab, e):
    r = lab.boot("miss", snaps(lab, "miss"), append="root=ZFS=rpool/ROOT/debian@nope")
    refused(r, "choose-be", e, words=["rpool/ROOT/debian@nope", "does not exist", "rpool/ROOT/debian@pre"])
    check(not (r.report or {}).get("steps"), "something was changed on the pool", e)
    return r


COUNTDOWN = r"any key stops the countdown"


def s_menu(lab, e):
    """zroam.menu over the serial console: pick the second BE; pick a snapshot (a clone
    boots); let the countdown run out (the default boots)."""
    r = lab.boot("menu-a", snaps(lab, "menu-a"), append="root=zfs:AUTO zroam.menu=60", answers=[(COUNTDOWN, "2")])
    booted(r, "other", e, child="no")
    check("<- default" in r.serial and "rpool/ROOT/debian  (bootfs)" in r.serial, "the menu did not show the default", e)
    check("1.1 @pre" in r.serial, "the BE's snapshot is not listed", e)
    r2 = lab.boot("menu-b", snaps(lab, "menu-b"), append="root=zfs:AUTO zroam.menu=60", answers=[(COUNTDOWN, "1.1")])
    booted(r2, "debian-pre", e, child="no")
    check(dict(mounts(r2)).get("rpool/ROOT/debian_pre") == "/", f"mounts {mounts(r2)}", e)
    r3 = lab.boot("menu-c", snaps(lab, "menu-c"), append="root=zfs:AUTO zroam.menu=3")
    booted(r3, "debian", e, child="yes")
    shown = (r3.report or {}).get("menu") or [{}]
    check(shown[0].get("how") == "countdown", f"menu record {shown}", e)
    return r


def s_menu_vt(lab, e):
    """The menu on a VT: /dev/console is tty0 (the last console=), keys come from the
    guest's keyboard; the serial line shows the kernel's copy of zroam's log (loglevel=7)."""
    r = lab.boot("menu-vt", snaps(lab, "menu-vt"), append="root=zfs:AUTO zroam.menu=60 loglevel=7 console=tty0",
                 keys=(r"zroam: imported rpool", ["2", "ret"]), timeout=150)
    out = r.serial
    check("boot environment rpool/ROOT/other: picked in the menu" in out, "the pick typed on the VT did not boot the second BE", e)
    check("switching root to /sysroot" in out, "zroam did not switch root", e)
    check("<- default" not in out, "the menu went to the serial line, not the VT", e)
    r.note = "picked on the VT's keyboard"
    return r


def s_menu_two_pools(lab, e):
    """Two pools named rpool with this system's hostid and nothing to tell them apart: the
    menu is offered instead of the refusal; the one picked boots."""
    mine = lab.guid("single")
    stick = lab.forge(lab.disk("foreign", 0, "two"), hostid=int(OURS, 16))
    disks = [(stick, "virtio"), (lab.disk("single", 0, "two"), "virtio")]

    def pick(out):
        m = re.search(r"(\d+)\) rpool  \(guid " + mine, out)
        return m.group(1) if m else "q"

    r = lab.boot("two", disks, answers=[(r"which one\?[\s\S]*> ", pick)])
    booted(r, "debian", e, child="yes")
    got = str(((r.report or {}).get("pool") or {}).get("guid"))
    check(got == mine, f"booted pool {got}, picked {mine}", e)
    shown = ((r.report or {}).get("menu") or [{}])[0]
    check(shown.get("of") == "pools" and shown.get("how") == "typed", f"menu record {shown}", e)
    return r


def s_spellings(lab, e):
    """zfs= (archzfs, ZFSBootMenu) and rpool= with bootfs= (initramfs-tools), without root=."""
    r = lab.boot("zfs-eq", [(lab.disk("single", 0, "zfs-eq"), "virtio")], append="zfs=rpool/ROOT/other")
    booted(r, "other", e, child="no")
    r2 = lab.boot("rpool-eq", [(lab.disk("single", 0, "rpool-eq"), "virtio")], append="rpool=rpool bootfs=rpool/ROOT/other zfs_force=1")
    booted(r2, "other", e, child="no")
    argv = ((r2.report or {}).get("import") or {}).get("argv", [])
    check("-f" in argv, f"zfs_force=1 did not force: {argv}", e)
    return r


def hibernated_swap(lab, tag):
    """A disk with one Linux swap partition holding a hibernation signature (the swap
    header written here: this host's mkswap cannot write at an offset)."""
    img = lab.blank(tag, 32 << 20)
    # (sgdisk -q on a blank image writes nothing.)
    subprocess.run(["sgdisk", "-n1:2048:0", "-t1:8200", img], check=True, capture_output=True)
    start, page = 2048 * 512, bytearray(4096)
    pages = ((32 << 20) - start - 34 * 512) // 4096
    page[1024:1036] = struct.pack("<III", 1, pages - 1, 0)  # version, last page, bad pages
    page[1036:1052] = uuid.uuid4().bytes
    # The signature swap had before hibernation (the kernel puts it back when it finds the
    # image), then the image's.
    page[4076:4086] = b"SWAPSPACE2"
    page[4086:4096] = b"S1SUSPEND\0"
    with open(img, "r+b") as f:
        f.seek(start)
        f.write(page)
    return img


def s_hibernation(lab, e):
    """A hibernation image on a swap partition and noresume: the pool is imported read-only
    and the report says why."""
    disks = [(lab.disk("single", 0, "hib"), "virtio"), (hibernated_swap(lab, "hib"), "virtio")]
    r = lab.boot("hib", disks, append="root=zfs:AUTO noresume")
    booted(r, "debian", e, root="ro", child="yes")
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check("readonly=on" in argv, f"import not read-only: {argv}", e)
    res = (r.report or {}).get("resume") or {}
    check("noresume" in json.dumps(res) and "zroam.resume=discard" in json.dumps(res), f"resume record {res}", e)
    # As /init with resume= naming it, zroam hands it to the kernel, which cannot restore
    # this made-up image and returns: the import is read-only, the report says so.
    r2 = lab.boot("hib2", [(lab.disk("single", 0, "hib2"), "virtio"), (hibernated_swap(lab, "hib2"), "virtio")],
                  append="root=zfs:AUTO resume=/dev/vdb1")
    booted(r2, "debian", e, root="ro", child="yes")
    done = " ".join(((r2.report or {}).get("resume") or {}).get("done", []))
    check("resume" in done and "read-only" in done, f"resume= boot: {done!r}", e)
    # noresume and zroam.resume=discard: zroam drops the image itself (plain swap's
    # signature back on the resume= device, and only there) and imports read-write.
    swap = hibernated_swap(lab, "hib3")
    r3 = lab.boot("hib3", [(lab.disk("single", 0, "hib3"), "virtio"), (swap, "virtio")],
                  append="root=zfs:AUTO noresume resume=/dev/vdb1 zroam.resume=discard")
    booted(r3, "debian", e, root="rw", child="yes")
    with open(swap, "rb") as f:
        f.seek(2048 * 512 + 4086)
        sig = f.read(10)
    check(sig == b"SWAPSPACE2", f"the discarded image's signature is {sig!r}", e)
    done3 = " ".join(((r3.report or {}).get("resume") or {}).get("done", []))
    check("wrote the plain swap signature" in done3, f"discard boot: {done3!r}", e)
    r.note = f"noresume: read-only; resume=: {done[:60]}; discard: rw, {sig.decode(errors='replace')}"
    return r


def s_checkpoint(lab, e):
    """zroam.rewind=checkpoint: what was written after `zpool checkpoint` is gone."""
    r = lab.boot("cp", snaps(lab, "cp"), append="root=zfs:AUTO zroam.rewind=checkpoint")
    booted(r, "debian-pre", e, child="no")
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check("--rewind-to-checkpoint" in argv, f"import argv {argv}", e)
    return r


def s_be_commands(lab, e):
    """`zroam be` in the ramdisk's shell: list, next (one-shot), activate (bootfs); the next
    boots honour them."""
    disks = snaps(lab, "becli")
    z = "/bin/zroam be"
    cmd = "; ".join([
        "ln -sf /init /bin/zroam", "echo BE-''LIST", f"{z} list rpool",
        "echo BE-''SET", f"{z} activate rpool/ROOT/other; echo rc=$?", f"{z} next rpool/ROOT/debian; echo rc=$?",
        "echo BE-''JSON", f"{z} list --json rpool", "echo BE-''END", "poweroff -f"]) + "\n"
    r = lab.boot("becli-a", disks, append="root=zfs:AUTO zroam.shell=1", on_shell=cmd)
    out = r.serial.replace("\r", "")
    listing = between(out, "BE-LIST", "BE-SET") or ""
    check("rpool/ROOT/debian" in listing and "rpool/ROOT/other" in listing and "@pre" in listing, f"list: {listing!r}", e)
    check((between(out, "BE-SET", "BE-JSON") or "").count("rc=0") == 2, f"activate/next: {between(out, 'BE-SET', 'BE-JSON')!r}", e)
    try:
        p = json.loads(between(out, "BE-JSON", "BE-END") or "")["pools"][0]
        check(p.get("bootfs") == "rpool/ROOT/other" and p.get("nextboot") == "rpool/ROOT/debian", f"list --json {p}", e)
    except (ValueError, KeyError, IndexError) as x:
        check(False, f"list --json: {x}", e)
    r2 = lab.boot("becli-b", disks)
    booted(r2, "debian", e, child="yes")
    check("one-shot" in (((r2.report or {}).get("be") or {}).get("reason") or ""), "the one-shot did not pick the BE", e)
    r3 = lab.boot("becli-c", disks)
    booted(r3, "other", e, child="no")
    check(((r3.report or {}).get("be") or {}).get("reason") == "the pool's bootfs", "activate did not set bootfs", e)
    return r


def s_gen_snapshot_and_menu(lab, e):
    """For the generators' images (gen_lab): a snapshot booted as a clone from the command
    line, and the menu on the console picking a snapshot's clone."""
    r = lab.boot("gsm-a", snaps(lab, "gsm-a"), append="root=ZFS=rpool/ROOT/debian@pre")
    booted(r, "debian-pre", e, child="no")
    check(dict(mounts(r)).get("rpool/ROOT/debian_pre/var") == "/var", f"mounts {mounts(r)}", e)
    r2 = lab.boot("gsm-b", snaps(lab, "gsm-b"), append="root=zfs:AUTO zroam.menu=60", answers=[(COUNTDOWN, "2")])
    booted(r2, "other", e, child="no")
    check(((r2.report or {}).get("be") or {}).get("reason") == "picked in the menu", "the menu's pick is not the reason", e)
    return r


# Booted by gen_lab only, in each generator's image.
GEN_ONLY = {"snapshot-and-menu": s_gen_snapshot_and_menu}

SCENARIOS = {
    "snapshot-clone": s_snapshot_clone,
    "rollback": s_rollback,
    "bootfs-snapshot-rollback": s_bootfs_snapshot_rollback,
    "missing-snapshot": s_missing_snapshot,
    "menu": s_menu,
    "menu-vt": s_menu_vt,
    "menu-two-pools": s_menu_two_pools,
    "spellings": s_spellings,
    "hibernation": s_hibernation,
    "checkpoint": s_checkpoint,
    "be-commands": s_be_commands,
}


if __name__ == "__main__":
    sys.exit(suite_main(__doc__, "lab-be", Lab, SCENARIOS))
