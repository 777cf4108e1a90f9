"""A boot-lab scenario for `zroam be`, not wired into boot_lab.py yet (and never run): three
boots of one mirror (BEs debian with child var, the bootfs, and other). In the first, the
`zroam.shell=1` shell types the commands; the next two boots show that the one-shot is
taken once and then the bootfs again, which only a real boot can prove.

To use it: import into boot_lab.py and add "23-be-commands": s23_be_commands to its table.
"""
import json

from vmlab import between, booted, check

Z = "zroam be"


def mark(name):
    # The shell echoes what it runs: a marker with a quote split in it only matches the output.
    return f"echo BE-{name}''-BEGIN"


def s23_be_commands(lab, e):
    """`zroam be list/next/activate/snapshot` in the ramdisk's shell (the root at /sysroot, so
    nothing is at /: BEs named in full), then the one-shot is booted once and the bootfs after."""
    a, b = lab.disk("mirror", 0, "s23"), lab.disk("mirror", 1, "s23")
    disks = [(a, "virtio"), (b, "virtio")]
    cmd = "; ".join([
        "ln -s /init /bin/zroam",
        mark("LIST0"), f"{Z} list rpool",
        mark("NEXT"), f"{Z} next rpool/ROOT/other; echo rc=$?",
        mark("ACTIVATE"), f"{Z} activate rpool/ROOT/debian; echo rc=$?",
        mark("JSON"), f"{Z} list --json rpool", mark("JSON-END"),
        # A child of a BE and a dataset outside POOL/ROOT are refused with the BEs listed.
        mark("NOTBE"), f"{Z} next rpool/ROOT/debian/var; echo rc=$?",
        mark("BADNAME"), f"{Z} snapshot rpool/ROOT/debian --name 'a@b'; echo rc=$?",
        mark("SNAP"), f"{Z} snapshot rpool/ROOT/debian --name lab1; echo rc=$?",
        "zfs list -H -o name -t snapshot -r rpool/ROOT",
        mark("END"), "poweroff -f",
    ]) + "\n"
    r = lab.boot("s23a", disks, append="root=zfs:AUTO zroam.shell=1", on_shell=cmd)
    out = r.serial

    def sect(n, m):
        return between(out, f"BE-{n}-BEGIN", f"BE-{m}-BEGIN") or ""

    l0 = sect("LIST0", "NEXT")
    check("next boot: rpool/ROOT/debian (the pool's bootfs)" in l0, f"list before next: {l0!r}", e)
    check("rpool/ROOT/debian  *-B-" in l0 and "rpool/ROOT/other   ----" in l0, f"flags before next: {l0!r}", e)
    nx = sect("NEXT", "ACTIVATE")
    check("org.zroam:nextboot on rpool: rpool/ROOT/other" in nx and "rc=0" in nx, f"next: {nx!r}", e)
    check("the boot after it: rpool/ROOT/debian" in nx, f"next does not say what follows: {nx!r}", e)
    ac = sect("ACTIVATE", "JSON")
    # activate keeps a one-shot for another BE: someone's plan for the next boot.
    check("(it was already)" in ac and "still names rpool/ROOT/other" in ac and "rc=0" in ac, f"activate: {ac!r}", e)
    try:
        j = json.loads(sect("JSON", "JSON-END"))
        p = j["pools"][0]
        check(p["next_boot"] == "rpool/ROOT/other" and p["nextboot"] == "rpool/ROOT/other", f"json pick {p}", e)
        envs = {x["name"]: x for x in p["environments"]}
        check(envs["rpool/ROOT/debian"]["bootfs"] and envs["rpool/ROOT/other"]["next_boot"], f"json flags {envs}", e)
        check(j["root"] is None, f"root {j['root']}: nothing of rpool is at / in the ramdisk", e)
    except (ValueError, KeyError, IndexError) as x:
        check(False, f"list --json: {x}", e)
    nb = sect("NOTBE", "BADNAME")
    check("is not a boot environment" in nb and "  rpool/ROOT/other" in nb and "rc=1" in nb, f"not a BE: {nb!r}", e)
    bad = sect("BADNAME", "SNAP")
    check("is not a snapshot name" in bad and "rc=2" in bad, f"bad name: {bad!r}", e)
    sn = sect("SNAP", "END")
    # -r: the child gets the same name, which root=…@lab1 would clone with the BE.
    check("rc=0" in sn and "rpool/ROOT/debian@lab1" in sn and "rpool/ROOT/debian/var@lab1" in sn, f"snapshot: {sn!r}", e)

    r2 = lab.boot("s23b", disks)
    booted(r2, "other", e, child="no")
    reason = ((r2.report or {}).get("be") or {}).get("reason", "")
    check("one-shot" in reason, f"second boot's reason {reason!r}", e)
    r3 = lab.boot("s23c", disks)
    booted(r3, "debian", e, child="yes")
    reason = ((r3.report or {}).get("be") or {}).get("reason", "")
    check(reason == "the pool's bootfs", f"the one-shot was not cleared: third boot's reason {reason!r}", e)
    return r3
