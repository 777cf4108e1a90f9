#!/usr/bin/env python3
"""The ESP lab: real firmware (OVMF) runs systemd-boot from one disk's ESP, which loads the
guest kernel and the zroam ramdisk (copied onto that ESP with mtools); zroam must make every
other ESP of the root pool's disks a copy of the booted one. The host reads the ESPs back
with mtools and hashes their partitions.

usage: esp_lab.py ZROAM_BINARY [SCENARIO...]
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import time

from vmlab import BASE_ARGS, BOOT_SETS, SHELL_CMD, Lab, between, booted, check, kernel, lab_args, part_geom, partuuid, run_suite

SDBOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
APPEND = f"{BASE_ARGS} root=zfs:AUTO"
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def esp_at(img):
    off, size = part_geom(img, 1)
    return f"{img}@@{off}", off, size


def mtools(*args):
    subprocess.run(args, check=True, capture_output=True, env=MTOOLS_ENV)


def put(img, files):
    """Write {path: bytes} onto the image's ESP, creating directories."""
    spec, _, _ = esp_at(img)
    made = set()
    with tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in made:
                    subprocess.run(["mmd", "-D", "s", "-i", spec, "::/" + d], capture_output=True, env=MTOOLS_ENV)
                    made.add(d)
            src = os.path.join(tmp, "f")
            with open(src, "wb") as f:
                f.write(data)
            mtools("mcopy", "-o", "-i", spec, src, "::/" + path)


def tree(img):
    """{path: sha256} of every file on the image's ESP, read by mtools."""
    spec, _, _ = esp_at(img)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        mtools("mcopy", "-s", "-n", "-i", spec, "::/*", d)
        for root, _, files in os.walk(d):
            for n in files:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    out[os.path.relpath(p, d)] = hashlib.sha256(f.read()).hexdigest()
    return out


def part_hash(img):
    _, off, size = esp_at(img)
    h = hashlib.sha256()
    with open(img, "rb") as f:
        f.seek(off)
        left = size
        while left:
            b = f.read(min(left, 1 << 20))
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def managed(t):
    return {p: h for p, h in t.items() if p.lower() not in ("loader/random-seed",) and not p.lower().startswith("zroam/sync")}


def read(path):
    with open(path, "rb") as f:
        return f.read()


class EspLab(Lab):
    """The boot lab's Lab, with the ESP sets and the files of a systemd-boot ESP."""

    def __init__(self, binary):
        super().__init__(binary, sets=BOOT_SETS + ("mirror3", "mdesp"))
        self.kernel = read(kernel())
        self.initrd_bytes = read(self.initrd)
        self.sdboot = read(SDBOOT)

    def primary_files(self, extra=None, append=APPEND):
        f = {
            "EFI/BOOT/BOOTX64.EFI": self.sdboot,
            "loader/loader.conf": b"default zroam.conf\ntimeout 0\n",
            "loader/entries/zroam.conf": f"title zroam lab\nlinux /lab/vmlinuz\ninitrd /lab/initrd\noptions {append}\n".encode(),
            "lab/vmlinuz": self.kernel,
            "lab/initrd": self.initrd_bytes,
        }
        f.update(extra or {})
        return f

    def stale_files(self, seed):
        return {
            "EFI/BOOT/BOOTX64.EFI": self.sdboot,
            "loader/loader.conf": b"default old.conf\ntimeout 5\n",
            "EFI/stray/old.efi": b"stale loader\n" * 100,
            "STRAY.TXT": b"left over\n",
            "loader/random-seed": seed,
        }

    def boot(self, tag, disks, firmware=True, kill_on=None, timeout=240, shell_cmd=SHELL_CMD):
        """disks: [(image, bus, bootindex)]. With firmware: OVMF boots the lowest bootindex;
        without, the guest kernel and ramdisk boot directly (a BIOS machine: no boot entry)."""
        r = super().boot(tag, disks, firmware=firmware, kill_on=kill_on, timeout=timeout, on_shell=shell_cmd)
        ms = esp_report(r).get("ms")
        r.note = f"esp stage {ms} ms" if ms is not None else ""
        return r


def esp_report(r):
    return (r.report or {}).get("esp") or {}


def esp_entry(r, img_partuuid):
    for e in esp_report(r).get("esps", []):
        if e.get("partuuid") == img_partuuid:
            return e
    return {}


def synced(r, src_img, dst_img, e, seed=None):
    """dst's managed tree equals src's; dst's random-seed is still `seed`."""
    ts, td = tree(src_img), tree(dst_img)
    ms, md = managed(ts), managed(td)
    check(ms == md, f"{os.path.basename(dst_img)}: managed tree differs: only primary {sorted(set(ms) - set(md))}, "
             f"only secondary {sorted(set(md) - set(ms))}, changed {sorted(k for k in ms if k in md and ms[k] != md[k])}", e)
    if seed is not None:
        got = td.get("loader/random-seed")
        check(got == hashlib.sha256(seed).hexdigest(), f"{os.path.basename(dst_img)}: random-seed changed", e)
    ent = esp_entry(r, partuuid(dst_img))
    check(ent.get("role") == "secondary" and ent.get("verified"), f"report for {os.path.basename(dst_img)}: {ent}", e)


def s1_two_disks(lab, e):
    a, b = lab.disk("mirror", 0, "e1"), lab.disk("mirror", 1, "e1")
    seed = os.urandom(32)
    put(a, lab.stale_files(seed))
    put(b, lab.primary_files())
    before = part_hash(b)
    r = lab.boot("e1", [(a, "virtio", 2), (b, "virtio", 1)])
    booted(r, "debian", e, child="yes")
    check_primary(r, b, before, e)
    synced(r, b, a, e, seed)
    return r


def check_primary(r, img, before, e):
    check(esp_report(r).get("primary") == partuuid(img), f"primary {esp_report(r).get('primary')}, expected {partuuid(img)}", e)
    check(part_hash(img) == before, f"the booted ESP ({os.path.basename(img)}) changed", e)


def s2_three_disks_usb(lab, e):
    a, b, c = (lab.disk("mirror3", i, "e2") for i in range(3))
    seeds = [os.urandom(32), os.urandom(32)]
    put(a, lab.stale_files(seeds[0]))
    put(b, lab.primary_files())
    put(c, lab.stale_files(seeds[1]))
    before = part_hash(b)
    r = lab.boot("e2", [(a, "virtio", 2), (b, "virtio", 1), (c, "usb", 3)])
    booted(r, "debian", e)
    check_primary(r, b, before, e)
    synced(r, b, a, e, seeds[0])
    synced(r, b, c, e, seeds[1])
    return r


def s3_interrupted(lab, e):
    a, b = lab.disk("mirror", 0, "e3"), lab.disk("mirror", 1, "e3")
    put(a, lab.stale_files(os.urandom(32)))
    # The resumed sync hashes, copies and verifies 50 MB under emulation: on a slow host
    # that outlasts the default 15 s budget, which is not what this scenario is about.
    put(b, lab.primary_files({"lab/big.bin": os.urandom(24 << 20)}, append=APPEND + " zroam.esp.budget=90"))
    before = part_hash(b)
    # First boot: killed while the secondary is being written.
    lab.boot("e3a", [(a, "virtio", 2), (b, "virtio", 1)], kill_on=r"zroam: ESP \S+: syncing")
    marker = any(p.lower().startswith("zroam/sync-in-progress") for p in tree(a))
    check(marker, "the interrupted sync left no in-progress marker on the secondary", e)
    r = lab.boot("e3b", [(a, "virtio", 2), (b, "virtio", 1)])
    booted(r, "debian", e)
    ent = esp_entry(r, partuuid(a))
    check(ent.get("resumed") is True, f"second boot did not see the marker: {ent}", e)
    check_primary(r, b, before, e)
    synced(r, b, a, e)
    return r


def s4_corrupt_secondary(lab, e):
    a, b, c = (lab.disk("mirror3", i, "e4") for i in range(3))
    put(b, lab.primary_files())
    put(c, lab.stale_files(os.urandom(32)))
    _, off, _ = esp_at(a)
    with open(a, "r+b") as f:  # A's FAT boot sector gone
        f.seek(off)
        f.write(bytes(4096))
    r = lab.boot("e4", [(a, "virtio", 2), (b, "virtio", 1), (c, "virtio", 3)])
    booted(r, "debian", e)
    ent = esp_entry(r, partuuid(a))
    check(ent.get("role") == "skipped", f"corrupt ESP not skipped: {ent}", e)
    check(any(partuuid(a) in w for w in esp_report(r).get("warnings", [])), "no warning names the corrupt ESP", e)
    synced(r, b, c, e)
    return r


def s5_bios(lab, e):
    a, b = lab.disk("mirror", 0, "e5"), lab.disk("mirror", 1, "e5")
    put(a, lab.stale_files(os.urandom(32)))
    put(b, lab.primary_files())
    before = (part_hash(a), part_hash(b))
    r = lab.boot("e5", [(a, "virtio", None), (b, "virtio", None)], firmware=False)
    booted(r, "debian", e)
    rep = esp_report(r)
    check(rep.get("primary") is None, f"a primary was chosen without firmware: {rep.get('primary')}", e)
    roles = sorted(x.get("role") for x in rep.get("esps", []))
    check(roles == ["check", "check"], f"roles {roles}", e)
    drift = [x.get("drift") for x in rep.get("esps", []) if x.get("drift")]
    check(drift and drift[0].get("copies"), f"the drift was not reported: {drift}", e)
    check((part_hash(a), part_hash(b)) == before, "an ESP changed although no primary was known", e)
    return r


def s6_mdraid(lab, e):
    a, b = lab.disk("mdesp", 0, "e6"), lab.disk("mdesp", 1, "e6")
    # The md mirror holds one FAT: write it through one member (md 1.0 keeps data at offset 0).
    put(a, lab.primary_files())
    put(b, lab.primary_files())
    before = (part_hash(a), part_hash(b))
    r = lab.boot("e6", [(a, "virtio", 1), (b, "virtio", 2)])
    booted(r, "debian", e)
    roles = sorted(x.get("role") for x in esp_report(r).get("esps", []))
    check(roles == ["skipped", "skipped"], f"md members not left alone: {roles}", e)
    check((part_hash(a), part_hash(b)) == before, "an md member ESP was written", e)
    return r


def s7_running_system(lab, e):
    """`zroam esp status`, `esp sync --dry-run` and `esp sync` from a shell, root mounted."""
    a, b = lab.disk("mirror", 0, "e7"), lab.disk("mirror", 1, "e7")
    put(a, lab.stale_files(os.urandom(32)))
    put(b, lab.primary_files(append=APPEND + " zroam.esp=off zroam.shell=1"))
    before_a, before_b = part_hash(a), part_hash(b)
    g = lab.guid("mirror")
    z = f"zroam esp --pool-guid {g}"
    cmd = (f"ln -s /init /bin/zroam; echo ESP-STATUS-BEGIN; {z} status; echo ESP-DRY-BEGIN; {z} sync --dry-run; "
           f"echo ESP-HASH-CHECK; echo ESP-SYNC-BEGIN; {z} sync; echo ESP-SYNC-END rc=$?; poweroff -f\n")
    r = lab.boot("e7", [(a, "virtio", 2), (b, "virtio", 1)], shell_cmd=cmd)
    out = r.serial
    status = between(out, "ESP-STATUS-BEGIN", "ESP-DRY-BEGIN") or ""
    check(f"primary: {partuuid(b)}" in status, f"esp status did not name the primary: {status!r}", e)
    check("would copy" in status and partuuid(a) in status, f"esp status shows no drift for A: {status!r}", e)
    dry = between(out, "ESP-DRY-BEGIN", "ESP-HASH-CHECK") or ""
    check("would copy" in dry, f"esp sync --dry-run shows no plan: {dry!r}", e)
    check("ESP-SYNC-END rc=0" in out, "zroam esp sync did not succeed", e)
    check(part_hash(b) == before_b, "the booted ESP changed", e)
    check(part_hash(a) != before_a, "esp sync did not write the secondary", e)
    ms, ma = managed(tree(b)), managed(tree(a))
    check(ms == ma, f"after esp sync A differs from B: {sorted(set(ms) ^ set(ma))}", e)
    return r


SCENARIOS = {
    "1-two-disks": s1_two_disks,
    "2-three-disks-usb": s2_three_disks_usb,
    "3-interrupted": s3_interrupted,
    "4-corrupt-secondary": s4_corrupt_secondary,
    "5-bios-check-only": s5_bios,
    "6-mdraid": s6_mdraid,
    "7-running-system": s7_running_system,
}


def main():
    parsed = lab_args(__doc__)
    if parsed is None:
        return 2
    binary, args = parsed
    t0 = time.monotonic()
    return run_suite("lab-esp", EspLab(binary), SCENARIOS, args, t0)


if __name__ == "__main__":
    sys.exit(main())
