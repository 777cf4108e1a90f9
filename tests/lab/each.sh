# shellcheck shell=bash
# lab_each FN ARG...: FN ARG for each ARG, LAB_BUILD_JOBS (default 2) at a time, their
# stdout printed in ARG order once all are done; fails if any failed (FN must return its
# failures: errexit does not reach into it where its caller is a condition). Image builds are one
# builder VM each, most of a VM's time is one busy vCPU, and a fresh machine makes some
# thirty of them: side by side, 1-vCPU VMs (LAB_JOB_SMP) keep both of the host's cores busy.
# The builder ramdisk is made first, once, for all of them.
lab_each() {
  local fn=$1 jobs=${LAB_BUILD_JOBS:-2} tmp i=0 n rc=0
  shift
  if [ $# -le 1 ] || [ "$jobs" -le 1 ]; then
    for a in "$@"; do "$fn" "$a"; done
    return 0
  fi
  lab_builder_initrd >/dev/null
  tmp=$(mktemp -d)
  for a in "$@"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    # FN's status, or no file at all when errexit (the callers' set -e) ended the subshell.
    (
      rc=0
      LAB_JOB_SMP=1 "$fn" "$a" >"$tmp/$i.out" || rc=$?
      echo "$rc" >"$tmp/$i.rc"
    ) &
    i=$((i + 1))
  done
  wait
  for ((n = 0; n < i; n++)); do
    cat "$tmp/$n.out"
    [ "$(cat "$tmp/$n.rc" 2>/dev/null)" = 0 ] || rc=1
  done
  rm -rf "$tmp"
  return $rc
}
