#!/usr/bin/env bash
# Builds zroam's Debian package from a `make install DESTDIR=ROOT PREFIX=/usr` tree: the
# files and modes are the ones `make install` gives (one list, the Makefile's), and
# dpkg-deb, Debian's own tool, packs them. Adds what Debian policy asks of a binary
# package: compressed man pages, /usr/share/doc/zroam with the copyright file, conffiles,
# md5sums, the maintainer scripts and the initramfs trigger from this directory.
# Usage: build-deb.sh ROOT OUTDIR VERSION -> prints the .deb's path
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
root=$1 out=$2 version=$3
arch=$(dpkg --print-architecture)
# One date for every timestamp in the package (file mtimes, the changelog): the last
# commit's, so that the same tree gives the same .deb (dpkg-deb reads it too).
: "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}"
export SOURCE_DATE_EPOCH

doc=$root/usr/share/doc/zroam
install -d "$doc"
install -m 0644 "$repo/README.md" "$repo/docs/design.md" "$doc/"
gzip -9n "$doc/README.md" "$doc/design.md"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: zroam"
    echo
    echo "Files: *"
    echo "Copyright: $(git -C "$repo" log --format=%cd --date=format:%Y 2>/dev/null | tail -n 1 | grep . || date -u +%Y) zroam developers"
    echo "License: LGPL-3.0-or-later"
    echo " On Debian systems the full text is in /usr/share/common-licenses/LGPL-3."
} >"$doc/copyright"
# A native package's changelog is policy (12.7): one entry for this build.
{
    echo "zroam ($version) unstable; urgency=medium"
    echo
    echo "  * Built from $(git -C "$repo" describe --always --dirty 2>/dev/null || echo "a source tree")."
    echo
    echo " -- $(sed -n 's/^Maintainer: //p' "$here/control.in")  $(date -R -u -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +
# zroam is static on purpose (it runs alone in the ramdisk, before any library is there);
# the mkinitcpio files are Arch's conventions, kept for a tree shared with Arch.
install -d "$root/usr/share/lintian/overrides"
install -m 0644 "$here/lintian-overrides" "$root/usr/share/lintian/overrides/zroam"
# Every file dated alike (see SOURCE_DATE_EPOCH above).
find "$root" -newermt "@$SOURCE_DATE_EPOCH" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

install -d -m 0755 "$root/DEBIAN"
install -m 0755 "$here/prerm" "$root/DEBIAN/prerm"
install -m 0755 "$here/postrm" "$root/DEBIAN/postrm"
install -m 0644 "$here/triggers" "$root/DEBIAN/triggers"
# Files under /etc are conffiles: an administrator's change survives upgrades.
(cd "$root" && find etc -type f -printf '/%p\n' | sort) >"$root/DEBIAN/conffiles"
[ -s "$root/DEBIAN/conffiles" ] || rm "$root/DEBIAN/conffiles"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" "$here/control.in" >"$root/DEBIAN/control"

mkdir -p "$out"
deb=$out/zroam_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
