#!/bin/sh
# dracut mount hook (initrd without systemd): zroam mounts the root at $NEWROOT.
ismounted "$NEWROOT" && return 0
if ! /usr/sbin/zroam boot --no-switch --sysroot "$NEWROOT"; then
    emergency_shell -n zroam "zroam could not mount the root; 'zroam status' shows its report"
fi
