#!/usr/bin/env bash
# Bootable pool images for the boot lab, made by the real zpool/zfs in the builder VM and
# cached by the hash of their job: each BE is a tiny OS tree whose /sbin/init prints markers
# on the serial console (which BE, uptime, ro/rw root, child dataset mounted, the report).
#   boot-images.sh NAME...      -> "NAME DIR" per set; DIR holds vd?.img and manifest.json
#                                  (LAB_ROW: pools made by that OpenZFS row's zpool, builder.sh)
#   boot-images.sh --holder-job -> a builder job that imports an `mmp` disk and keeps it
#                                  imported (the "other host" of a multihost pool)
set -euo pipefail
shopt -s inherit_errexit
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=builder.sh
source "$here/builder.sh"

OURS=$LAB_OURS
FOREIGN=$LAB_FOREIGN

# The BE's init: runs as PID 1 after zroam's switch root.
be_init() {
  cat <<'INIT'
#!/bin/busybox sh
export PATH=/bin
b=/bin/busybox
$b mount -t proc proc /proc 2>/dev/null
up=$($b cut -d' ' -f1 /proc/uptime)
ro=rw; $b awk '$2=="/" && $4 ~ /(^|,)ro(,|$)/ {f=1} END {exit !f}' /proc/mounts && ro=ro
child=no; [ -e /var/zroam-child ] && child=yes
echo "ZROAM-BE-INIT be=$($b cat /etc/zroam-be) uptime=$up root=$ro child=$child pid=$$"
echo "ZROAM-MOUNTS-BEGIN"; $b cat /proc/mounts; echo "ZROAM-MOUNTS-END"
echo "ZROAM-REPORT-BEGIN"; $b cat /run/zroam/report.json 2>/dev/null; echo; echo "ZROAM-REPORT-END"
$b sync
$b poweroff -f
INIT
}

# The lab's passphrase for LUKS containers and encrypted BEs (typed by the tests).
LAB_PASSPHRASE=zroam-lab-passphrase

# job HOSTID NDISKS CREATE-OPTIONS BE[:child]... — the first BE is bootfs. $layout (from
# the set's LAYOUT) adds encryption: luks (each pool member inside a LUKS2 container),
# native-prompt (the first BE encrypted, passphrase, keylocation=prompt), native-keyfile
# (raw key, keylocation=file:///boot/efi/zroam/rpool.key, the key on the first disk's ESP).
job_for() {
  local hostid=$1 n=$2 opts=$3 vdevs="" i d; shift 3
  for ((i = 0; i < n; i++)); do
    d=$(lab_disk_name $i)
    if [ "${layout:-}" = luks ]; then vdevs+=" /dev/mapper/lab-$d"; else vdevs+=" /dev/${d}2"; fi
  done
  [ "$n" -gt 1 ] && vdevs="mirror$vdevs"
  lab_job_disks "$n" "$hostid" "${ESP_SIZE[$name]:-64M}"
  # pbkdf2 with few iterations: key derivation under emulation must not take minutes.
  [ "${layout:-}" = luks ] && for ((i = 0; i < n; i++)); do
    d=$(lab_disk_name $i)
    cat <<JOB
export DM_DISABLE_UDEV=1
printf %s '$LAB_PASSPHRASE' | cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file=- /dev/${d}2
printf %s '$LAB_PASSPHRASE' | cryptsetup open --key-file=- /dev/${d}2 lab-$d
JOB
  done
  cat <<JOB
zpool create -f $opts -O mountpoint=none -O canmount=off -R /mnt rpool $vdevs
zfs create -o mountpoint=none -o canmount=off rpool/ROOT
cat > /tmp/init <<'INIT'
$(be_init)
INIT
JOB
  local first=1 spec be child
  for spec in "$@"; do
    be=${spec%%:*}; child=${spec#*:}; [ "$child" = "$spec" ] && child=""
    case "${layout:-}:$first" in
    native-prompt:1) cat <<JOB
printf '%s\n' '$LAB_PASSPHRASE' | zfs create -o encryption=on -o keyformat=passphrase -o keylocation=prompt -o mountpoint=/ -o canmount=noauto rpool/ROOT/$be
zdb -l /dev/vda2 | grep -A6 features_for_read || true
JOB
    ;;
    native-keyfile:1) cat <<JOB
dd if=/dev/urandom of=/tmp/rpool.key bs=32 count=1
zfs create -o encryption=on -o keyformat=raw -o keylocation=file:///tmp/rpool.key -o mountpoint=/ -o canmount=noauto rpool/ROOT/$be
zfs set keylocation=file:///boot/efi/zroam/rpool.key rpool/ROOT/$be
mkdir -p /tmp/esp && mount -t vfat /dev/vda1 /tmp/esp && mkdir -p /tmp/esp/zroam && cp /tmp/rpool.key /tmp/esp/zroam/ && umount /tmp/esp
JOB
    ;;
    *) echo "zfs create -o mountpoint=/ -o canmount=noauto rpool/ROOT/$be" ;;
    esac
    cat <<JOB
zfs mount rpool/ROOT/$be
mkdir -p /mnt/bin /mnt/sbin /mnt/etc /mnt/proc /mnt/sys /mnt/dev /mnt/run /mnt/tmp /mnt/var
cp /bin/busybox /mnt/bin/busybox; ln -s busybox /mnt/bin/sh
cp /tmp/init /mnt/sbin/init; chmod 0755 /mnt/sbin/init
printf 'ID=zroamlab\nNAME="zroam lab BE"\nVERSION_ID=1\n' > /mnt/etc/os-release
echo $be > /mnt/etc/zroam-be
JOB
    [ -n "$child" ] && cat <<JOB
zfs create -o canmount=on rpool/ROOT/$be/$child
echo child > /mnt/$child/zroam-child
zfs umount rpool/ROOT/$be/$child
JOB
    echo "zfs umount rpool/ROOT/$be"
    [ $first = 1 ] && echo "zpool set bootfs=rpool/ROOT/$be rpool"
    first=0
  done
  cat <<JOB
zpool get -H -o value guid rpool > guid
zpool sync rpool
zpool list -v rpool
JOB
}

# The `snaps` set (boot environments lab): after the usual BEs, the bootfs gets a
# canmount=noauto /usr child, an extra dataset named by its /etc/default/zfs whose mountpoint
# passes through a symlink that points out of the root, and a recursive snapshot @pre of that
# state (marker debian-pre, no /var/zroam-child). Then a checkpoint, and the BE moves on
# (marker debian, /var/zroam-child back): booting @pre or rewinding shows the old state.
SNAPS_EXTRA='zfs mount rpool/ROOT/debian && zfs mount rpool/ROOT/debian/var && zfs create -o canmount=noauto rpool/ROOT/debian/usr && zfs mount rpool/ROOT/debian/usr && echo usr > /mnt/usr/zroam-usr && zfs umount rpool/ROOT/debian/usr && zfs create -o canmount=noauto -o mountpoint=/srv/extra rpool/extra && ln -s /../../../var/lib/escape /mnt/srv && mkdir -p /mnt/etc/default && echo ZFS_INITRD_ADDITIONAL_DATASETS=rpool/extra > /mnt/etc/default/zfs && rm /mnt/var/zroam-child && echo debian-pre > /mnt/etc/zroam-be && zfs snapshot -r rpool/ROOT/debian@pre && zpool checkpoint rpool && echo debian > /mnt/etc/zroam-be && echo later > /mnt/var/zroam-child && zfs umount rpool/ROOT/debian/var && zfs umount rpool/ROOT/debian && zfs list -t all -o name,mountpoint,canmount -r rpool && zpool status rpool'

declare -A LAYOUT=([luks]=luks [native]=native-prompt [keyfile]=native-keyfile [lostkey]=native-prompt)
declare -A SETS=(
  [mirror]="$OURS 2|-o cachefile=/out/zpool.cache|debian:var other"
  [single]="$OURS 1|-o cachefile=none|debian:var other"
  [foreign]="$FOREIGN 1|-o cachefile=none|foreign"
  [mmp]="$FOREIGN 1|-o cachefile=none -o multihost=on|mmp"
  [mirror3]="$OURS 3|-o cachefile=none|debian"
  # The ESPs of both disks are one md RAID1 with metadata 1.0 (superblock at the end, so
  # the firmware still sees a FAT on each partition).
  [luks]="$OURS 2|-o cachefile=none|debian:var"
  [native]="$OURS 1|-o cachefile=none|debian:var"
  [keyfile]="$OURS 1|-o cachefile=none|debian"
  # A passphrase root whose keylocation names a file the ramdisk does not have.
  [lostkey]="$OURS 1|-o cachefile=none|debian|zfs set keylocation=file:///etc/zroam/lost.key rpool/ROOT/debian && zfs get -H keylocation,keyformat rpool/ROOT/debian"
  [mdesp]="$OURS 2|-o cachefile=none|debian|mdadm --create /dev/md0 --run --metadata=1.0 --level=1 --raid-devices=2 /dev/vda1 /dev/vdb1 && mkfs.vfat -F 32 -n EFI /dev/md0 && mdadm --stop /dev/md0"
  # The same ESP pair with md's older 0.90 superblock (also at the end of the partition).
  [md090]="$OURS 2|-o cachefile=none|debian|mdadm --create /dev/md0 --run --metadata=0.90 --level=1 --raid-devices=2 /dev/vda1 /dev/vdb1 && mkfs.vfat -F 32 -n EFI /dev/md0 && mdadm --stop /dev/md0"
  # ESPs that hold a 64 MiB file beside a kernel and ramdisk.
  [bigesp]="$OURS 2|-o cachefile=none|debian"
  [snaps]="$OURS 1|-o cachefile=none|debian:var other|$SNAPS_EXTRA"
)
# Sizes other than the 64 MiB ESP on a 256 MiB disk.
declare -A ESP_SIZE=([bigesp]=200M)
declare -A DISK_SIZE=([bigesp]=512M)

build_set() {
  local name=$1 spec=${SETS[$1]} dir key job hostid n opts bes extra i img layout disks=()
  IFS='|' read -r hn opts bes extra <<<"$spec"
  read -r hostid n <<<"$hn"
  layout=${LAYOUT[$name]:-}
  # shellcheck disable=SC2086
  job=$(job_for "$hostid" "$n" "$opts" $bes)
  [ -n "$extra" ] && job+=$'\n'"$extra"
  # One cache dir per OpenZFS row (builder.sh): the host's row keeps boot-images/.
  dir=$ZROAM_LAB_CACHE/boot-images${LAB_ROW:+-$LAB_ROW}/$name
  key=$( (echo "$job"; basename "$(lab_builder_initrd)") | sha256sum | cut -c1-16)
  if [ "$(cat "$dir/key" 2>/dev/null)" != "$key" ]; then
    rm -rf "$dir"; mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do
      img=$dir/$(lab_disk_name $i).img; truncate -s "${DISK_SIZE[$name]:-256M}" "$img"; disks+=("$img")
    done
    echo "$job" > "$dir/job.sh"
    # Failures returned, not left to errexit: lab_each may run this where errexit is off.
    lab_run_job "$dir/job.sh" "$dir/out" "${disks[@]}" >&2 || return 1
    if [ -s "$dir/out/zpool.cache" ]; then cp "$dir/out/zpool.cache" "$dir/zpool.cache" || return 1; fi
    python3 - "$dir" "$name" "$(cat "$dir/out/guid")" "$hostid" "${disks[@]}" <<'PY' || return 1
import json, sys
d, name, guid, hostid, imgs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
json.dump({"name": name, "pool": "rpool", "pool_guid": guid.strip(), "hostid": hostid,
           "disks": [{"name": i.rsplit("/", 1)[1][:-4], "image": i} for i in imgs]},
          open(d + "/manifest.json", "w"), indent=1)
PY
    echo "$key" > "$dir/key"
  fi
  echo "$name $dir"
}

holder_job() {
  cat <<JOB
zgenhostid -f $FOREIGN
i=0; while [ ! -b /dev/vda2 ] && [ \$i -lt 200 ]; do sleep 0.05; i=\$((i+1)); done
zpool import -N -o cachefile=none -d /dev/vda2 rpool
zpool get -H multihost rpool
echo "LAB-HOLDER: imported" > /dev/console
while :; do sleep 1; done
JOB
}

if [ "${1:-}" = --holder-job ]; then holder_job; exit 0; fi
[ $# -gt 0 ] || { echo "usage: boot-images.sh NAME... | --holder-job (names: ${!SETS[*]})" >&2; exit 2; }
for s in "$@"; do
  [ -n "${SETS[$s]:-}" ] || { echo "boot-images: unknown set $s" >&2; exit 2; }
done
lab_each build_set "$@"
