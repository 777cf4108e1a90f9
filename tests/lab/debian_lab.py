#!/usr/bin/env python3
"""The Debian lab: a real Debian 12 on a ZFS root (tests/lab/debian-images.sh: a mirror
made by Debian's OpenZFS 2.1.11, an ESP on each disk, zroam's .deb installed with dpkg and
the image built by the system's own update-initramfs), booted by OVMF through systemd-boot
from the ESP, its kernel and ramdisk Debian's own. The marker is the BE's real systemd
reaching multi-user.target (zroam-lab.service, ordered after it, prints what the lab reads
and powers off).

The scenarios are one system's life, in order, on the same two disks:
  1-in-place       both disks; the firmware boots the first; zroam syncs the second ESP;
                   then, in that same running system, set up as a stick that boots
                   anywhere (/etc/zroam/image.conf: esp=/boot/efi), `dpkg -i` of the kernel
                   that bookworm-security brings (and its zfs modules): kernel-install puts
                   it on the mounted ESP, zroam's hooks build the new kernel's EFI image
                   (zroam image --hook) at EFI/BOOT/BOOTX64.EFI, keeping systemd-boot's copy
                   there, and copy both to the other ESP at once
  2-usb-alone      the second disk alone, moved to USB, with no boot entry: the firmware
                   starts the EFI image the hooks built and copied there (zroam as the
                   ramdisk's /init), which boots the new kernel, degraded
One boot does both the first boot's checks and the update (a boot of this system under
emulation is a minute and a half): the first disk's ESP is read after the VM has powered
off, so the boot's own sync and the hooks' copy are checked together.

usage: debian_lab.py ZROAM_DEB [SCENARIO...]  (a later scenario needs the earlier ones)
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import esp_lab
from vmlab import (GUEST, OVMF_VARS, PROMPTS, SHELL_CMD, SULOGIN, Result, Vm, check, exit_on_signal, log, print_table, qemu_args,
                   run_scenario, sh)

HERE = os.path.dirname(os.path.abspath(__file__))
BE = "rpool/ROOT/debian"
# A Debian guest's own ramdisk and systemd under emulation: minutes, not seconds.
BOOT_TIMEOUT = 420
JOB_TIMEOUT = 1200


class DebianLab:
    def __init__(self, deb, names):
        self.boots = []
        self._update = None
        self._update_err = None
        self._update_thread = None
        if names:
            # The new kernel's zfs modules compile (minutes, on a fresh machine) while the
            # system's images are built: those wait on the network and on the builder VM's
            # one busy vCPU, and would leave a core idle.
            self._update_thread = threading.Thread(target=self._build_update, daemon=True)
            self._update_thread.start()
        self.dir = sh("bash", os.path.join(HERE, "debian-images.sh"), deb).strip()
        with open(os.path.join(self.dir, "manifest.json")) as f:
            self.m = json.load(f)
        self.work = tempfile.mkdtemp(prefix="zroam-debian-", dir=os.environ.get("TMPDIR", "/tmp"))
        # One system: the scenarios share these two disks, in order.
        self.a, self.b = (os.path.join(self.work, n) for n in ("a.img", "b.img"))
        for src, dst in zip(self.m["disks"], (self.a, self.b)):
            subprocess.run(["cp", "--sparse=always", src, dst], check=True)

    def _build_update(self):
        try:
            d = sh("bash", os.path.join(HERE, "debian-images.sh"), "--update").strip()
            with open(os.path.join(d, "KVER")) as f:
                self._update = (d, f.read().strip())
        except Exception as x:  # reported by update(), in the scenario that needs it
            tail = "\n".join((getattr(x, "stderr", None) or "").splitlines()[-20:])
            self._update_err = f"{x}\n{tail}" if tail else str(x)

    def update(self):
        """The kernel update's directory (its packages, KVER): built beside the system's
        images (see __init__), or now if nothing started it."""
        if self._update_thread is not None:
            self._update_thread.join()
        elif self._update is None and self._update_err is None:
            self._build_update()
        if self._update_err is not None:
            raise RuntimeError(f"the kernel update's packages could not be built: {self._update_err}")
        return self._update

    def boot(self, tag, disks, job=None, timeout=BOOT_TIMEOUT):
        """disks: [(image, bus, bootindex)] through OVMF (fresh variables: no boot entry, the
        firmware takes the first disk's removable-media loader). job: {name: path} packed as
        a tar on a virtio disk with serial "labjob", which the marker runs before powering off."""
        vars_copy = os.path.join(self.work, f"{tag}-vars.fd")
        shutil.copy(OVMF_VARS, vars_copy)
        # A full system with dpkg and update-initramfs inside: more memory than a lab ramdisk.
        args = qemu_args(disks, firmware=vars_copy, mem=2048)
        if job:
            jt = os.path.join(self.work, f"{tag}-job.tar")
            sh("tar", "-cf", jt, "-C", os.path.dirname(next(iter(job.values()))), *[os.path.basename(p) for p in job.values()])
            args += ["-drive", f"if=none,id=job,file={jt},format=raw,readonly=on", "-device", "virtio-blk-pci,drive=job,serial=labjob"]
        t0 = time.monotonic()
        vm = Vm(args, self.work)
        try:
            if vm.expect(f"ZROAM-BE-INIT|{PROMPTS}|{SULOGIN}", timeout) and b"ZROAM-BE-INIT" not in vm.out:
                # A shell (zroam refused, or the generator's own failure): its report.
                if re.search(SULOGIN.encode(), vm.out):
                    vm.send("\n")
                    vm.wait(3)
                vm.send(SHELL_CMD)
            # The marker's report, the job (if any), then the power-off.
            serial = vm.finish(JOB_TIMEOUT if job else 120)
        finally:
            vm.kill()
        with open(os.path.join(self.work, f"{tag}.serial.log"), "w") as f:
            f.write(serial)
        r = Result(serial, time.monotonic() - t0, outcome="mounted")
        r.tag = tag
        m = re.search(r"ZROAM-BE-INIT .* target=(\S+) kernel=(\S+)", serial)
        r.target, r.kernel = (m.group(1), m.group(2)) if m else (None, None)
        pool = re.search(r"ZROAM-POOL-BEGIN(.*?)ZROAM-POOL-END", serial, re.S)
        r.pool = pool.group(1) if pool else ""
        m = re.search(r"Startup finished in (.*?)\r?\n", serial)
        r.note = m.group(1) if m else ""
        self.boots.append((threading.get_ident(), r))
        return r


def up(lab, r, e, kver, members):
    """The system came up: multi-user reached on the BE, zroam mounted it (its report in
    /run/zroam), from the pool the image was made with, the kernel expected, and the pool's
    state says which members took part."""
    check(r.be is not None, "multi-user.target was never reported (no marker)", e)
    if r.be:
        check(r.be["be"] == BE, f"root is {r.be['be']}, expected {BE}", e)
        check(r.be["root"] == "rw", f"root mounted {r.be['root']}", e)
        check(r.target == "active", f"multi-user.target is {r.target}", e)
        check(r.kernel == kver, f"kernel {r.kernel}, expected {kver}", e)
    rep = r.report or {}
    check(rep.get("outcome") == r.expected_outcome, f"zroam's report: outcome {rep.get('outcome')}, expected {r.expected_outcome}", e)
    check(str((rep.get("pool") or {}).get("guid")) == lab.m["pool_guid"],
          f"imported pool {(rep.get('pool') or {}).get('guid')}, the system's is {lab.m['pool_guid']}", e)
    state = re.search(r"state:\s+(\S+)", r.pool)
    want = "ONLINE" if members == 2 else "DEGRADED"
    check(state and state.group(1) == want, f"pool state {state and state.group(1)}, expected {want}", e)


def same_esps(lab, e, also=()):
    """The second ESP holds what the first holds (zroam's own entries aside)."""
    ta, tb = esp_lab.managed(esp_lab.tree(lab.a)), esp_lab.managed(esp_lab.tree(lab.b))
    check(ta == tb, f"ESPs differ: only first {sorted(set(ta) - set(tb))}, only second {sorted(set(tb) - set(ta))}, "
                    f"changed {sorted(k for k in ta if k in tb and ta[k] != tb[k])}", e)
    for p in also:
        check(p.lower() in tb, f"the second ESP has no {p}", e)


def kernel_files(lab, kver):
    mid = lab.m["machine_id"]
    return [f"{mid}/{kver}/linux", f"{mid}/{kver}/initrd.img-{kver}", f"loader/entries/{mid}-{kver}.conf"]


def update_job(lab, upd):
    """The job that runs the kernel update inside the booted system: the update's packages
    and a script. dpkg writes to a file, not to the marker's serial line (a getty's hang-up
    of that line made it abort on EIO once; the lab system now has none there): the file
    goes to the serial line, opened anew, once the update is done. Each line carries the
    uptime, to show where the update's minutes go. Without the ESP mounted the update would
    not reach it: rc 99."""
    job = os.path.join(lab.work, "update-job")
    os.makedirs(job, exist_ok=True)
    for n in (n for n in os.listdir(upd) if n.endswith(".deb")):
        shutil.copy(os.path.join(upd, n), job)
    with open(os.path.join(job, "job.sh"), "w") as f:
        f.write("set +ex; rc=0; mountpoint -q /boot/efi || rc=99\n"
                "mkdir -p /etc/zroam && echo esp=/boot/efi >/etc/zroam/image.conf\n"
                "[ $rc = 0 ] && { { dpkg -i ./*.deb; echo \"dpkg rc=$?\"; } 2>&1 |\n"
                "  while IFS= read -r l; do read -r up _ </proc/uptime; echo \"[$up] $l\"; done >update.log\n"
                "  rc=$(sed -n 's/.*dpkg rc=//p' update.log); }\n"
                "ls -l /boot /boot/efi/*/ >>update.log 2>&1 || true\n"
                "{ cat update.log; echo \"LAB: update rc=$rc\"; } >/dev/ttyS0 2>&1\n")
    return {n: os.path.join(job, n) for n in os.listdir(job)}


def d1_in_place(lab, e):
    upd, upd_kver = lab.update()
    r = lab.boot("d1", [(lab.a, "virtio", 1), (lab.b, "virtio", 2)], job=update_job(lab, upd))
    up(lab, r, e, lab.m["kver"], 2)
    check("LAB: /boot/efi not mounted" not in r.serial, "the first disk's ESP was not mounted on /boot/efi (fstab)", e)
    esp = esp_lab.esp_report(r)
    check(esp.get("primary") == lab.m["esp"][0], f"primary ESP {esp.get('primary')}, expected the first disk's", e)
    check("LAB: update rc=99" not in r.serial, "/boot/efi was not mounted: the update would not reach the ESP", e)
    check("LAB: update rc=0" in r.serial, "the kernel update inside the system failed (see its console)", e)
    # The boot's sync (the installed kernel, the loader) and the hooks' copy (the new one).
    same_esps(lab, e, kernel_files(lab, lab.m["kver"]) + kernel_files(lab, upd_kver) +
              ["EFI/BOOT/BOOTX64.EFI", "EFI/zroam/original.efi", "EFI/zroam/installed.sha256"])
    # The stick's EFI image: the new kernel, the ramdisk zroam image built, the system's
    # command line; systemd-boot's removable-media copy kept beside it.
    t = {p.lower(): h for p, h in esp_lab.tree(lab.a).items()}
    check(t.get("efi/zroam/original.efi") == t.get("efi/systemd/systemd-bootx64.efi", "?"),
          "systemd-boot's EFI/BOOT/BOOTX64.EFI was not kept as EFI/zroam/original.efi", e)
    uki = uki_sections(lab, lab.a)
    check(uki.get("kver") == upd_kver, f"the EFI image's kernel is {uki.get('kver')}, expected {upd_kver}", e)
    check("root=ZFS=rpool/ROOT/debian" in uki.get("cmdline", ""), f"the EFI image's command line: {uki.get('cmdline')!r}", e)
    r.note = update_times(r.serial) or r.note
    return r


def uki_sections(lab, img):
    """The EFI image at EFI/BOOT/BOOTX64.EFI of a disk's ESP: its kernel's version and its
    command line."""
    d = tempfile.mkdtemp(dir=lab.work)
    spec, _, _ = esp_lab.esp_at(img)
    esp_lab.mtools("mcopy", "-n", "-i", spec, "::/EFI/BOOT/BOOTX64.EFI", f"{d}/uki.efi")
    out = {}
    for sec in (".linux", ".cmdline"):
        if subprocess.run(["objcopy", "-O", "binary", f"--only-section={sec}", f"{d}/uki.efi", f"{d}/{sec}"],
                          capture_output=True).returncode == 0:
            with open(f"{d}/{sec}", "rb") as f:
                out[sec] = f.read()
    k = out.get(".linux", b"")
    if k[0x202:0x206] == b"HdrS":
        at = int.from_bytes(k[0x20e:0x210], "little") + 0x200
        out["kver"] = k[at:at + 256].split(b"\0")[0].split()[0].decode()
    out["cmdline"] = out.get(".cmdline", b"").rstrip(b"\0").decode(errors="replace")
    return out


def d2_usb_alone(lab, e):
    r = lab.boot("d2", [(lab.b, "usb", 1)])
    # zroam's own /init switched root itself: "booted", where Debian's ramdisk "mounted".
    r.expected_outcome = "booted"
    up(lab, r, e, lab.update()[1], 1)
    return r


def update_times(serial):
    """Where the update's time went, from the uptimes of dpkg's lines: the unpacking, the
    new kernel's image (update-initramfs), the rest (kernel-install, the ESP hooks)."""
    lines = re.findall(r"^\[(\d+\.\d+)\] (.*?)\r?$", serial, re.M)
    at = lambda pat: next((float(t) for t, l in lines if re.search(pat, l)), None)
    first, gen, end = (float(lines[0][0]) if lines else None), at(r"update-initramfs: Generating"), at(r"^dpkg rc=")
    after = at(r"kernel version \S+ in systemd-boot")  # initramfs-tools' post-update hook: the image is made
    if None in (first, gen, after, end):
        return ""
    return f"dpkg -i {end - first:.0f} s: unpack {gen - first:.0f}, update-initramfs {after - gen:.0f}, rest {end - after:.0f}"


SCENARIOS = {"1-in-place": d1_in_place, "2-usb-alone": d2_usb_alone}


def main():
    exit_on_signal()
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    deb, names = os.path.abspath(sys.argv[1]), sys.argv[2:] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"debian_lab: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    # Beside another suite (make check runs this one beside the generator lab), a guest of
    # one vCPU: one of the host's two cores, the other suite's guests the other.
    GUEST.smp = int(os.environ.get("LAB_DEBIAN_SMP", "2"))
    lab = DebianLab(deb, names)
    rows = []
    for n in names:
        rows.append(run_scenario(n, SCENARIOS[n], lab))
        if rows[-1][2] != "ok":
            break  # the later scenarios continue this system's life: they would fail for this one's reason
    failed = print_table("lab-debian", rows, t0) + len(names) - len(rows)
    if not failed:
        shutil.rmtree(lab.work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
