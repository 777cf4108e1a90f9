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

doc=$root/usr/share/doc/zroam
install -d "$doc"
install -m 0644 "$repo/README.md" "$repo/docs/design.md" "$doc/"
gzip -9n "$doc/README.md" "$doc/design.md"
{
    echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    echo "Upstream-Name: zroam"
    echo
    echo "Files: *"
    echo "License: LGPL-3.0-or-later"
    echo " On Debian systems the full text is in /usr/share/common-licenses/LGPL-3."
} >"$doc/copyright"
find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} +

install -d -m 0755 "$root/DEBIAN"
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
