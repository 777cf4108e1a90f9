"""The VM lab's shared machinery: QEMU/TCG guests on the serial console, their disks and
ramdisks, the results a boot leaves (serial log, /run/zroam/report.json), the assertions
the suites share, and the suite runner. The boot, generator, ESP and bench labs import it;
each of those files holds only its own scenarios.

Hermeticity: a lab judges only what it made. Guests see only the disk copies handed to
them; every QEMU process started here is killed when its boot ends or the run is
interrupted; work dirs are private (kept on failure for their logs).
"""
import atexit
import concurrent.futures
import fcntl
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("ZROAM_LAB_CACHE", "/var/cache/zroam-lab")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# The lab's hostids: the builder's for "our" pools, and another host's.
OURS, FOREIGN = "5eed1234", "0badcafe"
# The hostid given on the command line, for images that carry no /etc/hostid (archzfs's
# mkinitcpio hook leaves it out; Arch users add this).
SPL_HOSTID = f"spl.spl_hostid=0x{OURS}"
# The pool sets (boot-images.sh) every boot lab loads.
BOOT_SETS = ("mirror", "single", "foreign", "mmp", "luks", "native", "keyfile", "lostkey", "snaps")
SHELL_CMD = ("echo ZROAM-REPORT-''BEGIN; cat /run/zroam/report.json; echo; echo ZROAM-REPORT-''END; "
             "poweroff -f || { echo 1 >/proc/sys/kernel/sysrq; echo o >/proc/sysrq-trigger; }\n")
SULOGIN = "Press Enter for maintenance"
QEMU_CRASH = re.compile(r"qemu-system-x86_64: .*Assertion .* failed")
# Emergency-shell prompts: zroam's own, dracut's (with and without systemd), initramfs-tools',
# mkinitcpio's.
PROMPTS = r"zroam# |dracut:/# |:/# |sh-[0-9.]+# |\(initramfs\) |\[rootfs \S*\]# "
# panic=-1: a kernel panic (or init exiting) ends the VM at once instead of hanging.
BASE_ARGS = "console=ttyS0 panic=-1 loglevel=4"
# Where the generators install the root pin in a ramdisk (zroam's decide::pin::PATH).
PIN = "/etc/zroam/root.pin"


def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


# The lab's OpenZFS row (builder.sh): unset, the host's OpenZFS on the newest host kernel
# that has its DKMS modules; "zfs21", Debian 12's own OpenZFS 2.1.11 on its kernel 6.1
# (zfs21.sh's staging tree). The ramdisks and pool sets the scripts make follow it.
ROW = os.environ.get("LAB_ROW", "")


@functools.lru_cache(None)
def _guest():
    """(kernel release, kernel image) of the row's guests, as builder.sh sets them."""
    out = sh("bash", "-c", 'source "$1" && echo "$LAB_KVER" && echo "$LAB_KERNEL"', "vmlab", os.path.join(HERE, "builder.sh"))
    release, image = out.split()
    return release, image


def kver():
    """The guest kernel's release: the host row's newest installed one with a DKMS-built
    zfs.ko, or the other row's own."""
    return _guest()[0]


def kernel():
    return _guest()[1]


# --- disk images -----------------------------------------------------------------------

def partitions(img):
    """{number: (offset, size, type code)} in bytes, from the image's GPT (sgdisk -p)."""
    out = sh("sgdisk", "-p", img)
    sector = int(re.search(r"Sector size \(logical\): (\d+)", out).group(1))
    parts = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+([0-9A-F]{4})\b", line)
        if m:
            first, last = int(m.group(2)), int(m.group(3))
            parts[int(m.group(1))] = (first * sector, (last - first + 1) * sector, m.group(4))
    return parts


def part_geom(img, n):
    """(offset, size) in bytes of partition n."""
    return partitions(img)[n][:2]


def partuuid(img, n=1):
    for line in sh("sgdisk", "-i", str(n), img).splitlines():
        if line.startswith("Partition unique GUID:"):
            return line.split(":", 1)[1].strip().lower()
    raise ValueError(img)


def boot_images(*names):
    """{set: manifest (+ "dir")} of boot-images.sh's pool sets, built in the builder VM once
    (per OpenZFS row: the script reads LAB_ROW from the environment)."""
    images = {}
    for line in sh("bash", os.path.join(HERE, "boot-images.sh"), *names).splitlines():
        name, d = line.split()
        with open(os.path.join(d, "manifest.json")) as f:
            images[name] = json.load(f)
        images[name]["dir"] = d
    return images


# --- ramdisks --------------------------------------------------------------------------

def cpio_gz(root, names):
    """A gzip'd newc cpio of `names` (bytes, one a line) under root."""
    cp = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names, check=True, capture_output=True)
    return subprocess.run(["gzip", "-1"], input=cp.stdout, check=True, capture_output=True).stdout


def write_files(root, files):
    """{path: bytes, or (bytes, mode)} under root."""
    for path, data in files.items():
        data, mode = data if isinstance(data, tuple) else (data, 0o644)
        p = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)


def extra_cpio(work, files):
    """{path: bytes} as a gzip'd cpio to append to a ramdisk: later entries replace earlier ones."""
    root = tempfile.mkdtemp(dir=work)
    write_files(root, files)
    names = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    return cpio_gz(root, names)


def concat(out, *parts):
    """A ramdisk of several archives back to back (the kernel unpacks each); parts are paths or bytes."""
    with open(out, "wb") as o:
        for p in parts:
            if isinstance(p, bytes):
                o.write(p)
            else:
                with open(p, "rb") as f:
                    o.write(f.read())
    return out


# --- QEMU ------------------------------------------------------------------------------

_live = set()  # QEMU processes of this run that are still up
_stopping = False


def _kill_live():
    for p in list(_live):
        p.kill()


atexit.register(_kill_live)


def exit_on_signal():
    """SIGTERM/SIGHUP/SIGINT end the run with every guest killed and the `finally`s run (loop
    devices detached): a killed run must leave nothing that slows or confuses the next one."""
    def stop(sig, _frame):
        global _stopping
        _stopping = True
        _kill_live()
        raise SystemExit(128 + sig)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, stop)


# The host's cores as lock files that every lab process shares (tests/lab/slots.sh is the
# shell's side): a guest holds one per vCPU for its life, a compile as many as it runs jobs.
# `make check` runs two suites side by side; with the slots they never put more busy vCPUs
# on the host than it has cores (a guest's timeouts assume its share), and a guest that
# runs alone because it asserts timings has the host to itself.
SLOTS = os.path.join(CACHE, ".slots")


def slot_count():
    """LAB_SLOTS, else the cores this process may run on: what slots.sh's nproc counts, so
    that both sides agree on the number of lock files."""
    return max(1, int(os.environ.get("LAB_SLOTS") or len(os.sched_getaffinity(0))))


def take_slots(k):
    """k slots (at most all of them), waiting as long as it takes; returns their open files,
    which hold them until closed (or the process ends). Whoever holds the turnstile takes
    slots as they come free, so a guest that wants all of them is not starved by single ones."""
    n = slot_count()
    k = max(1, min(k, n))
    os.makedirs(SLOTS, exist_ok=True)
    turn = open(os.path.join(SLOTS, "turnstile"), "w")
    held = {}
    try:
        # Polled, not blocking: a run that is stopping must not sit in flock.
        while not _try_lock(turn):
            _wait_slot()
        while len(held) < k:
            for i in range(n):
                if i not in held and len(held) < k:
                    f = open(os.path.join(SLOTS, f"slot{i}"), "w")
                    if _try_lock(f):
                        held[i] = f
                    else:
                        f.close()
            if len(held) < k:
                _wait_slot()
    except BaseException:
        for f in held.values():
            f.close()
        raise
    finally:
        turn.close()
    return list(held.values())


def _try_lock(f):
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait_slot():
    if _stopping:
        raise RuntimeError("the lab run is stopping")
    time.sleep(0.1)


class Vm:
    """One QEMU guest on the serial console; `expect` reads until a pattern (or the end). It
    holds a slot per vCPU (take_slots) from its start until it is killed."""

    def __init__(self, args, work, slots=None):
        """slots: how many to hold; the guest's vCPUs unless given (0 for a guest that idles
        beside the scenario's own, which would otherwise wait on it for ever)."""
        if _stopping:  # worker threads must not start guests once the run is stopping
            raise RuntimeError("the lab run is stopping")
        self.out = b""
        if slots is None:
            slots = int(args[args.index("-smp") + 1]) if "-smp" in args else 1
        self.slots = take_slots(slots) if slots else []
        try:
            self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work)
        except BaseException:
            self.release()
            raise
        _live.add(self.p)

    def release(self):
        for f in self.slots:
            f.close()
        self.slots = []

    def pump(self, until):
        while time.monotonic() < until:
            r, _, _ = select.select([self.p.stdout], [], [], max(0.0, min(0.2, until - time.monotonic())))
            if r:
                b = os.read(self.p.stdout.fileno(), 65536)
                if not b:
                    return False
                self.out += b
                return True
            if self.p.poll() is not None:
                return False
        return True

    def wait(self, seconds):
        """Reads the console for `seconds`."""
        until = time.monotonic() + seconds
        while time.monotonic() < until and self.pump(until):
            pass

    def expect(self, pattern, timeout, since=0):
        """Reads until `pattern` shows up in the output after byte `since` (or the end)."""
        until = time.monotonic() + timeout
        rx = re.compile(pattern.encode())
        while not rx.search(self.out, since):
            if not self.pump(until) and not rx.search(self.out, since):
                return False
            if time.monotonic() >= until:
                return bool(rx.search(self.out, since))
        return True

    def send(self, text):
        self.p.stdin.write(text.encode())
        self.p.stdin.flush()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        _live.discard(self.p)
        self.release()

    def finish(self, timeout):
        """Reads to the end (at most `timeout` s), then the guest is gone; returns the console."""
        self.wait(timeout)
        self.kill()
        return self.out.decode(errors="replace")


def base_args(generator):
    """The base command line for a generator's image: initramfs-tools' panic() reboots when
    panic= is set, instead of opening its shell, so its images boot without it."""
    return BASE_ARGS.replace(" panic=-1", "") if generator.startswith("initramfs-tools") else BASE_ARGS


# The guest CPU: the x86-64 baseline. TCG spends less on it than on `max` (whose AVX paths it
# emulates slowly): 15 % off a generator image's boot, 8 % off zroam's own ramdisk (measured
# side by side). Nothing in the lab needs a newer CPU (Debian targets the baseline).
CPU = "qemu64"


class GUEST:
    """Guests' vCPUs: 2 when a guest runs alone, 1 when two run side by side (two 2-vCPU
    guests on a 2-core host take longer each than the pair of 1-vCPU guests: 42 s against
    35 s to a generator image's BE init, while one 2-vCPU guest alone takes 30 s)."""
    smp = 2


def qemu_args(disks, initrd=None, append="", base=BASE_ARGS, firmware=None, monitor=None, usb_bus=False, locking=True, ssh_port=None,
              console2=None, tpm=None, mem=1024):
    """disks: [(image, bus)] or [(image, bus, bootindex)]; the bootindex form (None: no index)
    attaches virtio disks as -device so that the firmware can order them. firmware: a
    private copy of OVMF's variables to boot through UEFI; without it the guest kernel boots
    directly with `initrd` and the command line `base append`."""
    a = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", CPU, "-smp", str(GUEST.smp), "-m", str(mem),
         "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"]
    if firmware:
        a += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
              "-drive", f"if=pflash,format=raw,unit=1,file={firmware}"]
    else:
        a += ["-kernel", kernel(), "-initrd", initrd, "-append", f"{base} {append}"]
    if tpm:
        # A TPM 2.0 (CRB interface) served by swtpm on this socket.
        a += ["-chardev", f"socket,id=chrtpm,path={tpm}", "-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
              "-device", "tpm-crb,tpmdev=tpm0"]
    if console2:
        # A second serial port (ttyS1) on a socket here, for a shell beside the boot.
        a += ["-chardev", f"socket,id=c2,path={console2},server=on,wait=off", "-serial", "chardev:c2"]
    if ssh_port:
        # User networking (DHCP at 10.0.2.15), the guest's port 22 on a loopback port here.
        a += ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22", "-device", "virtio-net-pci,netdev=n0"]
    cache = "cache=unsafe" if locking else "cache=none,file.locking=off"
    buses = {d[1] for d in disks}
    if "sata" in buses:
        a += ["-device", "ahci,id=ahci"]
    if "usb" in buses or "usb-stuck" in buses or usb_bus:
        a += ["-device", "qemu-xhci,id=xhci"]
    if "scsi" in buses:
        a += ["-device", "virtio-scsi-pci,id=vscsi"]
    nsata = nlun = 0
    for i, (img, bus, *index) in enumerate(disks):
        drive = f"if=none,id=d{i},file={img},format=raw,{cache}"
        boot = f",bootindex={index[0]}" if index and index[0] is not None else ""
        if bus == "virtio" and not index:
            a += ["-drive", f"file={img},format=raw,if=virtio,{cache}"]
        elif bus == "virtio":
            a += ["-drive", drive, "-device", f"virtio-blk-pci,drive=d{i}{boot}"]
        elif bus == "sata":
            a += ["-drive", drive, "-device", f"ide-hd,drive=d{i},bus=ahci.{nsata}"]
            nsata += 1
        elif bus == "nvme":
            a += ["-drive", drive, "-device", f"nvme,drive=d{i},serial=n{i}"]
        elif bus == "scsi":
            # LUNs of one virtio-scsi target, as a disk shelf presents them.
            a += ["-drive", drive, "-device", f"scsi-hd,drive=d{i},bus=vscsi.0,channel=0,scsi-id=0,lun={nlun}"]
            nlun += 1
        elif bus == "usb":
            a += ["-drive", drive, "-device", f"usb-storage,drive=d{i}{boot},bus=xhci.0"]
        elif bus == "virtio-slow":
            # A disk that writes 2 MB a second (a slow stick's pace) and reads at full speed.
            a += ["-drive", f"{drive},throttling.bps-write=2097152", "-device", f"virtio-blk-pci,drive=d{i}{boot}"]
        elif bus == "usb-stuck":
            # A stick that hardly answers: 4 KiB a second, so a 256 KiB label read takes
            # a minute (the kernel's own partition scan of a blank disk still finishes).
            a += ["-drive", f"{drive},throttling.bps-total=4096", "-device", f"usb-storage,drive=d{i},bus=xhci.0"]
        else:
            raise ValueError(bus)
    if monitor:
        a += ["-monitor", f"unix:{monitor},server,nowait"]
    return a


def monitor_cmd(path, cmd):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(5)
    time.sleep(0.2)
    s.recv(65536)
    s.sendall(cmd.encode() + b"\n")
    time.sleep(0.3)
    out = s.recv(65536).decode(errors="replace")
    s.close()
    return out


# --- what a boot leaves ----------------------------------------------------------------

def between(text, begin, end):
    i = text.rfind(begin)
    j = text.find(end, i + 1) if i >= 0 else -1
    return text[i + len(begin):j] if i >= 0 and j > i else None


class Result:
    def __init__(self, serial, wall, prompt=PROMPTS, outcome="booted"):
        self.serial = serial
        # zroam as /init switches root itself ("booted"); in a generator's hook it stops
        # after mounting ("mounted") and the generator switches.
        self.expected_outcome = outcome
        self.wall = wall
        self.answered = []
        m = re.search(r"ZROAM-BE-INIT be=(\S+) uptime=(\S+) root=(\S+) child=(\S+)", serial)
        self.be = m and dict(be=m.group(1), uptime=float(m.group(2)), root=m.group(3), child=m.group(4))
        raw = between(serial, "ZROAM-REPORT-BEGIN", "ZROAM-REPORT-END")
        try:
            self.report = json.loads(raw.replace("\r", "")) if raw and raw.strip() else None
        except json.JSONDecodeError:
            self.report = None
        self.shell = re.search(f"{prompt}|{SULOGIN}", serial) is not None

    def chosen_pool(self):
        r = self.report or {}
        guid = (r.get("pool") or {}).get("guid")
        for p in ((r.get("probe") or {}).get("pools") or []):
            if p["guid"] == guid:
                return p
        return None


# --- the lab ---------------------------------------------------------------------------

class Lab:
    """A ramdisk, the pool images and a private work dir (disk copies, serial logs)."""

    def __init__(self, binary, initrd=None, prompt=PROMPTS, outcome="booted", base=BASE_ARGS, sets=BOOT_SETS):
        self.binary = binary
        self.base = base
        self.outcome = outcome
        self.prompt = prompt
        self.initrd = initrd or sh("bash", os.path.join(HERE, "boot-initrd.sh"), binary).strip()
        self.images = boot_images(*sets)
        self.work = tempfile.mkdtemp(prefix="zroam-boot-", dir=os.environ.get("TMPDIR", "/tmp"))
        self.boots = []
        self.pins = {}
        # Who must have loaded zfs.ko in a boot that reached the BE (the report's zfs_load):
        # zroam boot as /init; in a generator's image the lab that made it says (`zroam
        # preload`, and whether with its drivers first), or None to leave it unchecked.
        self.zfs_by = "boot" if initrd is None else None
        self.preload_drivers = False

    def disk(self, image, n, tag):
        """A private copy of disk n of an image set (boots write to their disks)."""
        src = self.images[image]["disks"][n]["image"]
        dst = os.path.join(self.work, f"{tag}-{image}-{n}.img")
        subprocess.run(["cp", "--sparse=always", src, dst], check=True)
        return dst

    def blank(self, tag, size=64 << 20):
        """An empty (sparse) disk."""
        p = os.path.join(self.work, f"{tag}-blank.img")
        with open(p, "wb") as f:
            f.truncate(size)
        return p

    def guid(self, image):
        return self.images[image]["pool_guid"]

    def zfs_partition(self, img):
        """(offset, size) of the ZFS partition of a disk image (BF01)."""
        return next((off, size) for off, size, code in partitions(img).values() if code == "BF01")

    def pin(self, image):
        """The root pin of an image set's pool, as `zroam pin` makes it from the members'
        labels (each ZFS partition attached read-only as a loop device of its own)."""
        if image in self.pins:
            return self.pins[image]
        loops = []
        try:
            for d in self.images[image]["disks"]:
                off, size = self.zfs_partition(d["image"])
                loops.append(sh("losetup", "-f", "--show", "-r", "-o", str(off), "--sizelimit", str(size), d["image"]).strip())
            args = [self.binary, "pin", "--pool", str(self.guid(image))]
            for lo in loops:
                args += ["--dev", lo]
            self.pins[image] = sh(*args).encode()
        finally:
            for lo in loops:
                subprocess.run(["losetup", "-d", lo], check=False)
        return self.pins[image]

    def forge(self, img, **fields):
        """Rewrite fields of the ZFS labels on a disk image and seal their checksums again
        (agent/examples/forge_label.rs): a stick that claims what it is not."""
        off, size = self.zfs_partition(img)
        forge = os.path.join(os.path.dirname(self.binary), "examples", "forge_label")
        sh(forge, img, str(off), str(size), *[f"{k}={v}" for k, v in fields.items()])
        return img

    def boot(self, tag, disks, append="root=zfs:AUTO", extra=None, hotplug=None, timeout=150, locking=True, on_shell=SHELL_CMD,
             answers=(), firmware=False, kill_on=None, kill_after=0.3, shell_time=30, keys=None, ssh_port=None,
             console2=None, tpm=None):
        """Boots the disks; returns a Result. extra: files added to the ramdisk; hotplug:
        (delay s, image) plugged over USB once zroam waits; answers: [(question regex, text)]
        typed in order; firmware: boot through OVMF (the ESP's loader) instead of -kernel;
        kill_on: pull the plug kill_after seconds after this pattern shows up; shell_time: how
        long the shell's commands may run; keys: (pattern, [QEMU key names]) typed on the
        guest's keyboard (its VT, not the serial line) a few seconds after the pattern shows up
        on the serial console, up to three times while the guest runs (keys typed before a
        prompt reads are lost); ssh_port: a NIC on user networking with the guest's port 22
        forwarded to this loopback port; console2: a socket path for a second serial port; tpm:
        a swtpm control socket (`swtpm_start`) for a TPM 2.0. An answer that is a function may return None: it
        answered by other means (over SSH), nothing is typed."""
        initrd = self.initrd
        if extra:
            initrd = concat(os.path.join(self.work, f"{tag}-initrd"), self.initrd, extra_cpio(self.work, extra))
        mon = os.path.join(self.work, f"{tag}.mon") if hotplug or keys else None
        vars_copy = None
        if firmware:
            vars_copy = os.path.join(self.work, f"{tag}-vars.fd")
            shutil.copy(OVMF_VARS, vars_copy)
        args = qemu_args(disks, initrd, append, base=self.base, firmware=vars_copy, monitor=mon, usb_bus=bool(hotplug),
                         locking=locking, ssh_port=ssh_port, console2=console2, tpm=tpm)
        for attempt in (1, 2):
            r = self.run_vm(tag, args, mon, hotplug, timeout, on_shell, answers, kill_on, kill_after, shell_time, keys)
            # QEMU's TCG sometimes trips an internal assertion before the guest runs: that
            # is the emulator failing, not the boot; once more.
            if attempt == 1 and QEMU_CRASH.search(r.serial) and "zroam" not in r.serial.lower():
                log(f"{tag}: QEMU crashed ({QEMU_CRASH.search(r.serial).group(0)}); booting again")
                continue
            # A guest that ran out its time without zroam ever speaking stalled in the
            # firmware, the emulator or the kernel's start, which says nothing of zroam;
            # once more (a second stall fails the scenario, its console in the log).
            if attempt == 1 and not kill_on and r.wall >= timeout and "zroam" not in r.serial.lower():
                tail = " | ".join(r.serial.strip().splitlines()[-3:])
                log(f"{tag}: no word from zroam in {r.wall:.0f} s (console ends: {tail!r}); booting again")
                continue
            return r

    def run_vm(self, tag, args, mon, hotplug, timeout, on_shell, answers=(), kill_on=None, kill_after=0.3, shell_time=30,
               keys=None):
        t0 = time.monotonic()
        vm = Vm(args, self.work)
        answered = []
        try:
            if hotplug:
                delay, img = hotplug
                vm.expect("zroam: waiting", 60)
                vm.wait(t0 + delay - time.monotonic())
                monitor_cmd(mon, f"drive_add 0 if=none,id=hp0,file={img},format=raw,cache=unsafe")
                monitor_cmd(mon, "device_add usb-storage,drive=hp0,id=hpdev,bus=xhci.0")
                log(f"{tag}: hot-plugged {os.path.basename(img)} over USB at {time.monotonic() - t0:.1f} s")
            if keys:
                pattern, names = keys
                if vm.expect(pattern, timeout):
                    for _ in range(3):
                        vm.wait(4)
                        if vm.p.poll() is not None:
                            break
                        try:
                            for k in names:
                                monitor_cmd(mon, f"sendkey {k}")
                        except OSError:
                            break
            if kill_on:
                vm.expect(kill_on, timeout)
                time.sleep(kill_after)
                vm.p.kill()
            else:
                self.converse(vm, timeout, on_shell, answers, answered)
            serial = vm.finish(shell_time)
        finally:
            vm.kill()
        with open(os.path.join(self.work, f"{tag}.serial.log"), "w") as f:
            f.write(serial)
        r = Result(serial, time.monotonic() - t0, self.prompt, self.outcome)
        r.zfs_by, r.preload_drivers = self.zfs_by, self.preload_drivers
        r.answered = answered
        r.tag = tag
        # Every boot, by the thread that made it: a failed scenario shows the consoles of
        # its boots that did not reach the BE (run_scenario).
        self.boots.append((threading.get_ident(), r))
        return r

    def converse(self, vm, timeout, on_shell, answers, answered):
        """Answers the console's questions, then waits for the BE's init or a shell (which gets on_shell)."""
        # Questions on the console (a passphrase prompt) get their answers, in order, each
        # typed once its question shows up.
        mark = 0
        end = f"ZROAM-BE-INIT|{self.prompt}|{SULOGIN}"
        for question, answer in answers:
            if not vm.expect(f"{question}|{end}", timeout, since=mark):
                break
            q = re.search(question.encode(), vm.out[mark:])
            e = re.search(end.encode(), vm.out[mark:])
            if not q or (e and e.start() < q.start()):
                break
            mark += q.end()
            # Type as a person would, a moment after the question: systemd's console agent
            # prints its prompt before it turns echo off, so an instant answer is echoed.
            # (zroam's own prompt turns echo off first.)
            vm.wait(1)
            # An answer may depend on what the console showed (a menu's numbering).
            text = answer(vm.out.decode(errors="replace")) if callable(answer) else answer
            if text is not None:
                vm.send(text + "\n")
            answered.append(question)
        # Either the BE's init runs (and powers off) or the emergency shell opens.
        if vm.expect(end, timeout, since=mark) and b"ZROAM-BE-INIT" not in vm.out:
            if re.search(SULOGIN.encode(), vm.out):
                # systemd's emergency.service without a root password: Enter gives the shell.
                # An Enter typed before sulogin reads is lost: give it a moment, and retry.
                for _ in range(3):
                    vm.wait(1)
                    mark = len(vm.out)
                    vm.send("\n")
                    if vm.expect(r"# ", 10, since=mark):
                        break
            vm.send(on_shell)


# --- TPM and host tools in a guest's ramdisk ---------------------------------------------

def host_files(paths):
    """{path: (bytes, mode)} of host executables and libraries and every library ldd says
    they need, at the paths the dynamic loader looks them up: tools and plugins a scenario
    adds to a ramdisk. Paths that do not exist are left out."""
    out = {}
    for p in paths:
        if not os.path.exists(p):
            continue
        for f in [p] + re.findall(r"(/\S+) \(0x", sh("ldd", os.path.realpath(p))):
            if f not in out:
                with open(os.path.realpath(f), "rb") as fh:
                    out[f] = (fh.read(), 0o755)
    return out


def swtpm_start(work, tag, state):
    """A software TPM 2.0 whose state lives in `state` (kept across boots): (process, socket)."""
    os.makedirs(state, exist_ok=True)
    sock = os.path.join(work, f"{tag}.swtpm")
    p = subprocess.Popen(["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={state}", "--ctrl", f"type=unixio,path={sock}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _live.add(p)
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    return p, sock


# --- remote unlock over SSH --------------------------------------------------------------

def tang_start(work, tag):
    """A Tang server on a loopback port (tangd behind socat, as systemd's socket would run
    it), which the guest reaches at 10.0.2.2: (process, port, advertisement file)."""
    db = os.path.join(work, f"{tag}-tang")
    os.makedirs(db, exist_ok=True)
    sh("/usr/libexec/tangd-keygen", db)
    port = free_port()
    p = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"EXEC:/usr/libexec/tangd {db}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _live.add(p)
    adv = os.path.join(work, f"{tag}-adv.jws")
    for _ in range(100):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/adv", timeout=5) as u, open(adv, "wb") as f:
                f.write(u.read())
            break
        except OSError:
            time.sleep(0.1)
    return p, port, adv


def free_port():
    """A loopback TCP port free now (QEMU forwards the guest's SSH port to it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_key(work):
    """A test key pair for this run: (private key path, public key line)."""
    key = os.path.join(work, "lab_ssh_key")
    if not os.path.exists(key):
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "zroam-lab", "-f", key)
    with open(key + ".pub") as f:
        return key, f.read()


def on_console2(path, command, passphrase, prompt=rb"[#$] $", timeout=90):
    """Types `command` at the shell on the guest's second serial port, its passphrase at the
    question it asks, and reads until the shell prompts again. Returns the transcript."""
    until = time.monotonic() + timeout
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)
    out, typed, sent = b"", False, False
    c.sendall(b"\r")
    while time.monotonic() < until:
        r, _, _ = select.select([c], [], [], 1)
        if not r:
            continue
        chunk = c.recv(4096)
        if not chunk:
            break
        out += chunk
        if not sent and re.search(prompt, out):
            c.sendall(command.encode() + b"\r")
            sent, out = True, out + b"\n[lab typed the command]\n"
        elif sent and not typed and re.search(rb"passphrase for [^\r\n]*(?:: ?|echo\)[^\r\n]*)$", out):
            time.sleep(0.5)
            c.sendall(passphrase.encode() + b"\r")
            typed = True
        elif typed and re.search(prompt, out.rsplit(b"[lab typed the command]", 1)[-1].split(passphrase.encode())[-1]):
            break
    c.close()
    return out.decode(errors="replace")


def ssh_unlock(port, key, passphrase, timeout=150, command="zroam unlock"):
    """Logs in with the OpenSSH client on a terminal of its own (as a person would), runs
    `command` (None: logs in to the shell, reads the login message and types `zroam
    unlock` at the prompt), types the passphrase at its question and reads on until the
    session ends. Retries while the guest's SSH server is not up yet. Returns the
    session's transcript."""
    import pty
    deadline = time.monotonic() + timeout
    transcript = b""
    while time.monotonic() < deadline:
        pid, fd = pty.fork()
        if pid == 0:
            os.execvp("ssh", ["ssh", "-tt", "-i", key, "-p", str(port), "-o", "StrictHostKeyChecking=no",
                              "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "BatchMode=yes",
                              "root@127.0.0.1"] + ([command] if command else []))
        out, typed, started = b"", False, command is not None
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 1)
            if not r:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            # (busybox's shell asks the terminal for its size right after its prompt)
            if not started and re.search(rb"# (?:\x1b\[6n)?$", out):
                os.write(fd, b"zroam unlock\r")
                started = True
            elif not typed and re.search(rb"passphrase for [^\r\n]*: $", out):
                time.sleep(0.5)
                os.write(fd, passphrase.encode() + b"\r")
                typed = True
            elif typed and command is None and re.search(rb"zroam unlock: [a-z][^\r\n]*\r?\n[^\r\n]*# (?:\x1b\[6n)?$", out):
                os.write(fd, b"exit\r")
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        transcript += out
        if typed:
            break
        time.sleep(2)
    return transcript.decode(errors="replace")


def generator_initrd(binary, kind, stock, pin=None, dropbear=None, plymouth=None, keyd=None):
    """The ramdisk a real generator made (gen-images.sh KIND STOCK [PIN], or for KIND
    mkinitcpio the real mkinitcpio v41: tests/mkinitcpio/real.sh STOCK [PIN]), cached;
    dropbear: a public key, for an initramfs-tools image with dropbear-initramfs; plymouth: a
    theme (text, details), for a dracut image with Plymouth; keyd: a directory of key hooks."""
    env = dict(os.environ, LAB_DROPBEAR=dropbear or "", LAB_PLYMOUTH=plymouth or "", LAB_KEYD=keyd or "")
    script = os.path.join(HERE, "..", "mkinitcpio", "real.sh") if kind == "mkinitcpio" else os.path.join(HERE, "gen-images.sh")
    args = [stock] if kind == "mkinitcpio" else [kind, stock]
    return sh("bash", script, binary, *args, *([pin] if pin else []), env=env).strip()


def generator_lab(binary, generator, initrd):
    """A Lab booting a generator's ramdisk (generator: a gen-images.sh KIND, or a case named
    after it); zroam in a generator's hook stops after mounting."""
    return Lab(binary, initrd=initrd, outcome="mounted", base=base_args(generator))


# --- assertions ------------------------------------------------------------------------

def check(cond, what, errors):
    if not cond:
        errors.append(what)


def booted(r, be, errors, root="rw", child=None):
    check(r.be is not None, "the BE's init never ran", errors)
    if r.be:
        check(r.be["be"] == be, f"booted BE {r.be['be']}, expected {be}", errors)
        check(r.be["root"] == root, f"root mounted {r.be['root']}, expected {root}", errors)
        if child is not None:
            check(r.be["child"] == child, f"child dataset mounted: {r.be['child']}, expected {child}", errors)
    got = (r.report or {}).get("outcome")
    check(got == r.expected_outcome, f"report outcome {got}, expected {r.expected_outcome}", errors)
    want = getattr(r, "zfs_by", None)
    if want and r.report:
        z = r.report.get("zfs_load") or {}
        check(z.get("by") == want and z.get("started_s") is not None and z.get("live_s") is not None
              and z["started_s"] <= z["live_s"], f"zfs.ko's load in the report: {z}, expected by {want}, started and live", errors)
        if want == "preload":
            # The first hook came before zroam boot, and --drivers loaded the drivers first.
            check(z.get("hook_s") is not None and z["hook_s"] < r.report.get("uptime_at_start", 0),
                  f"zroam preload did not run before zroam boot: {z}", errors)
            has = bool(z.get("drivers_s"))
            check(has == getattr(r, "preload_drivers", False), f"preload's drivers: {z.get('drivers_s')}, "
                  f"expected {'a span' if getattr(r, 'preload_drivers', False) else 'none'}", errors)


def refused(r, stage, errors, words=()):
    check(r.be is None, "a BE booted although zroam should have refused", errors)
    check(r.shell, "no emergency shell", errors)
    rep = r.report or {}
    f = rep.get("failure") or {}
    check(f.get("stage") == stage, f"failure stage {f.get('stage')}, expected {stage}", errors)
    text = json.dumps(f)
    for w in words:
        check(w.lower() in text.lower(), f"failure does not mention {w!r}: {f.get('message')} / {f.get('hint')}", errors)
    check(not rep.get("mounts"), "something was mounted", errors)


# --- suites ----------------------------------------------------------------------------

def run_scenario(name, fn, lab, prefix=""):
    """Runs one scenario: a row (case, scenario, result, BE init uptime, wall s, note)."""
    e = []
    t = time.monotonic()
    first_boot = len(lab.boots)
    try:
        r = fn(lab, e)
    except Exception as x:  # a broken scenario is a failure, not a crash of the suite
        r, e = None, e + [f"{type(x).__name__}: {x}"]
    tti = f"{r.be['uptime']:.2f}" if r and r.be else "-"
    note = getattr(r, "note", "") if r else ""
    if e:
        log(f"{prefix}{name}: FAIL: " + "; ".join(e) + f" (logs in {lab.work})")
        # Repeated under the table with the consoles' last lines: a CI log is often read
        # from its end only, and the serial logs stay on a machine that is gone. The boots
        # of this scenario that did not reach the BE's init, else its last boot.
        mine = [b for tid, b in lab.boots[first_boot:] if tid == threading.get_ident()]
        shown = [b for b in mine if b.be is None] or mine[-1:]
        tails = "".join(f"\n  {b.tag}: console's last lines:\n" + "\n".join(b.serial.splitlines()[-FAIL_TAIL:]) for b in shown)
        FAILURES.append(f"{prefix}{name}: " + "; ".join(e) + tails)
    else:
        log(f"{prefix}{name}: ok")
    return (prefix.strip(), name, "ok" if not e else "FAIL", tti, f"{time.monotonic() - t:.0f}", note)


FAIL_TAIL = 25
FAILURES = []


def print_failures():
    for f in FAILURES:
        print(f"FAILED {f}")
    FAILURES.clear()


def print_table(suite, rows, t0):
    """The results table and the summary line; returns the number of failures."""
    wide = any(r[0] for r in rows)
    print((f"{'image':<26} " if wide else "") + f"{'scenario':<22} {'result':<6} {'init at (s)':>11} {'wall (s)':>8}  note")
    for r in rows:
        print((f"{r[0]:<26} " if wide else "") + f"{r[1]:<22} {r[2]:<6} {r[3]:>11} {r[4]:>8}  {r[5]}")
    failed = sum(r[2] != "ok" for r in rows)
    print_failures()
    print(f"{suite}: {len(rows) - failed} passed, {failed} failed in {time.monotonic() - t0:.0f} s")
    return failed


def lab_jobs():
    """Guests at a time: LAB_JOBS, else 2 (the host's two cores)."""
    return max(1, int(os.environ.get("LAB_JOBS", "2")))


def run_parallel(items, fn, jobs, alone=()):
    """fn over items, `jobs` at a time with 1-vCPU guests; then the items in `alone` (those
    that assert timings) one by one, each guest alone with 2 vCPUs. Results in items' order."""
    together = [i for i in items if i not in alone]
    GUEST.smp = 1 if jobs > 1 else 2
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
            done = dict(zip(together, pool.map(fn, together)))
    finally:
        GUEST.smp = 2
    done.update((i, fn(i)) for i in items if i in alone)
    return [done[i] for i in items]


def run_suite(suite, lab, scenarios, names, t0, alone=()):
    """Runs the named scenarios (all when none are named), lab_jobs() at a time but those in
    `alone` (they assert timings) by themselves, and prints the table; the work dir goes
    when all passed and stays, with its serial logs, when not."""
    unknown = [n for n in names if n not in scenarios]
    if unknown:
        print(f"{suite}: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(scenarios)}", file=sys.stderr)
        return 2
    rows = run_parallel(names or list(scenarios), lambda n: run_scenario(n, scenarios[n], lab), lab_jobs(), alone)
    failed = print_table(suite, rows, t0)
    if not failed:
        shutil.rmtree(lab.work, ignore_errors=True)
    return 1 if failed else 0


def suite_main(doc, suite, make_lab, scenarios, alone=()):
    """A suite's main: ZROAM_BINARY [SCENARIO...] (lab_args), the lab make_lab(binary)
    builds, the named scenarios run (run_suite); the exit status."""
    parsed = lab_args(doc)
    if parsed is None:
        return 2
    binary, names = parsed
    t0 = time.monotonic()
    return run_suite(suite, make_lab(binary), scenarios, names, t0, alone=alone)


def lab_args(doc):
    """ZROAM_BINARY [NAME...] from the command line, or None after printing the usage. Also
    makes a signal end the run cleanly (exit_on_signal)."""
    exit_on_signal()
    args = sys.argv[1:]
    if not args:
        print(doc, file=sys.stderr)
        return None
    return os.path.abspath(args[0]), args[1:]
