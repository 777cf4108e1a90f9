#!/bin/sh
# dracut cmdline hook (initrd without systemd, where zroam-preload.service does this): start
# loading zfs.ko now, before udev starts, rather than in the mount hook. zroam decides (only
# for a root zroam boot would take, only when zfs is not loaded) and never fails.
/usr/sbin/zroam preload &
