#!/usr/bin/env python3
"""The probe benchmark (`make bench-probe`, part of `make bench`, not of `make check`):
`zroam probe --json` against `blkid -p` on the same devices, on the host, cold.

The devices are read-only loop devices at the ZFS partitions of the lab's cached pool images
(images/*/ and boot-images*/*/ under $ZROAM_LAB_CACHE, made by the builder VM), one per
distinct image file; partitions that hold no ZFS label (the LUKS sets) are skipped. Fewer
distinct ZFS partitions than --devices is an error: duplicating one would measure the page
cache, not the probe. Each round drops the page cache before each tool and runs both, the
order alternating (zroam first, then blkid first), so a trend in the machine's load falls on
both alike. CPU is the child's user+sys (wait4's rusage), wall the monotonic time from spawn
to reap, the kernel's share the child's system time, the bytes read the child's block input
(rusage's inblock) and, from them, each tool's CPU per MiB read; the figures are medians,
the ratios those of the medians (zroam / blkid). Both tools must have seen a ZFS label on
every device (zroam's JSON: a chosen label copy; blkid: TYPE="zfs_member"), or the
comparison means nothing and the run fails.

usage: probe_bench.py ZROAM_BINARY [--runs N] [--devices N] [--json FILE]
"""
import glob
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

from vmlab import CACHE, exit_on_signal, partitions, sh

TARGETS = {"cpu_ratio": 0.8, "wall_ratio": 0.7}
BLKID = "blkid"


def candidates():
    """(image, offset, size) of every ZFS-typed partition (BF0x) of the cached images, in a
    stable order: the probe's pool images first, then the boot sets. A set without its
    manifest.json is still being built (or its build failed): its images are not used."""
    imgs = sorted(glob.glob(os.path.join(CACHE, "images", "*", "*.img")))
    imgs += sorted(glob.glob(os.path.join(CACHE, "boot-images*", "*", "*.img")))
    for img in imgs:
        if not os.path.exists(os.path.join(os.path.dirname(img), "manifest.json")):
            continue
        for _, (off, size, code) in sorted(partitions(img).items()):
            if code.startswith("BF0"):
                yield img, off, size


def holds_zfs(img, off, size):
    """Whether blkid finds a ZFS label in the partition (a LUKS set's partition is typed
    BF01 too). Reads the image file only."""
    r = subprocess.run([BLKID, "-p", "-O", str(off), "-S", str(size), "-o", "value", "-s", "TYPE", img],
                       capture_output=True, text=True)
    return r.stdout.strip() == "zfs_member"


def drop_caches():
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def timed(argv):
    """(cpu ms, kernel cpu ms, wall ms, KiB read from the devices, exit status, stdout) of one
    run of argv."""
    with tempfile.TemporaryFile() as out:
        t = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
        wall = (time.monotonic() - t) * 1000
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
        out.seek(0)
        # ru_inblock: 512-byte blocks the child fetched from storage (direct and buffered).
        return ((ru.ru_utime + ru.ru_stime) * 1000, ru.ru_stime * 1000, wall, ru.ru_inblock / 2, p.returncode,
                out.read().decode(errors="replace"))


def zroam_saw(out, devs):
    """Devices zroam's JSON shows without a chosen ZFS label copy."""
    try:
        rep = json.loads(out)
    except ValueError:
        return list(devs)
    seen = {d["node"] for d in rep.get("devices", []) if (d.get("zfs") or {}).get("chosen_label") is not None}
    return [d for d in devs if d not in seen]


def blkid_saw(out, devs):
    """Devices blkid printed no TYPE="zfs_member" for."""
    seen = set()
    for line in out.splitlines():
        m = re.match(r"(\S+): .*\bTYPE=\"zfs_member\"", line)
        if m:
            seen.add(m.group(1))
    return [d for d in devs if d not in seen]


def stats(xs):
    return {"median": round(statistics.median(xs), 2), "min": round(min(xs), 2), "max": round(max(xs), 2)}


def parse_args(argv):
    o = {"runs": 15, "devices": 32, "json": os.path.join(os.getcwd(), "target", "bench", "probe.json")}
    it = iter(argv[1:])
    for a in it:
        if a in ("--runs", "--devices"):
            o[a[2:]] = int(next(it))
        elif a == "--json":
            o["json"] = os.path.abspath(next(it))
        elif "binary" not in o and not a.startswith("-"):
            o["binary"] = os.path.abspath(a)
        else:
            sys.exit(__doc__.strip().splitlines()[-1])
    if "binary" not in o or o["runs"] < 1 or o["devices"] < 1:
        sys.exit(__doc__.strip().splitlines()[-1])
    return o


def run(o, loops):
    devs = list(loops)
    tools = {
        "zroam": [o["binary"], "probe", "--json", *(a for d in devs for a in ("--dev", d))],
        "blkid": [BLKID, "-p", *devs],
    }
    check = {"zroam": zroam_saw, "blkid": blkid_saw}
    samples = {t: {"cpu_ms": [], "sys_ms": [], "wall_ms": [], "read_kib": []} for t in tools}
    for r in range(o["runs"]):
        order = ["zroam", "blkid"] if r % 2 == 0 else ["blkid", "zroam"]
        for t in order:
            drop_caches()
            cpu, sys_ms, wall, kib, rc, out = timed(tools[t])
            missed = check[t](out, devs)
            if missed:
                raise SystemExit(f"probe-bench: {t} (exit {rc}) saw no ZFS label on {len(missed)} device(s): "
                                 f"{' '.join(missed[:4])}{' …' if len(missed) > 4 else ''}")
            samples[t]["cpu_ms"].append(cpu)
            samples[t]["wall_ms"].append(wall)
            samples[t]["read_kib"].append(kib)
            samples[t]["sys_ms"].append(sys_ms)
        print(f"  round {r + 1}/{o['runs']}: " + ", ".join(
            f"{t} {samples[t]['cpu_ms'][-1]:.1f}/{samples[t]['wall_ms'][-1]:.1f} ms" for t in tools), flush=True)
    return samples


def main():
    exit_on_signal()
    o = parse_args(sys.argv)
    found = [c for c in candidates() if holds_zfs(*c)]
    if len(found) < o["devices"]:
        sys.exit(f"probe-bench: only {len(found)} distinct ZFS partitions in {CACHE}'s images, "
                 f"{o['devices']} wanted (not duplicating any); make lab-probe and lab-boot build them")
    found = found[:o["devices"]]
    loops = {}
    t0 = time.monotonic()
    try:
        for img, off, size in found:
            dev = sh("losetup", "-f", "--show", "-r", "-o", str(off), "--sizelimit", str(size), img).strip()
            loops[dev] = os.path.relpath(img, CACHE)
        samples = run(o, loops)
    finally:
        for d in loops:
            subprocess.run(["losetup", "-d", d], capture_output=True)

    res = {t: {k: stats(v) for k, v in s.items()} for t, s in samples.items()}
    ratios = {f"{k.split('_')[0]}_ratio": round(res["zroam"][k]["median"] / res["blkid"][k]["median"], 3)
              for k in ("cpu_ms", "wall_ms")}
    met = {k: ratios[k] <= TARGETS[k] for k in TARGETS}
    print(f"\n{len(loops)} devices, {o['runs']} rounds, page cache dropped before each run (medians, min-max)")
    print(f"{'tool':<8}{'CPU ms':>10}{'(min-max)':>18}{'wall ms':>10}{'(min-max)':>18}")
    for t, r in res.items():
        c, w = r["cpu_ms"], r["wall_ms"]
        print(f"{t:<8}{c['median']:>10.1f}{c['min']:>9.1f}-{c['max']:<8.1f}{w['median']:>10.1f}{w['min']:>9.1f}-{w['max']:<8.1f}")
    for k in TARGETS:
        print(f"{k}: {ratios[k]:.3f} (target ≤ {TARGETS[k]}: {'met' if met[k] else 'MISSED'})")
    # What bounds the CPU ratio: the bytes each tool fetches, and its CPU per MiB of them.
    per_mib = {t: r["cpu_ms"]["median"] / max(r["read_kib"]["median"] / 1024, 1e-9) for t, r in res.items()}
    ratios["read_ratio"] = round(res["zroam"]["read_kib"]["median"] / max(res["blkid"]["read_kib"]["median"], 1e-9), 3)
    ratios["cpu_per_mib_ratio"] = round(per_mib["zroam"] / per_mib["blkid"], 3)
    for t, r in res.items():
        print(f"{t}: {r['read_kib']['median'] / len(loops):.0f} KiB read per device, {per_mib[t]:.2f} ms CPU per MiB read, "
              f"{r['sys_ms']['median']:.1f} ms of its CPU in the kernel")
    print(f"read_ratio: {ratios['read_ratio']:.3f}, cpu_per_mib_ratio: {ratios['cpu_per_mib_ratio']:.3f}")
    os.makedirs(os.path.dirname(o["json"]), exist_ok=True)
    with open(o["json"], "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                   "load": os.getloadavg(), "binary": o["binary"], "runs": o["runs"],
                   "devices": sorted(loops.values()), "samples": samples, "results": res, "ratios": ratios,
                   "targets": TARGETS, "met": met}, f, indent=1)
    print(f"JSON: {o['json']} ({time.monotonic() - t0:.0f} s)")
    sys.exit(0 if all(met.values()) else 1)


if __name__ == "__main__":
    main()
