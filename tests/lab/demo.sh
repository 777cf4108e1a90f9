#!/usr/bin/env bash
# make demo: a real 2-way mirror pool made by zpool in the builder VM, its second disk
# "lost", and zroam probe reading what is left — the ESP and the surviving mirror member
# attached as loop devices at their partition offsets (loop partition scanning does not
# work here). The boot demo comes with the boot stage.
set -euo pipefail
shopt -s inherit_errexit
bin=$(realpath "${1:?usage: demo.sh ZROAM_BINARY}")
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=builder.sh
source "$here/builder.sh"
bash "$here/../fixtures/capture.sh" --images-only mirror2 mirror-missing
cache=${ZROAM_LAB_CACHE:-/var/cache/zroam-lab}/images
loops=()
cleanup() { for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done; }
trap cleanup EXIT
attach() { # IMG PARTNO
  local off size
  read -r off size < <(lab_part_geom "$1" "$2")
  loops+=("$(losetup -r -f --show -o "$off" --sizelimit "$size" "$1")")
}
# The complete mirror, and the mirror whose second disk is gone.
attach "$cache/mirror2/vda.img" 1; attach "$cache/mirror2/vda.img" 2; attach "$cache/mirror2/vdb.img" 2
attach "$cache/mirror-missing/vda.img" 1; attach "$cache/mirror-missing/vda.img" 2
echo "== loop devices: ${loops[*]}"
echo
echo "== zroam probe"
"$bin" probe
echo
echo "== zroam probe --json (pools)"
"$bin" probe --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
for p in r["pools"]:
    print(json.dumps({k: p[k] for k in ("name", "guid", "state", "health", "txg", "hostid", "missing", "problems", "boot_candidate")}, indent=1))
print("probe took %.1f ms over %d devices" % (r["elapsed_ms"], len(r["devices"])))'
echo
echo "== zdb -l (OpenZFS) on the surviving member, for comparison"
zdb -l "${loops[4]}" | sed -n '1,14p'
