//! Block devices as the kernel lists them under /sys/class/block.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    Usb,
    Nvme,
    Sata,
    Virtio,
    Scsi,
    Mmc,
    Virtual,
    Unknown,
}

/// Which bus a device hangs off, from its resolved sysfs path. USB is tested first
/// because USB mass storage also shows up as a SCSI host below the USB port.
pub fn bus_from_devpath(p: &str) -> Bus {
    let has = |s: &str| p.split('/').any(|c| c.starts_with(s));
    if has("usb") {
        Bus::Usb
    } else if has("nvme") {
        Bus::Nvme
    } else if has("ata") {
        Bus::Sata
    } else if has("virtio") {
        Bus::Virtio
    } else if has("mmc_host") {
        Bus::Mmc
    } else if has("host") && has("target") {
        Bus::Scsi
    } else if p.contains("/devices/virtual/") {
        Bus::Virtual
    } else {
        Bus::Unknown
    }
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct BlockDev {
    pub name: String,
    /// The device node, `/dev/<name>`.
    pub node: String,
    pub major: u32,
    pub minor: u32,
    pub size: u64,
    /// Partition number when this is a partition.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub partition: Option<u32>,
    /// Whole disk a partition belongs to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent: Option<String>,
    /// Start of a partition on its disk, in bytes.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub start: Option<u64>,
    pub removable: bool,
    pub read_only: bool,
    pub bus: Bus,
    pub logical_block_size: u32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub serial: Option<String>,
    /// Devices stacked on this one (md arrays, dm maps).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub holders: Vec<String>,
    /// dm name, md level, or loop backing file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
}

#[cfg(test)]
impl BlockDev {
    /// Partition `n` of virtio disk `disk`, 64 MiB (unit tests build probe reports from it).
    pub fn test_partition(disk: &str, n: u32) -> BlockDev {
        let name = format!("{disk}{n}");
        BlockDev {
            node: format!("/dev/{name}"),
            name,
            major: 8,
            minor: n,
            size: 1 << 26,
            partition: Some(n),
            parent: Some(disk.to_string()),
            start: Some(1 << 20),
            removable: false,
            read_only: false,
            bus: Bus::Virtio,
            logical_block_size: 512,
            model: None,
            serial: None,
            holders: Vec::new(),
            detail: None,
        }
    }
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    let s = fs::read_to_string(dir.join(name)).ok()?;
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn num<T: std::str::FromStr>(dir: &Path, name: &str) -> Option<T> {
    attr(dir, name)?.parse().ok()
}

/// Devices that never hold a pool and may be slow or odd to read.
fn skipped(name: &str) -> bool {
    ["ram", "zram", "sr", "fd", "mtdblock"]
        .iter()
        .any(|p| name.strip_prefix(p).is_some_and(|rest| rest.chars().next().is_none_or(|c| c.is_ascii_digit())))
}

/// Read one device's directory (`<root>/class/block/<name>`).
pub fn read_dev(class_dir: &Path, name: &str) -> Option<BlockDev> {
    let dir = class_dir.join(name);
    let (major, minor) = attr(&dir, "dev").and_then(|d| {
        let (a, b) = d.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })?;
    let real = fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    let partition: Option<u32> = num(&dir, "partition");
    // A partition's directory sits inside its disk's directory.
    let disk_dir: PathBuf = if partition.is_some() { real.parent().map(Path::to_path_buf).unwrap_or(real.clone()) } else { real.clone() };
    let parent = partition.and(disk_dir.file_name().map(|n| n.to_string_lossy().into_owned()));
    let sectors: u64 = num(&dir, "size").unwrap_or(0);
    let first = |names: &[&str]| names.iter().find_map(|n| attr(&disk_dir, n));
    let holders = fs::read_dir(dir.join("holders"))
        .map(|it| it.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let detail = attr(&dir, "dm/name")
        .map(|n| format!("dm {n}"))
        .or_else(|| attr(&dir, "md/level").map(|l| format!("md {l}")))
        .or_else(|| attr(&dir, "loop/backing_file").map(|f| format!("loop {f}")));
    Some(BlockDev {
        name: name.to_string(),
        node: format!("/dev/{name}"),
        major,
        minor,
        size: sectors * 512,
        partition,
        parent,
        start: num::<u64>(&dir, "start").map(|s| s * 512),
        removable: num::<u8>(&disk_dir, "removable").unwrap_or(0) != 0,
        read_only: num::<u8>(&dir, "ro").unwrap_or(0) != 0,
        bus: bus_from_devpath(&real.to_string_lossy()),
        logical_block_size: num(&disk_dir, "queue/logical_block_size").unwrap_or(512),
        model: first(&["device/model", "device/name"]),
        serial: first(&["device/serial", "serial", "device/wwid"]),
        holders,
        detail,
    })
}

/// Every block device worth probing, whole disks before their partitions.
pub fn enumerate(sys: &Path) -> std::io::Result<Vec<BlockDev>> {
    let class = sys.join("class/block");
    let mut names: Vec<String> =
        fs::read_dir(&class)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !skipped(n)).collect();
    names.sort();
    let mut devs: Vec<BlockDev> = names.iter().filter_map(|n| read_dev(&class, n)).filter(|d| d.size > 0).collect();
    devs.sort_by(|a, b| {
        let key = |d: &BlockDev| (d.parent.clone().unwrap_or(d.name.clone()), d.partition.unwrap_or(0));
        key(a).cmp(&key(b))
    });
    Ok(devs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buses_from_real_paths() {
        let cases = [
            ("/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda2", Bus::Virtio),
            ("/sys/devices/pci0000:00/0000:00:05.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda", Bus::Usb),
            ("/sys/devices/pci0000:00/0000:00:06.0/ata1/host2/target2:0:0/2:0:0:0/block/sdb", Bus::Sata),
            ("/sys/devices/pci0000:00/0000:00:07.0/nvme/nvme0/nvme0n1/nvme0n1p2", Bus::Nvme),
            ("/sys/devices/pci0000:00/0000:00:08.0/virtio3/host3/target3:0:1/3:0:1:0/block/sdc", Bus::Virtio),
            ("/sys/devices/virtual/block/loop0", Bus::Virtual),
            ("/sys/devices/pci0000:00/0000:00:09.0/host4/target4:0:0/4:0:0:0/block/sdd", Bus::Scsi),
        ];
        for (p, b) in cases {
            assert_eq!(bus_from_devpath(p), b, "{p}");
        }
    }

    #[test]
    fn skips_ram_and_optical() {
        assert!(skipped("ram0") && skipped("zram1") && skipped("sr0"));
        assert!(!skipped("sda") && !skipped("srv"));
        assert!(!skipped("loop0") && !skipped("nvme0n1p1"));
    }

    /// A miniature sysfs: class/block links into a devices tree, as the kernel lays it out.
    #[test]
    fn reads_disks_and_partitions_from_a_sysfs_tree() {
        use std::os::unix::fs::symlink;
        let root = std::env::temp_dir().join(format!("zroam-sysfs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let disk = root.join("devices/pci0000:00/0000:00:05.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda");
        let part = disk.join("sda2");
        fs::create_dir_all(&part).unwrap();
        fs::create_dir_all(disk.join("queue")).unwrap();
        fs::create_dir_all(disk.join("device")).unwrap();
        let w = |p: PathBuf, s: &str| fs::write(p, s).unwrap();
        w(disk.join("dev"), "8:0\n");
        w(disk.join("size"), "2048000\n");
        w(disk.join("removable"), "1\n");
        w(disk.join("queue/logical_block_size"), "4096\n");
        w(disk.join("device/model"), "Stick   \n");
        w(part.join("dev"), "8:2\n");
        w(part.join("size"), "1024000\n");
        w(part.join("partition"), "2\n");
        w(part.join("start"), "2048\n");
        let class = root.join("class/block");
        fs::create_dir_all(&class).unwrap();
        symlink(&disk, class.join("sda")).unwrap();
        symlink(&part, class.join("sda2")).unwrap();
        fs::create_dir_all(root.join("devices/virtual/block/ram0")).unwrap();
        w(root.join("devices/virtual/block/ram0/dev"), "1:0");
        w(root.join("devices/virtual/block/ram0/size"), "8192");
        symlink(root.join("devices/virtual/block/ram0"), class.join("ram0")).unwrap();

        let devs = enumerate(&root).unwrap();
        let _ = fs::remove_dir_all(&root);
        assert_eq!(devs.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["sda", "sda2"]);
        let (d, p) = (&devs[0], &devs[1]);
        assert_eq!((d.size, d.bus, d.removable, d.logical_block_size), (2048000 * 512, Bus::Usb, true, 4096));
        assert_eq!(d.model.as_deref(), Some("Stick"));
        assert_eq!((p.partition, p.parent.as_deref(), p.start), (Some(2), Some("sda"), Some(2048 * 512)));
        assert!(p.removable, "a partition inherits its disk's removable flag");
        assert_eq!(p.node, "/dev/sda2");
    }
}
