#!/usr/bin/env python3
"""The boot benchmark (`make bench`, not part of `make check`): the stock OpenZFS paths and
zroam's, booted one guest at a time in the same run, with the same guest kernel, disk images
and QEMU settings. The measure is time to the real init: the uptime the BE's own init prints.

Paths:    stock-itools   mkinitramfs + OpenZFS's zfs-initramfs (the baseline, ratio 1.00)
          stock-dracut   dracut (systemd) + OpenZFS's zfs-dracut
          zroam-init     zroam as /init of its own ramdisk
          zroam-dracut   dracut (systemd) + zroam beside zfs-dracut
          zroam-itools   mkinitramfs + zroam beside zfs-initramfs
          stock-mkinitcpio  mkinitcpio v41 + archzfs's `zfs` hook (tests/mkinitcpio/real.sh only)
          zroam-mkinitcpio  mkinitcpio v41 + zroam in place of archzfs's hook (real.sh without)
Scenarios: in-place (the mirror on two virtio disks), usb-moved (one mirror disk on USB,
          the other gone), scale-1 / scale-8 / scale-32 (that many virtio-scsi LUNs; scale-1
          holds a one-disk pool, the others a mirror on the first and last LUN and blank
          disks between).

Targets: each generator's zroam path against the same generator's stock path <= 0.80, zroam
/init against stock initramfs-tools <= 0.50 (in place and moved to USB), and the settle
rule's added time (the report's settle[].added_ms: from when the pool stood ready but for
discovery to the import) <= 0.3 s per path; and the CPU, memory and size targets below.

Each zroam path's in-place boot with the median time to init is drawn by `zroam status
--svg` from its report into SVG_DIR (default docs/bench/), one file per path, with an index
(SVG_DIR/README.md) that puts them side by side with where the time went.

usage: bench.py ZROAM_BINARY [--runs N] [--paths P,...] [--scenarios S,...] [--json FILE] [--svg-dir DIR]
BENCH_RUNS sets the default number of boots per path and scenario (5).
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from vmlab import SPL_HOSTID, Lab, exit_on_signal, generator_initrd, generator_lab, kver, log

PATHS = {
    # name: (how the ramdisk is made, zroam inside?)
    "stock-itools": (("initramfs-tools", "only"), False),
    "stock-dracut": (("dracut-systemd", "only"), False),
    "zroam-init": (None, True),
    "zroam-dracut": (("dracut-systemd", "with"), True),
    "zroam-itools": (("initramfs-tools", "with"), True),
    "stock-mkinitcpio": (("mkinitcpio", "only"), False),
    # The hooks as zroam's README has them: HOOKS=(… udev block zroam), zroam in place of
    # archzfs's `zfs` (beside it, that hook's run_hook waits up to 15 s for a pool that is
    # not ONLINE before zroam runs; lab-gen boots that image too, and zroam's install hook
    # warns about it).
    "zroam-mkinitcpio": (("mkinitcpio", "without"), True),
}
BASELINE = "stock-itools"
SCENARIOS = ["in-place", "usb-moved", "scale-1", "scale-8", "scale-32"]
# The same root= for every path: all of them read OpenZFS's spelling. archzfs's hook alone
# also needs `rw` (else it imports the pool read-only, as Arch's own command lines know) and
# the hostid: its image lacks /etc/hostid, so without spl.spl_hostid= (Arch users' way
# round it) the lab's pools are "previously in use from another system" and it panics.
APPEND = "root=ZFS=rpool/ROOT/debian"
APPENDS = {"stock-mkinitcpio": f"{APPEND} rw {SPL_HOSTID}"}
TARGETS = {"ratio": 0.8, "init_ratio": 0.5, "settle_s": 0.3, "cpu_ms": 50.0, "probe_ratio": 2.0, "binary_mib": 2.0,
           "rss_mib": 8.0}
# Each zroam path and the stock path of the same generator.
PAIRS = {"zroam-dracut": "stock-dracut", "zroam-itools": "stock-itools", "zroam-mkinitcpio": "stock-mkinitcpio"}


def disks(lab, scenario, tag):
    if scenario == "in-place":
        return [(lab.disk("mirror", 0, tag), "virtio"), (lab.disk("mirror", 1, tag), "virtio")]
    if scenario == "usb-moved":
        return [(lab.disk("mirror", 1, tag), "usb")]
    n = int(scenario.split("-")[1])
    if n == 1:
        return [(lab.disk("single", 0, tag), "scsi")]
    mid = [(lab.blank(f"{tag}-{i}", 256 << 20), "scsi") for i in range(n - 2)]
    return [(lab.disk("mirror", 0, tag), "scsi")] + mid + [(lab.disk("mirror", 1, tag), "scsi")]


def lab_for(binary, path):
    how, _ = PATHS[path]
    if how is None:
        return Lab(binary)
    return generator_lab(binary, how[0], generator_initrd(binary, *how))


def one_boot(lab, path, scenario, run, reports):
    """One boot's record; its report (zroam's paths) is kept in `reports`, a directory."""
    tag = f"{path}-{scenario}-{run}"
    r = lab.boot(tag, disks(lab, scenario, tag), append=APPENDS.get(path, APPEND), timeout=180)
    for f in os.listdir(lab.work):
        if f.startswith(tag) and f.endswith(".img"):
            os.unlink(os.path.join(lab.work, f))
    ok = bool(r.be and r.be["be"] == "debian")
    rec = {"path": path, "scenario": scenario, "run": run, "ok": ok, "init_s": r.be["uptime"] if ok else None,
           "wall_s": round(r.wall, 2)}
    rep = r.report or {}
    if PATHS[path][1] and rep:
        rec["report"] = os.path.join(reports, f"{tag}.json")
        with open(rec["report"], "w") as f:
            json.dump(rep, f)
        rec["zroam"] = {
            "outcome": rep.get("outcome"),
            "uptime_at_start": rep.get("uptime_at_start"),
            "stages": {s["name"]: s["ms"] for s in rep.get("stages", [])},
            # Time spent probing: every pass of the wait (each device is read once; later
            # passes answer unchanged devices from the first).
            "probe_ms": round(sum(p["ms"] for p in rep.get("probe_passes") or []), 2),
            "probe_cpu_ms": round(sum(p["cpu_ms"] for p in rep.get("probe_passes") or []), 2),
            "devices": len((rep.get("probe") or {}).get("devices") or []),
            "resources": rep.get("resources"),
            # What the settle rule added: each wait's added_ms (none when the pool was
            # complete and named by GUID).
            "settle_ms": sum(w.get("added_ms", 0) for w in rep.get("settle") or []),
        }
        rec["zroam"].update(bound_parts(rep, rec["init_s"]))
        if rep.get("outcome") not in ("booted", "mounted"):
            rec["ok"] = False
    if not rec["ok"]:
        log(f"{tag}: did not boot the BE (serial log in {lab.work})")
    return rec


def bound_parts(rep, init_s):
    """What bounds this boot (seconds): `hook` when zroam first ran (`zroam preload` in a
    generator's early hook, else zroam itself), `zfs_ko` zfs.ko's init (modprobe to live),
    `zfs_live`, and `import_on` from the import's start to the BE's init (the import, the
    BE, mounts, ESP, the generator's switch). `floor` = hook + zfs_ko + import_on: the time
    to init had nothing but zfs.ko's init stood between zroam's first hook and the import."""
    z = rep.get("zfs_load") or {}
    start = rep.get("uptime_at_start")
    hook = z.get("hook_s") or start
    ko = z["live_s"] - z["started_s"] if z.get("live_s") is not None and z.get("started_s") is not None else None
    imp = next((st for st in rep.get("stages", []) if st["name"] == "import"), None)
    import_on = init_s - (start + imp["start_ms"] / 1000) if imp and start is not None and init_s else None
    out = {"hook_s": hook, "zfs_ko_s": ko, "zfs_live_s": z.get("live_s"), "import_on_s": import_on,
           "zfs_by": z.get("by")}
    out["floor_s"] = hook + ko + import_on if None not in (hook, ko, import_on) else None
    return out


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(recs, paths, scenarios):
    rows = []
    base = {s: med([r["init_s"] for r in recs if r["path"] == BASELINE and r["scenario"] == s]) for s in scenarios}
    for s in scenarios:
        for p in paths:
            rs = [r for r in recs if r["path"] == p and r["scenario"] == s]
            t = [r["init_s"] for r in rs if r["ok"]]
            m = med(t)
            row = {"scenario": s, "path": p, "boots": len(rs), "ok": len(t), "median_s": m,
                   "min_s": min(t) if t else None, "max_s": max(t) if t else None,
                   "ratio": round(m / base[s], 3) if m and base.get(s) else None}
            z = [r["zroam"] for r in rs if r.get("zroam")]
            if z:
                names = []
                for x in z:
                    names += [n for n in x["stages"] if n not in names]
                row["stages_ms"] = {n: med([x["stages"].get(n) for x in z]) for n in names}
                row["probe_ms"] = med([x["probe_ms"] for x in z])
                row["settle_ms"] = med([x.get("settle_ms") for x in z])
                row["zroam_start_s"] = med([x.get("uptime_at_start") for x in z])
                for k in ("hook_s", "zfs_ko_s", "zfs_live_s", "import_on_s", "floor_s"):
                    row[k] = med([x.get(k) for x in z])
                res = [x["resources"] for x in z if x.get("resources")]
                row["cpu_ms"] = med([x["self"]["user_ms"] + x["self"]["sys_ms"] for x in res])
                row["cpu_ms_max"] = max([x["self"]["user_ms"] + x["self"]["sys_ms"] for x in res], default=None)
                row["rss_kib_max"] = max([x["self"]["max_rss_kib"] for x in res], default=None)
            rows.append(row)
    return rows


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def breakdown(r):
    """kernel=… stage=… … after=… settle=…: one row's medians (medians of parts need not add
    up to the median of the whole)."""
    parts = []
    start = r.get("zroam_start_s")
    if start is not None:
        parts.append(f"before-zroam={start * 1000:.0f}")
    parts += [f"{n}={fmt(v, '.0f')}" for n, v in r["stages_ms"].items()]
    staged = sum(v for v in r["stages_ms"].values() if v)
    if start is not None and r.get("median_s"):
        parts.append(f"after-zroam={max(0.0, r['median_s'] * 1000 - start * 1000 - staged):.0f}")
    parts.append(f"settle-added={fmt(r.get('settle_ms'), '.0f')}")
    return " ".join(parts)


def bounds(r):
    """hook=… zfs.ko=… zfs-live=… import-on=… floor=…: one row's medians in seconds."""
    names = [("first-hook", "hook_s"), ("zfs.ko", "zfs_ko_s"), ("zfs-live", "zfs_live_s"), ("import-on", "import_on_s"),
             ("floor", "floor_s")]
    return " ".join(f"{n}={fmt(r.get(k))}" for n, k in names)


def timelines(binary, recs, rows, out_dir):
    """Each zroam path's in-place boot with the median time to init, drawn by `zroam status
    --svg`; an index puts them side by side. Returns the files written."""
    os.makedirs(out_dir, exist_ok=True)
    written, lines = [], []
    for r in rows:
        if r["scenario"] != "in-place" or not r.get("stages_ms") or r["median_s"] is None:
            continue
        boots = sorted((b for b in recs if b["path"] == r["path"] and b["scenario"] == "in-place" and b["ok"]
                        and b.get("report")), key=lambda b: b["init_s"])
        if not boots:
            continue
        b = boots[(len(boots) - 1) // 2]
        svg = os.path.join(out_dir, f"in-place-{r['path']}.svg")
        subprocess.run([binary, "status", "--report", b["report"], "--svg", svg], check=True)
        written.append(svg)
        lines.append(f"| {r['path']} | {b['init_s']:.2f} s (run {b['run'] + 1}) | {breakdown(r)} | {bounds(r)} | "
                     f"![{r['path']}]({os.path.basename(svg)}) |")
    if lines:
        idx = os.path.join(out_dir, "README.md")
        with open(idx, "w") as f:
            f.write(f"# zroam's boot, in place, per path ({time.strftime('%Y-%m-%d')}, `make bench`)\n\n"
                    "Each picture is `zroam status --svg` of the in-place boot with the median time to the BE's init "
                    "(two virtio disks, QEMU TCG, guest kernel " + kver() + "). The middle column gives each part's "
                    "median over all the path's boots, in ms: the kernel and the generator before zroam started, "
                    "zroam's stages, the rest until the BE's init, and what the settle rule added. The next gives, in seconds, "
                    "zroam's first hook (`zroam preload` in a generator's early hook, or zroam as `/init`), zfs.ko's init "
                    "(its modprobe to live), when zfs.ko was live, the import's start to the BE's init, and the floor: first "
                    "hook + zfs.ko + import-on, the time to init had nothing but zfs.ko's init stood between the first hook "
                    "and the import. In the pictures the green rows beside the stages are zfs.ko's load and the drivers "
                    "`zroam preload --drivers` loaded before it.\n\n"
                    "| path | time to init | where the time goes (median ms) | what bounds it (median s) | timeline |\n"
                    "|---|---|---|---|---|\n"
                    + "\n".join(lines) + "\n")
        written.append(idx)
    return written


def print_tables(rows, sizes):
    print(f"{'scenario':<10} {'path':<16} {'ok':>5} {'median s':>8} {'min':>6} {'max':>6} {'ratio':>6}  "
          f"{'cpu ms':>6} {'rss KiB':>7} {'probe ms':>8}")
    for r in rows:
        print(f"{r['scenario']:<10} {r['path']:<16} {r['ok']:>2}/{r['boots']:<2} {fmt(r['median_s']):>8} "
              f"{fmt(r['min_s']):>6} {fmt(r['max_s']):>6} {fmt(r['ratio']):>6}  {fmt(r.get('cpu_ms'), '.0f'):>6} "
              f"{fmt(r.get('rss_kib_max'), 'd'):>7} {fmt(r.get('probe_ms'), '.0f'):>8}")
    print("\nwhere the time goes (median ms): scenario path: kernel and generator until zroam, zroam's stages, "
          "after zroam until the BE's init; the settle rule's added time")
    for r in rows:
        if r.get("stages_ms"):
            print(f"  {r['scenario']:<10} {r['path']:<16} {breakdown(r)}")
    print("\nwhat bounds it (median s): zroam's first hook (preload, or zroam as /init), zfs.ko's init, when "
          "zfs.ko was live, from the import's start to the BE's init, and the floor: first hook + zfs.ko + import-on")
    for r in rows:
        if r.get("floor_s") is not None:
            print(f"  {r['scenario']:<10} {r['path']:<16} {bounds(r)}")
    print("\nsizes: " + ", ".join(f"{k} {v / 1048576:.2f} MiB" for k, v in sizes.items()))


def floors(rows):
    """Each ratio target's floor: (name, floor ratio, limit, zfs.ko s, within reach). The
    floor ratio is the zroam path's floor (`bound_parts`) over the same stock median that
    its target divides by: above the limit, the target cannot be met while zfs.ko's init
    and the generator's own start take what they took in this run."""
    out = []
    get = {(r["scenario"], r["path"]): r for r in rows}
    for s in ("in-place", "usb-moved"):
        pairs = [("zroam-init", BASELINE, TARGETS["init_ratio"])] + [(z, st, TARGETS["ratio"]) for z, st in PAIRS.items()]
        for z, stock, limit in pairs:
            a, b = get.get((s, z)), get.get((s, stock))
            if a and b and a.get("floor_s") and b["median_s"]:
                q = round(a["floor_s"] / b["median_s"], 3)
                out.append((f"{z}/{stock} floor, {s}", q, limit, a.get("zfs_ko_s"), q <= limit))
    return out


def targets(rows, sizes):
    """Each target: (name, measured, limit, met)."""
    out = []
    get = {(r["scenario"], r["path"]): r for r in rows}
    for s in ("in-place", "usb-moved"):
        r = get.get((s, "zroam-init"))
        if r:
            out.append((f"zroam-init/{BASELINE} time to init, {s}", r["ratio"], TARGETS["init_ratio"],
                        r["ratio"] is not None and r["ratio"] <= TARGETS["init_ratio"]))
        for z, stock in PAIRS.items():
            a, b = get.get((s, z)), get.get((s, stock))
            if a and b and a["median_s"] and b["median_s"]:
                q = round(a["median_s"] / b["median_s"], 3)
                out.append((f"{z}/{stock} time to init, {s}", q, TARGETS["ratio"], q <= TARGETS["ratio"]))
    for r in rows:
        if r.get("settle_ms") is not None and r["scenario"] in ("in-place", "usb-moved"):
            v = round(r["settle_ms"] / 1000, 3)
            out.append((f"settle rule's added time, {r['path']} {r['scenario']} (s)", v, TARGETS["settle_s"],
                        v <= TARGETS["settle_s"]))
    zi = [r for r in rows if r["path"] == "zroam-init" and r.get("cpu_ms") is not None]
    if zi:
        worst = max(r["cpu_ms"] for r in zi)
        out.append(("zroam's own CPU ms (worst scenario median)", worst, TARGETS["cpu_ms"], worst <= TARGETS["cpu_ms"]))
        rss = max(r["rss_kib_max"] for r in zi) / 1024
        out.append(("zroam's peak RSS MiB (any boot)", round(rss, 2), TARGETS["rss_mib"], rss <= TARGETS["rss_mib"]))
    p1, p32 = get.get(("scale-1", "zroam-init")), get.get(("scale-32", "zroam-init"))
    if p1 and p32 and p1.get("probe_ms") and p32.get("probe_ms"):
        q = p32["probe_ms"] / p1["probe_ms"]
        out.append(("probe 32 LUNs / probe 1 LUN", round(q, 2), TARGETS["probe_ratio"], q <= TARGETS["probe_ratio"]))
    b = sizes.get("binary", 0) / 1048576
    out.append(("static binary MiB", round(b, 2), TARGETS["binary_mib"], b <= TARGETS["binary_mib"]))
    return out


def parse(argv):
    o = {"runs": int(os.environ.get("BENCH_RUNS", "5")), "paths": list(PATHS), "scenarios": SCENARIOS,
         "json": os.path.join(os.getcwd(), "target", "bench", "bench.json"),
         "svg_dir": os.path.join(os.getcwd(), "docs", "bench")}
    if not argv:
        return None
    o["binary"] = os.path.abspath(argv[0])
    it = iter(argv[1:])
    for a in it:
        if a == "--runs":
            o["runs"] = int(next(it))
        elif a in ("--paths", "--scenarios"):
            o[a[2:]] = next(it).split(",")
        elif a == "--json":
            o["json"] = os.path.abspath(next(it))
        elif a == "--svg-dir":
            o["svg_dir"] = os.path.abspath(next(it))
        else:
            return None
    return o


def main():
    exit_on_signal()
    o = parse(sys.argv[1:])
    if o is None:
        print(__doc__, file=sys.stderr)
        return 2
    t0 = time.monotonic()
    labs = {p: lab_for(o["binary"], p) for p in o["paths"]}
    sizes = {"binary": os.path.getsize(o["binary"])}
    sizes.update({f"ramdisk {p}": os.path.getsize(lab.initrd) for p, lab in labs.items()})
    recs = []
    reports = os.path.join(os.path.dirname(o["json"]), "reports")
    shutil.rmtree(reports, ignore_errors=True)
    os.makedirs(reports)
    # Round-robin: each run boots every path once per scenario, so slow drift on the host
    # touches all paths alike.
    for run in range(o["runs"]):
        for s in o["scenarios"]:
            for p in o["paths"]:
                rec = one_boot(labs[p], p, s, run, reports)
                log(f"run {run + 1}/{o['runs']} {s} {p}: " + (f"init at {rec['init_s']} s" if rec["ok"] else "FAILED"))
                recs.append(rec)
    rows = summarize(recs, o["paths"], o["scenarios"])
    print(f"\nzroam boot benchmark, {time.strftime('%Y-%m-%d')}, {o['runs']} boots each, "
          f"{os.cpu_count()} host CPUs, QEMU TCG, guest kernel {kver()}")
    print_tables(rows, sizes)
    tg = targets(rows, sizes)
    print("\ntargets:")
    for name, got, limit, met in tg:
        print(f"  {'met ' if met else 'MISSED'} {name}: {got} (target <= {limit})")
    fl = floors(rows)
    print("\nfloors (first hook + zfs.ko's init + import-on, over the stock median):")
    for name, q, limit, ko, reach in fl:
        print(f"  {name}: {q} ({'within reach of' if reach else 'above'} {limit}; zfs.ko's init {fmt(ko)} s)")
    failed_boots = [f"{r['path']}/{r['scenario']}/{r['run']}" for r in recs if not r["ok"]]
    if failed_boots:
        print(f"boots that did not reach the BE: {', '.join(failed_boots)}")
    os.makedirs(os.path.dirname(o["json"]), exist_ok=True)
    with open(o["json"], "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                   "host_cpus": os.cpu_count(), "guest_kernel": kver(), "runs": o["runs"],
                   "append": {p: APPENDS.get(p, APPEND) for p in o["paths"]},
                   "sizes": sizes, "rows": rows, "targets": [dict(zip(("name", "measured", "limit", "met"), t)) for t in tg],
                   "floors": [dict(zip(("name", "ratio", "limit", "zfs_ko_s", "within_reach"), f)) for f in fl],
                   "boots": recs}, f, indent=1)
    print(f"JSON: {o['json']} ({time.monotonic() - t0:.0f} s)")
    for f in timelines(o["binary"], recs, rows, o["svg_dir"]):
        print(f"timeline: {f}")
    if not failed_boots:
        for lab in labs.values():
            shutil.rmtree(lab.work, ignore_errors=True)
    # A stock path that cannot boot a scenario is a finding, not a broken benchmark.
    zroam_failed = [f for f in failed_boots if f.startswith("zroam-")]
    return 0 if all(t[3] for t in tg) and not zroam_failed else 1


if __name__ == "__main__":
    sys.exit(main())
