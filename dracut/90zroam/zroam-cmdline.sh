#!/bin/sh
# dracut cmdline hook: a ZFS root= is zroam's; tell dracut the root is taken care of.
case "${root:-}" in
    zfs:* | ZFS=*)
        rootok=1
        ;;
esac
[ -n "$(getarg zroam.pool=)" ] && rootok=1
