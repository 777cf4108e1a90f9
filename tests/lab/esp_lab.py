#!/usr/bin/env python3
"""The ESP lab: real firmware (OVMF) runs systemd-boot from one disk's ESP, which loads the
guest kernel and the zroam ramdisk (copied onto that ESP with mtools); zroam must make every
other ESP of the root pool's disks a copy of the booted one. The host reads the ESPs back
with mtools and hashes their partitions.

usage: esp_lab.py ZROAM_BINARY [SCENARIO...]
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import boot_lab as bl

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
SDBOOT = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
APPEND = "console=ttyS0 panic=-1 loglevel=4 root=zfs:AUTO"


def esp_at(img):
    off, size = bl.part_geom(img, 1)
    return f"{img}@@{off}", off, size


def mtools(*args):
    subprocess.run(args, check=True, capture_output=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


def put(img, files):
    """Write {path: bytes} onto the image's ESP, creating directories."""
    spec, _, _ = esp_at(img)
    tmp = tempfile.mkdtemp()
    made = set()
    for path, data in files.items():
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                subprocess.run(["mmd", "-D", "s", "-i", spec, "::/" + d], capture_output=True,
                               env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
                made.add(d)
        src = os.path.join(tmp, "f")
        with open(src, "wb") as f:
            f.write(data)
        mtools("mcopy", "-o", "-i", spec, src, "::/" + path)
    shutil.rmtree(tmp)


def tree(img):
    """{path: sha256} of every file on the image's ESP, read by mtools."""
    spec, _, _ = esp_at(img)
    d = tempfile.mkdtemp()
    mtools("mcopy", "-s", "-n", "-i", spec, "::/*", d)
    out = {}
    for root, _, files in os.walk(d):
        for n in files:
            p = os.path.join(root, n)
            out[os.path.relpath(p, d)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    shutil.rmtree(d)
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


class EspLab:
    def __init__(self, binary):
        self.lab = bl.Lab(binary)
        self.work = self.lab.work
        self.kernel = open(bl.KERNEL, "rb").read()
        self.initrd = open(self.lab.initrd, "rb").read()
        self.sdboot = open(SDBOOT, "rb").read()
        out = bl.sh("bash", os.path.join(bl.HERE, "boot-images.sh"), "mirror3", "mdesp")
        for line in out.splitlines():
            name, d = line.split()
            self.lab.images[name] = json.load(open(os.path.join(d, "manifest.json")))

    def primary_files(self, extra=None, append=APPEND):
        f = {
            "EFI/BOOT/BOOTX64.EFI": self.sdboot,
            "loader/loader.conf": b"default zroam.conf\ntimeout 0\n",
            "loader/entries/zroam.conf": f"title zroam lab\nlinux /lab/vmlinuz\ninitrd /lab/initrd\noptions {append}\n".encode(),
            "lab/vmlinuz": self.kernel,
            "lab/initrd": self.initrd,
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

    def boot(self, tag, disks, firmware=True, kill_on=None, timeout=240, shell_cmd=bl.SHELL_CMD):
        """disks: [(image, bus, bootindex)]. With firmware: OVMF boots the lowest bootindex."""
        work = self.lab.work
        a = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-smp", "2", "-m", "1024",
             "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
        if firmware:
            vars_copy = os.path.join(work, f"{tag}-vars.fd")
            shutil.copy(OVMF_VARS, vars_copy)
            a += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                  "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        else:
            a += ["-kernel", bl.KERNEL, "-initrd", self.lab.initrd, "-append", APPEND]
        if any(b == "usb" for _, b, _ in disks):
            a += ["-device", "qemu-xhci,id=xhci"]
        for i, (img, bus, idx) in enumerate(disks):
            a += ["-drive", f"if=none,id=d{i},file={img},format=raw,cache=unsafe"]
            boot = f",bootindex={idx}" if idx is not None else ""
            dev = "virtio-blk-pci" if bus == "virtio" else "usb-storage"
            a += ["-device", f"{dev},drive=d{i}{boot}" + (",bus=xhci.0" if bus == "usb" else "")]
        t0 = time.monotonic()
        vm = bl.Vm(a, work)
        if kill_on:
            vm.expect(kill_on, timeout)
            time.sleep(0.3)
            vm.p.kill()
        else:
            vm.expect(r"ZROAM-BE-INIT|zroam# ", timeout)
            if b"ZROAM-BE-INIT" not in vm.out:
                vm.send(shell_cmd)
        serial = vm.finish(30)
        with open(os.path.join(work, f"{tag}.serial.log"), "w") as f:
            f.write(serial)
        r = bl.Result(serial, time.monotonic() - t0)
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


def partuuid(img):
    info = bl.sh("sgdisk", "-i", "1", img)
    for line in info.splitlines():
        if line.startswith("Partition unique GUID:"):
            return line.split(":", 1)[1].strip().lower()
    raise ValueError(img)


def synced(r, src_img, dst_img, e, seed=None):
    """dst's managed tree equals src's; dst's random-seed is still `seed`."""
    ts, td = tree(src_img), tree(dst_img)
    ms, md = managed(ts), managed(td)
    bl.check(ms == md, f"{os.path.basename(dst_img)}: managed tree differs: only primary {sorted(set(ms) - set(md))}, "
             f"only secondary {sorted(set(md) - set(ms))}, changed {sorted(k for k in ms if k in md and ms[k] != md[k])}", e)
    if seed is not None:
        got = td.get("loader/random-seed")
        bl.check(got == hashlib.sha256(seed).hexdigest(), f"{os.path.basename(dst_img)}: random-seed changed", e)
    ent = esp_entry(r, partuuid(dst_img))
    bl.check(ent.get("role") == "secondary" and ent.get("verified"), f"report for {os.path.basename(dst_img)}: {ent}", e)


def s1_two_disks(lab, e):
    a, b = lab.lab.disk("mirror", 0, "e1"), lab.lab.disk("mirror", 1, "e1")
    seed = os.urandom(32)
    put(a, lab.stale_files(seed))
    put(b, lab.primary_files())
    before = part_hash(b)
    r = lab.boot("e1", [(a, "virtio", 2), (b, "virtio", 1)])
    bl.booted(r, "debian", e, child="yes")
    check_primary(r, b, before, e)
    synced(r, b, a, e, seed)
    return r


def check_primary(r, img, before, e):
    bl.check(esp_report(r).get("primary") == partuuid(img), f"primary {esp_report(r).get('primary')}, expected {partuuid(img)}", e)
    bl.check(part_hash(img) == before, f"the booted ESP ({os.path.basename(img)}) changed", e)


def s2_three_disks_usb(lab, e):
    a, b, c = (lab.lab.disk("mirror3", i, "e2") for i in range(3))
    seeds = [os.urandom(32), os.urandom(32)]
    put(a, lab.stale_files(seeds[0]))
    put(b, lab.primary_files())
    put(c, lab.stale_files(seeds[1]))
    before = part_hash(b)
    r = lab.boot("e2", [(a, "virtio", 2), (b, "virtio", 1), (c, "usb", 3)])
    bl.booted(r, "debian", e)
    check_primary(r, b, before, e)
    synced(r, b, a, e, seeds[0])
    synced(r, b, c, e, seeds[1])
    return r


def s3_interrupted(lab, e):
    a, b = lab.lab.disk("mirror", 0, "e3"), lab.lab.disk("mirror", 1, "e3")
    put(a, lab.stale_files(os.urandom(32)))
    put(b, lab.primary_files({"lab/big.bin": os.urandom(24 << 20)}))
    before = part_hash(b)
    # First boot: killed while the secondary is being written.
    lab.boot("e3a", [(a, "virtio", 2), (b, "virtio", 1)], kill_on=r"zroam: ESP \S+: syncing")
    marker = any(p.lower().startswith("zroam/sync-in-progress") for p in tree(a))
    bl.check(marker, "the interrupted sync left no in-progress marker on the secondary", e)
    r = lab.boot("e3b", [(a, "virtio", 2), (b, "virtio", 1)])
    bl.booted(r, "debian", e)
    ent = esp_entry(r, partuuid(a))
    bl.check(ent.get("resumed") is True, f"second boot did not see the marker: {ent}", e)
    check_primary(r, b, before, e)
    synced(r, b, a, e)
    return r


def s4_corrupt_secondary(lab, e):
    a, b, c = (lab.lab.disk("mirror3", i, "e4") for i in range(3))
    put(b, lab.primary_files())
    put(c, lab.stale_files(os.urandom(32)))
    _, off, _ = esp_at(a)
    with open(a, "r+b") as f:  # A's FAT boot sector gone
        f.seek(off)
        f.write(bytes(4096))
    r = lab.boot("e4", [(a, "virtio", 2), (b, "virtio", 1), (c, "virtio", 3)])
    bl.booted(r, "debian", e)
    ent = esp_entry(r, partuuid(a))
    bl.check(ent.get("role") == "skipped", f"corrupt ESP not skipped: {ent}", e)
    bl.check(any(partuuid(a) in w for w in esp_report(r).get("warnings", [])), "no warning names the corrupt ESP", e)
    synced(r, b, c, e)
    return r


def s5_bios(lab, e):
    a, b = lab.lab.disk("mirror", 0, "e5"), lab.lab.disk("mirror", 1, "e5")
    put(a, lab.stale_files(os.urandom(32)))
    put(b, lab.primary_files())
    before = (part_hash(a), part_hash(b))
    r = lab.boot("e5", [(a, "virtio", None), (b, "virtio", None)], firmware=False)
    bl.booted(r, "debian", e)
    rep = esp_report(r)
    bl.check(rep.get("primary") is None, f"a primary was chosen without firmware: {rep.get('primary')}", e)
    roles = sorted(x.get("role") for x in rep.get("esps", []))
    bl.check(roles == ["check", "check"], f"roles {roles}", e)
    drift = [x.get("drift") for x in rep.get("esps", []) if x.get("drift")]
    bl.check(drift and drift[0].get("copies"), f"the drift was not reported: {drift}", e)
    bl.check((part_hash(a), part_hash(b)) == before, "an ESP changed although no primary was known", e)
    return r


def s6_mdraid(lab, e):
    a, b = lab.lab.disk("mdesp", 0, "e6"), lab.lab.disk("mdesp", 1, "e6")
    # The md mirror holds one FAT: write it through one member (md 1.0 keeps data at offset 0).
    put(a, lab.primary_files())
    put(b, lab.primary_files())
    before = (part_hash(a), part_hash(b))
    r = lab.boot("e6", [(a, "virtio", 1), (b, "virtio", 2)])
    bl.booted(r, "debian", e)
    roles = sorted(x.get("role") for x in esp_report(r).get("esps", []))
    bl.check(roles == ["skipped", "skipped"], f"md members not left alone: {roles}", e)
    bl.check((part_hash(a), part_hash(b)) == before, "an md member ESP was written", e)
    return r


def s7_running_system(lab, e):
    """`zroam esp status`, `esp sync --dry-run` and `esp sync` from a shell, root mounted."""
    a, b = lab.lab.disk("mirror", 0, "e7"), lab.lab.disk("mirror", 1, "e7")
    put(a, lab.stale_files(os.urandom(32)))
    put(b, lab.primary_files(append=APPEND + " zroam.esp=off zroam.shell=1"))
    before_a, before_b = part_hash(a), part_hash(b)
    g = lab.lab.guid("mirror")
    z = f"zroam esp --pool-guid {g}"
    cmd = (f"ln -s /init /bin/zroam; echo ESP-STATUS-BEGIN; {z} status; echo ESP-DRY-BEGIN; {z} sync --dry-run; "
           f"echo ESP-HASH-CHECK; echo ESP-SYNC-BEGIN; {z} sync; echo ESP-SYNC-END rc=$?; poweroff -f\n")
    r = lab.boot("e7", [(a, "virtio", 2), (b, "virtio", 1)], shell_cmd=cmd)
    out = r.serial
    status = bl.between(out, "ESP-STATUS-BEGIN", "ESP-DRY-BEGIN") or ""
    bl.check(f"primary: {partuuid(b)}" in status, f"esp status did not name the primary: {status!r}", e)
    bl.check("would copy" in status and partuuid(a) in status, f"esp status shows no drift for A: {status!r}", e)
    dry = bl.between(out, "ESP-DRY-BEGIN", "ESP-HASH-CHECK") or ""
    bl.check("would copy" in dry, f"esp sync --dry-run shows no plan: {dry!r}", e)
    bl.check("ESP-SYNC-END rc=0" in out, "zroam esp sync did not succeed", e)
    bl.check(part_hash(b) == before_b, "the booted ESP changed", e)
    bl.check(part_hash(a) != before_a, "esp sync did not write the secondary", e)
    ms, ma = managed(tree(b)), managed(tree(a))
    bl.check(ms == ma, f"after esp sync A differs from B: {sorted(set(ms) ^ set(ma))}", e)
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
    parsed = bl.lab_args(__doc__)
    if parsed is None:
        return 2
    binary, args = parsed
    t0 = time.monotonic()
    lab = EspLab(binary)
    rows = [bl.run_scenario(n, SCENARIOS[n], lab) for n in args or list(SCENARIOS)]
    failed = bl.print_table("lab-esp", rows, t0)
    if not failed:
        shutil.rmtree(lab.lab.work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
