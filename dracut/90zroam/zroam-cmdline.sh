#!/bin/sh
# shellcheck disable=SC2034 # rootok is read by dracut's cmdline stage, which sources this
# dracut cmdline hook: a ZFS root= is zroam's; tell dracut the root is taken care of.
case "${root:-}" in
    zfs:* | ZFS=*)
        rootok=1
        ;;
esac
[ -n "$(getarg zroam.pool=)" ] && rootok=1
