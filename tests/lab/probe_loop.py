#!/usr/bin/env python3
"""Lab test: `zroam probe --json` against real pools on loop devices.

The pool images are made by real zpool/zfs in the builder VM (tests/fixtures/capture.sh,
cached in $ZROAM_LAB_CACHE). Each scenario's ZFS partitions are attached as loop devices at
the partition's offset (partition scanning of loop devices does not work here), and zroam
probes exactly those (`--dev`): the host's other block devices and pools, and loop devices
left over from an earlier run, are never part of the verdict. The oracle is OpenZFS's own
`zdb -l` on the same loop devices: every pool name and GUID it reports must be in zroam's
report, with the pool state the scenario was built to have.

Usage: probe_loop.py ZROAM_BINARY
"""
import json
import os
import re
import subprocess
import sys
import time

from vmlab import CACHE, HERE, exit_on_signal, partitions, sh

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


def zfs_partitions(img):
    """(offset, size) in bytes of each ZFS partition (type BF0x) of a disk image."""
    return [(off, size) for _, (off, size, code) in sorted(partitions(img).items()) if code.startswith("BF0")]


def zdb_pools(dev):
    """(name, pool_guid) from zdb -l, or None when zdb finds no label."""
    out = subprocess.run(["zdb", "-l", dev], capture_output=True, text=True).stdout
    name = re.search(r"^\s+name: '([^']*)'", out, re.M)
    guid = re.search(r"^\s+pool_guid: (\d+)", out, re.M)
    if not name or not guid:
        return None
    return name.group(1), int(guid.group(1))


class Loops:
    """Read-only loop devices over image partitions; on exit, these (and only these) are
    detached, whatever happened in between."""

    def __init__(self):
        self.devs = []

    def attach_zfs(self, img):
        for off, size in zfs_partitions(img):
            self.devs.append(sh("losetup", "-f", "--show", "-r", "-o", str(off), "--sizelimit", str(size), img).strip())

    def probe(self, binary):
        """zroam's report on these loop devices alone."""
        return json.loads(sh(binary, "probe", "--json", *(a for d in self.devs for a in ("--dev", d))))

    def __enter__(self):
        return self

    def __exit__(self, *_):
        for d in self.devs:
            subprocess.run(["losetup", "-d", d], capture_output=True)


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
    with Loops() as loops:
        for img in imgs:
            loops.attach_zfs(img)
        t = time.monotonic()
        rep = loops.probe(binary)
        ms = (time.monotonic() - t) * 1000
        devs = {d["node"]: d for d in rep["devices"]}
        fails = []
        guids = set()
        for loop in loops.devs:
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
            guids.add(z[1])
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
            p = next((p for p in rep["pools"] if p["guid"] in guids), {})
            if len(p.get("missing", [])) != 1:
                fails.append(f"mirror-missing: expected one missing member, got {p.get('missing')}")
        status = "ok" if not fails else "FAIL"
        print(f"{status}: {scen}: {len(loops.devs)} loop devices, zroam probe {ms:.0f} ms")
        for f in sorted(set(fails)):
            print(f"    {f}")
        results.append(not fails)


def check_name_collision(binary, results):
    """Three pools all named rpool, attached at once: each must stay its own pool."""
    with Loops() as loops:
        for scen in ("single", "active", "mirror-missing"):
            loops.attach_zfs(scenario_images(scen)[0])
        rep = loops.probe(binary)
        want = sorted(zdb_pools(d) for d in loops.devs)
        got = sorted((p["name"], p["guid"]) for p in rep["pools"] if p["name"] == "rpool")
        ok = want == got and len(set(g for _, g in got)) == 3
        print(f"{'ok' if ok else 'FAIL'}: name collision: zdb {want}, zroam {got}")
        results.append(ok)


def main():
    exit_on_signal()
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
