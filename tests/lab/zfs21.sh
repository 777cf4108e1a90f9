#!/usr/bin/env bash
# Builds the lab's second OpenZFS row: Debian 12's own OpenZFS 2.1.11 (contrib) on Debian
# 12's own kernel 6.1, without installing either on the host (the host keeps OpenZFS 2.3
# and its backports kernel). Everything comes from the bookworm release itself, never from
# bookworm-backports, which the host also has configured.
#
# Usage: zfs21.sh [base|update]   (as root)
#   base    the kernel bookworm itself ships (linux-image-amd64 of the release)
#   update  the kernel a bookworm system upgrades to (linux-image-amd64 of
#           bookworm-security), for the Debian lab's kernel update; the same OpenZFS
#
# Result, in $ZROAM_LAB_CACHE/zfs21-MODE-<hash of this script>/:
#   vmlinuz                      the 6.1 kernel
#   config, Module.symvers       the kernel's config and exported symbols (with CRCs)
#   modules/lib/modules/KVER/    its modules plus updates/dkms/*.ko (OpenZFS 2.1), depmod'ed
#   root/                        the 2.1.11 userland (zpool, zfs, zdb, zgenhostid, libzfs, ...)
#   debs/                        the downloaded .debs, for other parts of the lab to reuse
#   KVER, ZFS_VERSION            the kernel release and the Debian OpenZFS version
# A second run with the tree present does nothing but print its path.
set -euo pipefail

export ZROAM_LAB_CACHE=${ZROAM_LAB_CACHE:-/var/cache/zroam-lab}
mode=${1:-base}
case "$mode" in
  base) krel=bookworm ;;
  update) krel=bookworm-security ;;
  *) echo "usage: zfs21.sh [base|update]" >&2; exit 2 ;;
esac
key=$(sha256sum "$0" | cut -c1-16)
final=$ZROAM_LAB_CACHE/zfs21-$mode-$key
if [ -d "$final" ]; then
  echo "$final"
  exit 0
fi

log() { echo "zfs21: $*" >&2; }
# shellcheck source=slots.sh
source "$(dirname "$0")/slots.sh"
t_start=$SECONDS

# Two lab runs (or the Debian lab and the 2.1 boot row) that start together must not both
# spend minutes compiling the same tree: the second waits for the first, then finds it.
mkdir -p "$ZROAM_LAB_CACHE"
exec 9>"$ZROAM_LAB_CACHE/.zfs21-$mode.lock"
flock 9
if [ -d "$final" ]; then
  echo "$final"
  exit 0
fi

# The release we pin to. "pkg/bookworm" matches the bookworm suite only: not
# bookworm-backports (OpenZFS 2.3, kernel 6.12), nor bookworm-security or -updates.
rel=bookworm

# Version of a package in a release ($rel unless named), or a clear failure (apt lists
# missing or stale).
ver_in_rel() {
  local v r=${2:-$rel}
  v=$(apt-cache show "$1/$r" 2>/dev/null | awk '/^Version:/ {print $2; exit}')
  if [ -z "$v" ]; then
    log "no $1 in $r: are contrib and the $r lists present (apt-get update)?"
    return 1
  fi
  echo "$v"
}

# The kernel ABI package that bookworm's linux-image-amd64 points at, e.g.
# linux-image-6.1.0-50-amd64; the kernel release (KVER) is its name minus the prefix.
img_pkg=$(apt-cache depends "linux-image-amd64/$krel" |
  awk '$1 == "Depends:" && $2 ~ /^linux-image-6\.1\..*-amd64$/ {print $2; exit}')
if [ -z "$img_pkg" ]; then
  log "cannot resolve the 6.1 kernel from linux-image-amd64/$krel"
  exit 1
fi
kver=${img_pkg#linux-image-}
kabi=${kver%-amd64}
kpkgs=("$img_pkg" "linux-headers-$kver" "linux-headers-$kabi-common" linux-kbuild-6.1)

zver=$(ver_in_rel zfsutils-linux)
case "$zver" in
  2.1.11-*) ;;
  *) log "bookworm's zfsutils-linux is $zver, expected 2.1.11"; exit 1 ;;
esac
zsrc=zfs-${zver%%-*}
zpkgs=(zfs-dkms zfsutils-linux libzfs4linux libnvpair3linux libuutil3linux libzpool5linux
  zfs-initramfs)

# Work next to the final tree (same filesystem) so that the last step is one rename.
mkdir -p "$ZROAM_LAB_CACHE"
tmp=$(mktemp -d "$ZROAM_LAB_CACHE/.zfs21-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
out=$tmp/out
mkdir -p "$out/debs" "$out/root" "$out/modules/lib/modules" "$tmp/hdr" "$tmp/img"

# Pin every package to an exact version from $rel: "pkg=VERSION" cannot pick up a
# backports or security build by accident.
specs=()
for p in "${kpkgs[@]}"; do specs+=("$p=$(ver_in_rel "$p" "$krel")"); done
for p in "${zpkgs[@]}"; do specs+=("$p=$(ver_in_rel "$p")"); done
log "kernel $kver, OpenZFS $zver; downloading ${#specs[@]} packages"
# As root, apt drops to the _apt user to download, and _apt cannot write to this private
# directory; as a normal user there is no sandbox to turn off.
apt_opts=(-q)
if [ "$(id -u)" = 0 ]; then apt_opts+=(-o APT::Sandbox::User=root); fi
(cd "$out/debs" && apt-get "${apt_opts[@]}" download "${specs[@]}") >&2

# Headers, kbuild and the OpenZFS source go to a build-only staging tree; the kernel image
# goes to its own tree so that the headers' lib/modules/KVER/build link stays out of the
# result. The userland is extracted straight into root/.
for p in "${kpkgs[@]}"; do
  deb=$(echo "$out/debs/${p}_"*.deb)
  case "$p" in
    linux-image-*) dpkg-deb -x "$deb" "$tmp/img" ;;
    *) dpkg-deb -x "$deb" "$tmp/hdr" ;;
  esac
done
dpkg-deb -x "$(echo "$out/debs/zfs-dkms_"*.deb)" "$tmp/hdr"
for p in "${zpkgs[@]}"; do
  [ "$p" = zfs-dkms ] && continue
  dpkg-deb -x "$(echo "$out/debs/${p}_"*.deb)" "$out/root"
done

# The arch headers reach the common headers through an absolute "include
# /usr/src/linux-headers-…-common/Makefile", which does not exist on this host (and must
# not be created there). Point it into the staging tree instead. The scripts/ and tools/
# links into linux-kbuild are relative, so they already resolve inside the staging tree.
hobj=$tmp/hdr/usr/src/linux-headers-$kver
hsrc=$tmp/hdr/usr/src/linux-headers-$kabi-common
sed -i "s|^include /usr/src/|include $tmp/hdr/usr/src/|" "$hobj/Makefile"
if grep -rqs --include=Makefile '^include /usr/src/' "$hobj" "$hsrc"; then
  log "the headers still include files from the host's /usr/src"
  exit 1
fi

# Build OpenZFS's kernel modules the way DKMS would (same configure flags as its
# dkms.conf), in a copy so the pristine source stays with the .deb.
log "building OpenZFS ${zver%%-*} modules for $kver"
cp -a "$tmp/hdr/usr/src/$zsrc" "$tmp/build"
t_build=$SECONDS
compile() {
  cd "$tmp/build"
  ./configure -q --prefix=/usr --with-config=kernel --with-linux="$hsrc" --with-linux-obj="$hobj"
  # -g0: the kernel's config asks for debug info, which DKMS strips from the modules
  # anyway; not making it takes a third off the compile.
  make -s -j"$(nproc)" KCFLAGS=-g0
}
# A job per core: it holds every core's slot (slots.sh), as the lab's guests do theirs.
(lab_slots "$(nproc)" compile) >"$tmp/build.log" 2>&1 || {
  tail -n 40 "$tmp/build.log" >&2
  log "OpenZFS build failed (log above)"
  exit 1
}
log "compile took $((SECONDS - t_build)) s"

# OpenZFS 2.1 makes nine modules (spl, zfs, icp, zavl, zcommon, zlua, znvpair, zunicode,
# zzstd), not just spl and zfs as 2.2 and later do. DKMS puts them all flat in
# updates/dkms/ and strips their debug info (Debian's kernel builds them with -g); do the same.
kdir=$out/modules/lib/modules/$kver
mv "$tmp/img/lib/modules/$kver" "$kdir"
mkdir -p "$kdir/updates/dkms"
find "$tmp/build/module" -name '*.ko' -exec install -m 0644 -t "$kdir/updates/dkms" {} +
strip --strip-debug "$kdir/updates/dkms/"*.ko
for m in spl zfs; do
  [ -s "$kdir/updates/dkms/$m.ko" ] || { log "the build made no $m.ko"; exit 1; }
done

mv "$tmp/img/boot/vmlinuz-$kver" "$out/vmlinuz"
mv "$tmp/img/boot/config-$kver" "$out/config"
# Debian's System.map is a one-line placeholder (the real one is in the -dbg package), so
# check symbols against the headers' Module.symvers instead: -e reports any symbol (or
# symbol CRC) the new modules need that this kernel lacks, so a build against the wrong
# headers shows here rather than as a failed insmod in a VM.
cp "$hobj/Module.symvers" "$out/Module.symvers"
depmod -b "$out/modules" -e -E "$out/Module.symvers" "$kver" 2>"$tmp/depmod.err" || {
  cat "$tmp/depmod.err" >&2
  exit 1
}
if [ -s "$tmp/depmod.err" ]; then
  cat "$tmp/depmod.err" >&2
  log "depmod reported problems"
  exit 1
fi

echo "$kver" >"$out/KVER"
echo "$zver" >"$out/ZFS_VERSION"
# -T: fail rather than move into a tree a concurrent run finished first.
mv -T "$out" "$final"
log "done in $((SECONDS - t_start)) s"
echo "$final"
