#!/usr/bin/env bash
# Prints the version of the newest installed kernel that has a DKMS-built zfs module.
set -euo pipefail
for d in $(printf '%s\n' /lib/modules/*/ | sort -rV); do
  k=$(basename "$d")
  if ls "$d"updates/dkms/zfs.ko* >/dev/null 2>&1 && [ -e "/boot/vmlinuz-$k" ]; then
    echo "$k"; exit 0
  fi
done
echo "guest-kernel: no kernel with a DKMS zfs module (run tests/lab/host-setup.sh)" >&2
exit 1
