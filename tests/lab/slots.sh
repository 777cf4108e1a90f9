# shellcheck shell=bash
# The shell's side of the lab's core slots (vmlab.take_slots has the rules): lock files
# under $ZROAM_LAB_CACHE/.slots, one per host core, shared by every lab process.
#   lab_slots K CMD...   runs CMD holding K slots (at most all), waiting for them first

lab_slots() {
  local k=$1 n dir=${ZROAM_LAB_CACHE:-/var/cache/zroam-lab}/.slots turn i fd rc=0 fds=() held=()
  shift
  n=${LAB_SLOTS:-$(nproc)}
  [ "$k" -le "$n" ] || k=$n
  mkdir -p "$dir"
  exec {turn}>"$dir/turnstile"
  flock "$turn"
  while [ "${#held[@]}" -lt "$k" ]; do
    for ((i = 0; i < n && ${#held[@]} < k; i++)); do
      [[ " ${held[*]} " == *" $i "* ]] && continue
      exec {fd}>"$dir/slot$i"
      if flock -n "$fd"; then
        held+=("$i") fds+=("$fd")
      else
        exec {fd}>&-
      fi
    done
    [ "${#held[@]}" -ge "$k" ] || sleep 0.1
  done
  exec {turn}>&-
  "$@" || rc=$?
  for fd in "${fds[@]}"; do exec {fd}>&-; done
  return "$rc"
}
