#!/usr/bin/env python3
"""The boot lab: real pools (made by zpool in the builder VM) booted by the guest kernel with
zroam as the ramdisk's /init, under QEMU/TCG. Each scenario asserts on what the BE's own init
prints on the serial console and on /run/zroam/report.json (printed by the BE's init, or typed
into the emergency shell by this script).

usage: boot_lab.py ZROAM_BINARY [SCENARIO...] [--demo SCENARIO]
"""
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("ZROAM_LAB_CACHE", "/var/cache/zroam-lab")
KVER = subprocess.check_output([os.path.join(HERE, "guest-kernel.sh")], text=True).strip()
KERNEL = f"/boot/vmlinuz-{KVER}"
OURS, FOREIGN = "5eed1234", "0badcafe"
SHELL_CMD = ("echo ZROAM-REPORT-''BEGIN; cat /run/zroam/report.json; echo; echo ZROAM-REPORT-''END; "
             "poweroff -f || { echo 1 >/proc/sys/kernel/sysrq; echo o >/proc/sysrq-trigger; }\n")
SULOGIN = "Press Enter for maintenance"
QEMU_CRASH = re.compile(r"qemu-system-x86_64: .*Assertion .* failed")
# Emergency-shell prompts: zroam's own, dracut's (with and without systemd), initramfs-tools',
# the mkinitcpio harness's.
PROMPTS = r"zroam# |dracut:/# |:/# |sh-[0-9.]+# |\(initramfs\) |\[rootfs \S*\]# "


def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def part_geom(img, n):
    info = sh("sgdisk", "-i", str(n), img)
    first = int(re.search(r"First sector: (\d+)", info).group(1))
    last = int(re.search(r"Last sector: (\d+)", info).group(1))
    return first * 512, (last - first + 1) * 512


def extra_cpio(work, files):
    """A gzip'd cpio appended to the ramdisk: later entries replace earlier ones."""
    root = tempfile.mkdtemp(dir=work)
    for path, data in files.items():
        p = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    out = os.path.join(work, "extra.cpio.gz")
    names = subprocess.run(["find", "."], cwd=root, check=True, capture_output=True).stdout
    cp = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names, check=True, capture_output=True)
    subprocess.run(["gzip", "-1"], input=cp.stdout, check=True, stdout=open(out, "wb"))
    return out


class Vm:
    """One QEMU guest on the serial console; `expect` reads until a pattern (or the end)."""

    def __init__(self, args, work):
        self.t0 = time.monotonic()
        self.out = b""
        self.p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=work)

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

    def finish(self, timeout):
        until = time.monotonic() + timeout
        while time.monotonic() < until and self.pump(until):
            pass
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()
        return self.out.decode(errors="replace")


# panic=-1: a kernel panic (or init exiting) ends the VM at once instead of hanging.
BASE_ARGS = "console=ttyS0 panic=-1 loglevel=4"


def base_args(generator):
    """The base command line for a generator's image: initramfs-tools' panic() reboots when
    panic= is set, instead of opening its shell, so its images boot without it."""
    return BASE_ARGS.replace(" panic=-1", "") if generator.startswith("initramfs-tools") else BASE_ARGS


def qemu_args(initrd, disks, append, work, monitor=None, usb_bus=False, locking=True, base=BASE_ARGS):
    a = ["qemu-system-x86_64", "-accel", "tcg", "-machine", "q35", "-cpu", "max", "-smp", "2", "-m", "1024",
         "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", KERNEL, "-initrd", initrd,
         "-append", f"{base} {append}"]
    cache = "cache=unsafe" if locking else "cache=none,file.locking=off"
    buses = {b for _, b in disks}
    if "sata" in buses:
        a += ["-device", "ahci,id=ahci"]
    if "usb" in buses or usb_bus:
        a += ["-device", "qemu-xhci,id=xhci"]
    if "scsi" in buses:
        a += ["-device", "virtio-scsi-pci,id=vscsi"]
    nsata = nlun = 0
    for i, (img, bus) in enumerate(disks):
        if bus == "virtio":
            a += ["-drive", f"file={img},format=raw,if=virtio,{cache}"]
        elif bus == "sata":
            a += ["-drive", f"if=none,id=d{i},file={img},format=raw,{cache}",
                  "-device", f"ide-hd,drive=d{i},bus=ahci.{nsata}"]
            nsata += 1
        elif bus == "nvme":
            a += ["-drive", f"if=none,id=d{i},file={img},format=raw,{cache}", "-device", f"nvme,drive=d{i},serial=n{i}"]
        elif bus == "scsi":
            # LUNs of one virtio-scsi target, as a disk shelf presents them.
            a += ["-drive", f"if=none,id=d{i},file={img},format=raw,{cache}",
                  "-device", f"scsi-hd,drive=d{i},bus=vscsi.0,channel=0,scsi-id=0,lun={nlun}"]
            nlun += 1
        elif bus == "usb":
            a += ["-drive", f"if=none,id=d{i},file={img},format=raw,{cache}", "-device", f"usb-storage,drive=d{i},bus=xhci.0"]
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


class Lab:
    def __init__(self, binary, initrd=None, prompt=PROMPTS, outcome="booted", base=BASE_ARGS):
        self.binary = binary
        self.base = base
        self.outcome = outcome
        self.prompt = prompt
        self.initrd = initrd or sh("bash", os.path.join(HERE, "boot-initrd.sh"), binary).strip()
        out = sh("bash", os.path.join(HERE, "boot-images.sh"), "mirror", "single", "foreign", "mmp", "luks", "native", "keyfile")
        self.images = {}
        for line in out.splitlines():
            name, d = line.split()
            self.images[name] = json.load(open(os.path.join(d, "manifest.json")))
            self.images[name]["dir"] = d
        self.work = tempfile.mkdtemp(prefix="zroam-boot-", dir=os.environ.get("TMPDIR", "/tmp"))

    def disk(self, image, n, tag):
        """A private copy of disk n of an image set (boots write to their disks)."""
        src = self.images[image]["disks"][n]["image"]
        dst = os.path.join(self.work, f"{tag}-{image}-{n}.img")
        subprocess.run(["cp", "--sparse=always", src, dst], check=True)
        return dst

    def guid(self, image):
        return self.images[image]["pool_guid"]

    def boot(self, tag, disks, append="root=zfs:AUTO", extra=None, hotplug=None, timeout=150, locking=True, on_shell=SHELL_CMD,
             answers=()):
        initrd = self.initrd
        if extra:
            cat = os.path.join(self.work, f"{tag}-initrd")
            with open(cat, "wb") as o:
                for f in (self.initrd, extra_cpio(self.work, extra)):
                    o.write(open(f, "rb").read())
            initrd = cat
        mon = os.path.join(self.work, f"{tag}.mon") if hotplug else None
        args = qemu_args(initrd, disks, append, self.work, monitor=mon, usb_bus=bool(hotplug), locking=locking,
                         base=self.base)
        for attempt in (1, 2):
            r = self.run_vm(tag, args, mon, hotplug, timeout, on_shell, answers)
            # QEMU's TCG sometimes trips an internal assertion before the guest runs: that
            # is the emulator failing, not the boot; once more.
            if attempt == 1 and QEMU_CRASH.search(r.serial) and "zroam" not in r.serial.lower():
                log(f"{tag}: QEMU crashed ({QEMU_CRASH.search(r.serial).group(0)}); booting again")
                continue
            return r

    def run_vm(self, tag, args, mon, hotplug, timeout, on_shell, answers=()):
        t0 = time.monotonic()
        vm = Vm(args, self.work)
        vm.answered = []
        if hotplug:
            delay, img = hotplug
            vm.expect("zroam: waiting", 60)
            until = t0 + delay
            while time.monotonic() < until:
                vm.pump(until)
            monitor_cmd(mon, f"drive_add 0 if=none,id=hp0,file={img},format=raw,cache=unsafe")
            monitor_cmd(mon, "device_add usb-storage,drive=hp0,id=hpdev,bus=xhci.0")
            log(f"{tag}: hot-plugged {os.path.basename(img)} over USB at {time.monotonic() - t0:.1f} s")
        # Questions on the console (a passphrase prompt) get their answers, in order, each
        # typed once its question shows up.
        mark = 0
        for question, answer in answers:
            end = f"ZROAM-BE-INIT|{self.prompt}|{SULOGIN}"
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
            settle = time.monotonic() + 1
            while time.monotonic() < settle and vm.pump(settle):
                pass
            vm.send(answer + "\n")
            vm.answered.append(question)
        # Either the BE's init runs (and powers off) or the emergency shell opens.
        if vm.expect(f"ZROAM-BE-INIT|{self.prompt}|{SULOGIN}", timeout, since=mark) and b"ZROAM-BE-INIT" not in vm.out:
            if re.search(SULOGIN.encode(), vm.out):
                # systemd's emergency.service without a root password: Enter gives the shell.
                # An Enter typed before sulogin reads is lost: give it a moment, and retry.
                for _ in range(3):
                    settle = time.monotonic() + 1
                    while time.monotonic() < settle and vm.pump(settle):
                        pass
                    mark = len(vm.out)
                    vm.send("\n")
                    if vm.expect(r"# ", 10, since=mark):
                        break
            vm.send(on_shell)
        serial = vm.finish(30)
        with open(os.path.join(self.work, f"{tag}.serial.log"), "w") as f:
            f.write(serial)
        r = Result(serial, time.monotonic() - t0, self.prompt, self.outcome)
        r.answered = vm.answered
        return r


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


def s1_mirror(lab, e):
    r = lab.boot("s1", [(lab.disk("mirror", 0, "s1"), "virtio"), (lab.disk("mirror", 1, "s1"), "virtio")])
    booted(r, "debian", e, child="yes")
    p = r.chosen_pool()
    check(p and p["health"] == "complete", "pool not complete", e)
    return r


def s2_usb_degraded(lab, e):
    r = lab.boot("s2", [(lab.disk("mirror", 1, "s2"), "usb")])
    booted(r, "debian", e, child="yes")
    p = r.chosen_pool() or {}
    check(p.get("health") == "degraded", f"health {p.get('health')}, expected degraded", e)
    check([m.get("path") for m in p.get("missing", [])] == ["/dev/vda2"], f"missing {p.get('missing')}", e)
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check("/dev/sda2" in argv, f"import did not use the USB disk: {argv}", e)
    return r


def s3_swapped_buses(lab, e):
    cache = open(os.path.join(lab.images["mirror"]["dir"], "zpool.cache"), "rb").read()
    r = lab.boot("s3", [(lab.disk("mirror", 1, "s3"), "sata"), (lab.disk("mirror", 0, "s3"), "nvme")],
                 extra={"/etc/zfs/zpool.cache": cache})
    booted(r, "debian", e, child="yes")
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check("/dev/sda2" in argv and "/dev/nvme0n1p2" in argv, f"import devices {argv}", e)
    check("cachefile=none" in argv, "import may have used a cache file", e)
    return r


def s4_named_be(lab, e):
    r = lab.boot("s4", [(lab.disk("mirror", 0, "s4"), "virtio"), (lab.disk("mirror", 1, "s4"), "virtio")],
                 append="root=ZFS=rpool/ROOT/other")
    booted(r, "other", e, child="no")
    check(((r.report or {}).get("be") or {}).get("reason") == "named by root=", "BE reason", e)
    return r


def s5_foreign_stick(lab, e):
    r = lab.boot("s5a", [(lab.disk("foreign", 0, "s5a"), "usb")])
    booted(r, "foreign", e)
    h = (r.report or {}).get("hostid") or {}
    check(h.get("action") == "adopt" and h.get("label") == FOREIGN and h.get("system") == OURS, f"hostid {h}", e)
    r2 = lab.boot("s5b", [(lab.disk("foreign", 0, "s5b"), "usb")], append="root=zfs:AUTO zroam.hostid=strict")
    refused(r2, "hostid", e, words=[FOREIGN, OURS, "zroam.hostid=adopt"])
    check(not (r2.report or {}).get("import"), "strict mode still ran zpool import", e)
    return r


def s6_name_collision(lab, e):
    mine, theirs = lab.guid("single"), lab.guid("foreign")
    disks = lambda t: [(lab.disk("single", 0, t), "virtio"), (lab.disk("foreign", 0, t), "usb")]
    r = lab.boot("s6a", disks("s6a"))
    booted(r, "debian", e)
    check(str(((r.report or {}).get("pool") or {}).get("guid")) == mine, "hostid match did not win", e)
    r2 = lab.boot("s6b", disks("s6b"), append=f"root=zfs:AUTO zroam.pool={theirs}")
    booted(r2, "foreign", e)
    r3 = lab.boot("s6c", disks("s6c"), extra={"/etc/hostid": bytes.fromhex("11111111")})
    refused(r3, "choose-pool", e, words=[mine, theirs, "zroam.pool="])
    check(not (r3.report or {}).get("import"), "a pool was imported although the choice was refused", e)
    check(mine in r3.serial and theirs in r3.serial, "the console does not list both GUIDs", e)
    return r


def s7_hotplug(lab, e):
    blank = os.path.join(lab.work, "s7-blank.img")
    subprocess.run(["truncate", "-s", "64M", blank], check=True)
    r = lab.boot("s7", [(blank, "virtio")], hotplug=(10, lab.disk("single", 0, "s7")))
    booted(r, "debian", e, child="yes")
    rep = r.report or {}
    adds = [ev for ev in rep.get("events", []) if ev["action"] == "add" and ev["device"].startswith("sd")]
    start = (rep.get("import") or {}).get("start_ms")
    check(adds and start is not None, f"no USB disk event or no import in the report: {adds}", e)
    if adds and start is not None:
        seen = min(ev["t_ms"] for ev in adds)
        r.note = f"device at {seen} ms, import at {start} ms (+{start - seen} ms)"
        check(0 <= start - seen <= 1000, f"import began {start - seen} ms after the device appeared", e)
        check(seen >= 5000, f"the disk was seen at {seen} ms: not a late hot-plug", e)
    return r


def s8_damaged_labels(lab, e):
    a, b = lab.disk("mirror", 0, "s8"), lab.disk("mirror", 1, "s8")
    for img, which in ((a, "front"), (b, "back")):
        off, size = part_geom(img, 2)
        aligned = size - size % (256 * 1024)
        at = off if which == "front" else off + aligned - 512 * 1024
        with open(img, "r+b") as f:
            f.seek(at)
            f.write(bytes(512 * 1024))
    r = lab.boot("s8", [(a, "virtio"), (b, "virtio")])
    booted(r, "debian", e, child="yes")
    devs = {d["node"]: d for d in ((r.report or {}).get("probe") or {}).get("devices", [])}
    dmg = lambda n: (devs.get(n, {}).get("zfs") or {}).get("damaged_labels")
    check(dmg("/dev/vda2") == [0, 1] and dmg("/dev/vdb2") == [2, 3], f"damaged labels {dmg('/dev/vda2')} {dmg('/dev/vdb2')}", e)
    return r


def s9_no_pool(lab, e):
    blank = os.path.join(lab.work, "s9-blank.img")
    subprocess.run(["truncate", "-s", "64M", blank], check=True)
    r = lab.boot("s9", [(blank, "virtio")], append="root=zfs:AUTO zroam.wait=3")
    refused(r, "wait", e, words=["no ZFS", "zroam.wait"])
    st = {s["name"]: s for s in (r.report or {}).get("stages", [])}
    w = st.get("wait", {}).get("ms", -1)
    r.note = f"gave up after {w} ms"
    check(2900 <= w <= 4000, f"waited {w} ms, expected about 3000", e)
    return r


def s10_readonly(lab, e):
    r = lab.boot("s10", [(lab.disk("mirror", 0, "s10"), "virtio"), (lab.disk("mirror", 1, "s10"), "virtio")],
                 append="root=zfs:AUTO zroam.readonly=1")
    booted(r, "debian", e, root="ro", child="yes")
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check("readonly=on" in argv, f"import not read-only: {argv}", e)
    return r


def s11_multihost(lab, e):
    img = lab.disk("mmp", 0, "s11")
    job = os.path.join(lab.work, "holder.sh")
    with open(job, "w") as f:
        f.write(sh("bash", os.path.join(HERE, "boot-images.sh"), "--holder-job"))
    builder = sh("bash", os.path.join(HERE, "builder.sh"), "initrd").strip()
    root = tempfile.mkdtemp(dir=lab.work)
    shutil.copy(job, os.path.join(root, "job.sh"))
    holder_initrd = os.path.join(lab.work, "holder-initrd")
    names = b"job.sh\n"
    cp = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=names, check=True, capture_output=True)
    gz = subprocess.run(["gzip", "-1"], input=cp.stdout, check=True, capture_output=True).stdout
    with open(holder_initrd, "wb") as o:
        o.write(open(builder, "rb").read() + gz)
    out = os.path.join(lab.work, "holder-out.img")
    subprocess.run(["truncate", "-s", "16M", out], check=True)
    hargs = qemu_args(holder_initrd, [(img, "virtio"), (out, "virtio")], "quiet lab.out=vdb", lab.work, locking=False)
    holder = Vm(hargs, lab.work)
    try:
        if not holder.expect("LAB-HOLDER: imported", 180):
            e.append("the holder VM never imported the multihost pool")
            return None
        r = lab.boot("s11", [(img, "virtio")], locking=False, timeout=240)
    finally:
        holder.p.kill()
        holder.finish(5)
    refused(r, "import", e, words=["multihost"])
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check(argv and "-f" not in argv, f"import argv {argv}", e)
    check(((r.report or {}).get("hostid") or {}).get("action") == "multihost", "hostid was adopted for a multihost pool", e)
    return r


SCENARIOS = {
    "1-mirror": s1_mirror,
    "2-usb-degraded": s2_usb_degraded,
    "3-swapped-buses": s3_swapped_buses,
    "4-named-be": s4_named_be,
    "5-foreign-stick": s5_foreign_stick,
    "6-name-collision": s6_name_collision,
    "7-hotplug": s7_hotplug,
    "8-damaged-labels": s8_damaged_labels,
    "9-no-pool": s9_no_pool,
    "10-readonly": s10_readonly,
    "11-multihost": s11_multihost,
}


# Typed by the tests at zroam's passphrase prompts (the images' LAB_PASSPHRASE).
PASSPHRASE = "zroam-lab-passphrase"
# zroam's own console prompt ends in ": "; systemd's console agent adds "(press TAB for no echo)".
ASK = r"zroam: passphrase for [^\r\n]*(?:\): |container\(s\): |[a-z0-9]: |echo\) )"


def keys_of(r, kind):
    return [k for k in ((r.report or {}).get("keys") or []) if k.get("kind") == kind]


def not_echoed(r, e):
    check(PASSPHRASE not in r.serial.replace("ZROAM-REPORT", ""), "the passphrase shows on the console or in the report", e)


def s12_luks_mirror(lab, e):
    """A mirror whose members sit in two LUKS2 containers: one passphrase, typed once, opens both."""
    r = lab.boot("s12", [(lab.disk("luks", 0, "s12"), "virtio"), (lab.disk("luks", 1, "s12"), "virtio")],
                 answers=[(ASK, PASSPHRASE)])
    booted(r, "debian", e, child="yes")
    asked = len(re.findall(ASK, r.serial))
    check(asked == 1, f"asked for the passphrase {asked} times, expected once", e)
    luks = keys_of(r, "luks")
    check([k.get("outcome") for k in luks] == ["opened", "opened"], f"LUKS records: {luks}", e)
    check(len(luks) == 2 and "earlier" in (luks[1].get("source") or ""), f"second container not opened with the typed passphrase: {luks}", e)
    p = r.chosen_pool() or {}
    check(p.get("health") == "complete", f"health {p.get('health')}, expected complete (both mapper devices)", e)
    argv = ((r.report or {}).get("import") or {}).get("argv", [])
    check(sum("/dev/dm-" in a for a in argv) == 2, f"import did not use the two opened devices: {argv}", e)
    # The ESPs beside the containers belong to the pool's disks.
    esps = ((r.report or {}).get("esp") or {}).get("esps") or []
    check(len(esps) == 2, f"ESP stage saw {len(esps)} ESPs of the pool's disks, expected 2", e)
    not_echoed(r, e)
    return r


def s13_native_prompt(lab, e):
    """Native encryption: the BE's key (keylocation=prompt) is asked for before anything is mounted."""
    r = lab.boot("s13", [(lab.disk("native", 0, "s13"), "virtio")], answers=[(ASK, PASSPHRASE)])
    booted(r, "debian", e, child="yes")
    z = keys_of(r, "zfs")
    check([(k.get("what"), k.get("outcome")) for k in z] == [("rpool/ROOT/debian", "loaded")], f"ZFS key records: {z}", e)
    stages = [s["name"] for s in (r.report or {}).get("stages", [])]
    check("keys" in stages and stages.index("keys") < stages.index("mount"), f"stages {stages}", e)
    not_echoed(r, e)
    return r


def s14_keyfile_on_esp(lab, e):
    """keylocation=file:///boot/efi/zroam/rpool.key: read from the ESP, no question asked."""
    r = lab.boot("s14", [(lab.disk("keyfile", 0, "s14"), "virtio")])
    booted(r, "debian", e)
    check(not re.search(ASK, r.serial), "asked for a passphrase although the key is on the ESP", e)
    z = keys_of(r, "zfs")
    check(len(z) == 1 and z[0].get("outcome") == "loaded" and "on the ESP" in (z[0].get("source") or ""),
          f"ZFS key records: {z}", e)
    return r


def s15_wrong_passphrase(lab, e):
    """Three wrong passphrases: the emergency shell, the report says why, no pool imported."""
    wrong = [(ASK, "not-the-passphrase")] * 3
    r = lab.boot("s15", [(lab.disk("luks", 0, "s15"), "virtio"), (lab.disk("luks", 1, "s15"), "virtio")], answers=wrong)
    refused(r, "unlock", e, words=("3 wrong passphrase", "zroam.key="))
    check(len(r.answered) == 3, f"answered {len(r.answered)} prompts, expected 3", e)
    check(not (r.report or {}).get("import"), "a pool was imported although nothing was unlocked", e)
    return r


SCENARIOS.update({
    "12-luks-mirror": s12_luks_mirror,
    "13-native-prompt": s13_native_prompt,
    "14-keyfile-on-esp": s14_keyfile_on_esp,
    "15-wrong-passphrase": s15_wrong_passphrase,
})


def demo(lab, name):
    e = []
    r = SCENARIOS[name](lab, e)
    print("=== serial console (zroam's log and the BE's init) ===")
    for line in r.serial.splitlines():
        if line.startswith(("zroam", "ZROAM-BE-INIT", "[")) and "ZROAM-REPORT" not in line:
            print("  " + line.rstrip())
    rep = r.report or {}
    print("=== /run/zroam/report.json (excerpt) ===")
    brief = {k: rep.get(k) for k in ("outcome", "pool", "hostid", "be", "mounts", "stages", "warnings")}
    brief["import"] = {k: (rep.get("import") or {}).get(k) for k in ("argv", "code", "ms")}
    p = r.chosen_pool() or {}
    brief["pool_health"] = {"health": p.get("health"), "missing": p.get("missing"), "members": p.get("members")}
    print(json.dumps(brief, indent=1))
    print(f"=== result: {'PASS' if not e else 'FAIL: ' + '; '.join(e)} (BE init at {r.be and r.be['uptime']} s uptime)")
    return 0 if not e else 1


def run_scenario(name, fn, lab, prefix=""):
    """Runs one scenario: a row (case, scenario, result, BE init uptime, wall s, note)."""
    e = []
    t = time.monotonic()
    try:
        r = fn(lab, e)
    except Exception as x:  # a broken scenario is a failure, not a crash of the suite
        r, e = None, e + [f"{type(x).__name__}: {x}"]
    tti = f"{r.be['uptime']:.2f}" if r and r.be else "-"
    note = getattr(r, "note", "") if r else ""
    if e:
        log(f"{prefix}{name}: FAIL: " + "; ".join(e) + f" (logs in {lab.work})")
    else:
        log(f"{prefix}{name}: ok")
    return (prefix.strip(), name, "ok" if not e else "FAIL", tti, f"{time.monotonic() - t:.0f}", note)


def print_table(suite, rows, t0):
    """The results table and the summary line; returns the number of failures."""
    wide = any(r[0] for r in rows)
    print((f"{'image':<26} " if wide else "") + f"{'scenario':<22} {'result':<6} {'init at (s)':>11} {'wall (s)':>8}  note")
    for r in rows:
        print((f"{r[0]:<26} " if wide else "") + f"{r[1]:<22} {r[2]:<6} {r[3]:>11} {r[4]:>8}  {r[5]}")
    failed = sum(r[2] != "ok" for r in rows)
    print(f"{suite}: {len(rows) - failed} passed, {failed} failed in {time.monotonic() - t0:.0f} s")
    return failed


def lab_args(doc):
    """ZROAM_BINARY [NAME...] from the command line, or None after printing the usage."""
    args = sys.argv[1:]
    if not args:
        print(doc, file=sys.stderr)
        return None
    return os.path.abspath(args[0]), args[1:]


def main():
    parsed = lab_args(__doc__)
    if parsed is None:
        return 2
    binary, args = parsed
    t0 = time.monotonic()
    lab = Lab(binary)
    if args[:1] == ["--demo"]:
        return demo(lab, args[1])
    names = args or list(SCENARIOS)
    rows = [run_scenario(n, SCENARIOS[n], lab) for n in names]
    failed = print_table("lab-boot", rows, t0)
    if not failed:
        shutil.rmtree(lab.work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
