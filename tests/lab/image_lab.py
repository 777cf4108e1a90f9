#!/usr/bin/env python3
"""The image lab: `zroam image` as a user runs it on the host, for the guest kernel. Its
ramdisk is the boot lab's own (boot-initrd.sh builds it with `zroam image`), so every
boot-lab scenario boots it; here:

- building twice gives the same bytes, the ramdisk and the unified kernel image alike, and
  the image holds what a portable root needs (with --host-only, fewer modules but the
  common storage drivers still);
- the unified kernel image on a ZFS stick's ESP (at EFI/BOOT/BOOTX64.EFI, put there with
  mtools: the host has no FAT driver) boots under OVMF with empty variables (no boot entry)
  on machines whose own disks, on SATA, NVMe or virtio, hold a pool named rpool too (the
  virtio one booted twice on the same disks): the stick's root every time, and the
  machine's disks are left as they were.

usage: image_lab.py ZROAM_BINARY [SCENARIO...]
"""
import hashlib
import os
import subprocess
import sys
import time

from esp_lab import put
from vmlab import BASE_ARGS, HERE, Lab, _guest, booted, check, kernel, partuuid, sh, suite_main

LIBDIR = os.path.join(HERE, "..", "..", "initramfs-tools", "share")
# The stick's command line: the console the lab reads, and root=zfs:AUTO (the pin decides).
CMDLINE = f"{BASE_ARGS} root=zfs:AUTO"


def sha_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ImageLab(Lab):
    def __init__(self, binary):
        super().__init__(binary, sets=("single", "mirror", "foreign"))
        self._uki = None

    def image(self, *args, env=None):
        """Runs `zroam image` for the guest kernel with the lab's options; returns its output."""
        argv = [self.binary, "image", "--kver", guest_kver(), "--kernel", kernel(), "--luks", "--hostid", "5eed1234", *args]
        return subprocess.run(argv, check=True, text=True, capture_output=True,
                              env={**os.environ, "ZROAM_LIBDIR": LIBDIR, **(env or {})}).stdout

    def uki(self):
        """The stick's unified kernel image, pinned to the stick's pool (built once)."""
        if self._uki is None:
            pin = os.path.join(self.work, "stick.pin")
            with open(pin, "wb") as f:
                f.write(self.pin("single"))
            self._uki = os.path.join(self.work, "stick.efi")
            self.image("--pin", pin, "--uki", self._uki, "--cmdline", CMDLINE)
        return self._uki


def guest_kver():
    return _guest()[0]


class Built:
    """A scenario that boots nothing: its row's note."""
    be = None

    def __init__(self, note):
        self.note = note


def s1_reproducible(lab, e):
    """The same inputs twice: the same ramdisk and the same EFI image, byte for byte; a
    different SOURCE_DATE_EPOCH changes them (the time is the only varying input)."""
    w = lab.work
    pin = os.path.join(w, "r.pin")
    with open(pin, "wb") as f:
        f.write(lab.pin("single"))
    t0 = time.monotonic()
    out = lab.image("-o", f"{w}/r1.img", "--pin", pin, "--uki", f"{w}/r1.efi", "--cmdline", CMDLINE)
    took = time.monotonic() - t0
    lab.image("-o", f"{w}/r2.img", "--pin", pin, "--uki", f"{w}/r2.efi", "--cmdline", CMDLINE)
    lab.image("-o", f"{w}/r3.img", "--pin", pin, env={"SOURCE_DATE_EPOCH": "1700000000"})
    h = {n: sha_file(f"{w}/{n}") for n in ("r1.img", "r2.img", "r1.efi", "r2.efi", "r3.img")}
    check(h["r1.img"] == h["r2.img"], f"two builds of the ramdisk differ: {h['r1.img'][:12]} {h['r2.img'][:12]}", e)
    check(h["r1.efi"] == h["r2.efi"], f"two builds of the EFI image differ: {h['r1.efi'][:12]} {h['r2.efi'][:12]}", e)
    check(h["r3.img"] != h["r1.img"], "another SOURCE_DATE_EPOCH gave the same bytes: the mtime is not in the archive", e)
    # What it holds: zroam as /init, OpenZFS's tools and modules, kmod, cryptsetup, the
    # drivers of every bus a stick meets, the pin and the hostid.
    names = set(sh("bash", "-c", f"zstd -dc {w}/r1.img | cpio -t --quiet").split())
    k = f"lib/modules/{guest_kver()}"
    for want in ["init", "bin/zpool", "bin/zfs", "bin/modprobe", "bin/cryptsetup", "bin/sh", "etc/zroam/root.pin", "etc/hostid",
                 f"{k}/updates/dkms/zfs.ko", f"{k}/modules.dep", f"{k}/modules.alias.bin", "dev/console"]:
        check(want in names, f"the ramdisk lacks {want}", e)
    for drv in ["ahci", "nvme", "xhci-pci", "uas", "usb-storage", "virtio_blk", "sdhci-pci", "mmc_block", "usbhid", "vfat", "dm-crypt"]:
        check(any(n.startswith(f"{k}/kernel/") and n.endswith(f"/{drv}.ko") for n in names), f"the ramdisk lacks the {drv} module", e)
    check(not any("infiniband" in n for n in names), "the ramdisk carries NVMe over fabrics' RDMA stack", e)
    # --host-only: this host's storage drivers and the common ones, not every bus's.
    lab.image("-o", f"{w}/h.img", "--pin", pin, "--host-only")
    host = set(sh("bash", "-c", f"zstd -dc {w}/h.img | cpio -t --quiet").split())
    kos = lambda ns: {n for n in ns if n.endswith(".ko")}
    check(kos(host) < kos(names), f"--host-only took {len(kos(host))} modules, not fewer than {len(kos(names))}", e)
    for drv in ["zfs", "ahci", "nvme", "xhci-pci", "uas", "usb-storage", "virtio_blk", "vfat"]:
        check(any(n.endswith(f"/{drv}.ko") for n in host), f"the --host-only ramdisk lacks the {drv} module", e)
    # The EFI image: systemd's stub with the four sections, the ramdisk's bytes in .initrd.
    heads = sh("objdump", "-h", f"{w}/r1.efi")
    for s in (".osrel", ".cmdline", ".initrd", ".linux"):
        check(f" {s} " in heads, f"the EFI image has no {s} section", e)
    # (objcopy pads a section to its alignment.)
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.initrd", f"{w}/r1.efi", f"{w}/r1.initrd"], check=True)
    with open(f"{w}/r1.initrd", "rb") as a, open(f"{w}/r1.img", "rb") as b:
        check(a.read().rstrip(b"\0") == b.read().rstrip(b"\0"), "the EFI image's .initrd is not the ramdisk", e)
    print(out.strip(), file=sys.stderr)
    size = os.path.getsize(f"{w}/r1.img") / 2**20
    return Built(f"ramdisk {size:.1f} MiB, EFI image {os.path.getsize(f'{w}/r1.efi') / 2**20:.1f} MiB, "
                 f"built in {took:.1f} s; {h['r1.img'][:12]} twice")


def internal_boot(bus, internal, boots=1):
    """The stick (the `single` pool's disk, on USB, its ESP holding the EFI image) in a
    machine whose own disks on `bus` hold another pool named rpool (`internal`, a set),
    booted by OVMF with empty variables, `boots` times in a row on the same disks."""
    def scenario(lab, e):
        tag = f"u-{bus}"
        stick = lab.disk("single", 0, tag)
        with open(lab.uki(), "rb") as f:
            put(stick, {"EFI/BOOT/BOOTX64.EFI": f.read()})
        own = [lab.disk(internal, i, tag) for i in range(len(lab.images[internal]["disks"]))]
        before = [sha_file(d) for d in own]
        inits = []
        for n in range(boots):
            r = lab.boot(f"{tag}-{n}", [(d, bus) for d in own] + [(stick, "usb")], firmware=True, timeout=300)
            booted(r, "debian", e, child="yes")
            rep = r.report or {}
            got = str((rep.get("pool") or {}).get("guid"))
            check(got == lab.guid("single"), f"boot {n}: pool {got}, not the stick's {lab.guid('single')} (the machine's is {lab.guid(internal)})", e)
            pin = (rep.get("trust") or {}).get("pin") or {}
            check(pin.get("state") == "active", f"boot {n}: the image's pin was not used: {pin}", e)
            # The firmware had no kernel to start but the stick's file: systemd's stub says
            # which ESP it came from, zroam read that, and zroam ran as the ramdisk's /init.
            esp = str((rep.get("booted_esp") or {}).get("partuuid")).lower()
            check(esp == partuuid(stick, 1), f"boot {n}: from ESP {esp}, not the stick's {partuuid(stick, 1)}", e)
            check(rep.get("mode") == "init", f"boot {n}: zroam ran as {rep.get('mode')}, not the ramdisk's /init", e)
            after = [sha_file(d) for d in own]
            check(before == after, f"boot {n}: the machine's own disks changed: "
                                   f"{[os.path.basename(d) for d, b, a in zip(own, before, after) if b != a]}", e)
            inits.append(r.be["uptime"] if r.be else None)
        ok = sum(i is not None for i in inits)
        r.note = f"{ok} of {boots} boots: the stick's root (BE init at {inits} s); {internal} on {bus} untouched"
        return r
    return scenario


SCENARIOS = {
    "1-reproducible": s1_reproducible,
    "2-uki-sata": internal_boot("sata", "mirror"),
    "3-uki-nvme": internal_boot("nvme", "foreign"),
    # The machine's disks on virtio are found first: booted twice on the same disks.
    "4-uki-virtio": internal_boot("virtio", "mirror", boots=2),
}


if __name__ == "__main__":
    sys.exit(suite_main(__doc__, "lab-image", ImageLab, SCENARIOS))
