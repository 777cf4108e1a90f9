#!/usr/bin/env python3
"""Lab test: `zroam probe --json` against real pools on loop devices.

The pool images are made by real zpool/zfs in the builder VM (tests/fixtures/capture.sh,
cached in $ZROAM_LAB_CACHE). Each scenario's ZFS partitions are attached as loop devices at
the partition's offset (partition scanning of loop devices does not work here), then zroam
enumerates /sys/class/block like at boot. The oracle is OpenZFS's own `zdb -l` on the same
loop devices: every pool name and GUID it reports must be in zroam's report, with the pool
state the scenario was built to have.

Usage: probe_loop.py ZROAM_BINARY
"""
import json
import os
import re
import subprocess
import sys
import time

CACHE = os.environ.get("ZROAM_LAB_CACHE", "/var/cache/zroam-lab")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# What each scenario was built to be: (health, state, boot candidate, disks attached).
# None for disks = all of them; mirror-missing attaches only its first disk.
EXPECT = {
    "single": ("complete", "active", True, None),
    "mirror2": ("complete", "active", True, None),
    "mirror3": ("complete", "active", True, None),
    "raidz1": ("complete", "active", True, None),
    "raidz2": ("complete", "active", True, None),
    "logcachespare": ("complete", "active", True, None),
    "ashift9": ("complete", "active", True, None),
    "ashift12": ("complete", "active", True, None),
    "exported": ("complete", "exported", True, None),
    "active": ("complete", "active", True, None),
    "destroyed": ("complete", "destroyed", False, None),
    "mirror-missing": ("degraded", "active", True, 1),
}


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def zfs_partitions(img):
    """(offset, size) in bytes of each ZFS partition of a disk image, read by sgdisk."""
    out = run("sgdisk", "-p", img).stdout
    sector = int(re.search(r"Sector size \(logical\): (\d+)", out).group(1))
    parts = []
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\S+\s+(BF0[0-9])\b", line)
        if m:
            first, last = int(m.group(2)), int(m.group(3))
            parts.append((first * sector, (last - first + 1) * sector))
    return parts


def zdb_pools(dev):
    """(name, pool_guid) from zdb -l, or None when zdb finds no label."""
    out = run("zdb", "-l", dev, check=False).stdout
    name = re.search(r"^\s+name: '([^']*)'", out, re.M)
    guid = re.search(r"^\s+pool_guid: (\d+)", out, re.M)
    if not name or not guid:
        return None
    return name.group(1), int(guid.group(1))


def scenario_images(scen):
    manifest = os.path.join(CACHE, "images", scen, "manifest.json")
    with open(manifest) as f:
        m = json.load(f)
    disks = m["disks"] if isinstance(m, dict) else m
    return [d["image"] if isinstance(d, dict) else d for d in disks]


def check_scenario(binary, scen, results):
    health, state, candidate, ndisks = EXPECT[scen]
    imgs = scenario_images(scen)
    if ndisks:
        imgs = imgs[:ndisks]
    loops = []
    try:
        for img in imgs:
            for off, size in zfs_partitions(img):
                loops.append(run("losetup", "-f", "--show", "-r", "-o", str(off),
                                 "--sizelimit", str(size), img).stdout.strip())
        t = time.monotonic()
        rep = json.loads(run(binary, "probe", "--json").stdout)
        ms = (time.monotonic() - t) * 1000
        devs = {d["node"]: d for d in rep["devices"]}
        fails = []
        for loop in loops:
            z = zdb_pools(loop)
            d = devs.get(loop)
            if d is None:
                fails.append(f"{loop} not in zroam's device list")
                continue
            label = (d.get("zfs") or {}).get("label") or {}
            if z is None:
                # Spares and cache devices carry no pool name; zroam must not invent one.
                if label.get("pool_guid") is not None:
                    fails.append(f"{loop}: zdb found no pool, zroam says {label.get('pool_guid')}")
                continue
            got = (label.get("pool_name"), label.get("pool_guid"))
            if got != z:
                fails.append(f"{loop}: zdb {z}, zroam {got}")
            pools = [p for p in rep["pools"] if p["guid"] == z[1]]
            if len(pools) != 1:
                fails.append(f"pool {z} not reported once by zroam")
                continue
            p = pools[0]
            if (p["name"], p["health"], p["state"], p["boot_candidate"]) != (z[0], health, state, candidate):
                fails.append(f"{scen}: pool {p['name']} health={p['health']} state={p['state']} "
                             f"candidate={p['boot_candidate']}, expected {health}/{state}/{candidate}")
        if scen == "mirror-missing":
            p = rep["pools"][0] if rep["pools"] else {}
            if len(p.get("missing", [])) != 1:
                fails.append(f"mirror-missing: expected one missing member, got {p.get('missing')}")
        status = "ok" if not fails else "FAIL"
        print(f"{status}: {scen}: {len(loops)} loop devices, zroam probe {ms:.0f} ms")
        for f in sorted(set(fails)):
            print(f"    {f}")
        results.append(not fails)
    finally:
        for loop in loops:
            run("losetup", "-d", loop, check=False)


def check_name_collision(binary, results):
    """Three pools all named rpool, attached at once: each must stay its own pool."""
    loops = []
    try:
        for scen in ("single", "active", "mirror-missing"):
            img = scenario_images(scen)[0]
            for off, size in zfs_partitions(img):
                loops.append(run("losetup", "-f", "--show", "-r", "-o", str(off),
                                 "--sizelimit", str(size), img).stdout.strip())
        rep = json.loads(run(binary, "probe", "--json").stdout)
        want = sorted(zdb_pools(l) for l in loops)
        got = sorted((p["name"], p["guid"]) for p in rep["pools"] if p["name"] == "rpool")
        ok = want == got and len(set(g for _, g in got)) == 3
        print(f"{'ok' if ok else 'FAIL'}: name collision: zdb {want}, zroam {got}")
        results.append(ok)
    finally:
        for loop in loops:
            run("losetup", "-d", loop, check=False)


def main():
    binary = os.path.abspath(sys.argv[1])
    # Make sure the pool images exist (built once by real zpool in the builder VM, cached).
    subprocess.run(["bash", os.path.join(ROOT, "tests/fixtures/capture.sh"), "--images-only"], check=True)
    results = []
    for scen in EXPECT:
        check_scenario(binary, scen, results)
    check_name_collision(binary, results)
    passed = sum(results)
    print(f"lab-probe: {passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
