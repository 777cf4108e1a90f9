//! Kernel modules for the hardware present: only storage controllers, disks and OpenZFS.
//! `storage_alias` decides (pure); `Loader` runs kmod's modprobe.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Buses whose devices may lead to a disk.
pub const BUSES: &[&str] = &["pci", "virtio", "usb", "scsi", "mmc", "nvme"];

/// Field `key` of a modalias, as the hex digits after it (e.g. "bc" in a PCI alias).
fn field<'a>(alias: &'a str, key: &str, len: usize) -> Option<&'a str> {
    let i = alias.find(key)? + key.len();
    alias.get(i..i + len)
}

/// Does this modalias describe something on the way to a disk?
pub fn storage_alias(alias: &str) -> bool {
    if let Some(rest) = alias.strip_prefix("pci:") {
        // Mass storage (01), SD host (08/05), USB controllers (0c/03), and virtio transports.
        let class = field(rest, "bc", 2);
        let sub = field(rest, "sc", 2);
        return matches!(class, Some("01"))
            || matches!((class, sub), (Some("0C" | "0c"), Some("03")) | (Some("08"), Some("05")))
            || rest.starts_with("v00001AF4");
    }
    if let Some(rest) = alias.strip_prefix("virtio:") {
        // Block (2) and SCSI host (8).
        return matches!(field(rest, "d", 8), Some("00000002" | "00000008"));
    }
    if let Some(rest) = alias.strip_prefix("usb:") {
        // Interface class 08: mass storage (usb-storage, uas).
        return matches!(field(rest, "ic", 2), Some("08"));
    }
    if let Some(rest) = alias.strip_prefix("scsi:t-0x") {
        // Disks (00), optical-less direct access (0e RBC).
        return matches!(rest.get(..2), Some("00" | "0e" | "0E"));
    }
    alias.starts_with("mmc:block") || alias.starts_with("nvme:")
}

/// Does this modalias describe a network controller (remote unlock, key servers)?
pub fn net_alias(alias: &str) -> bool {
    if let Some(rest) = alias.strip_prefix("pci:") {
        return matches!(field(rest, "bc", 2), Some("02")) || rest.starts_with("v00001AF4");
    }
    if let Some(rest) = alias.strip_prefix("virtio:") {
        return matches!(field(rest, "d", 8), Some("00000001"));
    }
    // USB Ethernet: CDC (02/0a) interfaces and vendor-specific adapters are many; the
    // communications classes cover the common ones.
    alias.strip_prefix("usb:").is_some_and(|rest| matches!(field(rest, "ic", 2), Some("02" | "0A" | "0a")))
}

/// Modaliases of storage hardware already present (cold plug: their uevents came before us).
pub fn present_aliases(sys: &Path) -> Vec<String> {
    present(sys, storage_alias)
}

/// Modaliases present that `want` picks.
pub fn present(sys: &Path, want: fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for bus in BUSES {
        let Ok(rd) = std::fs::read_dir(sys.join("bus").join(bus).join("devices")) else { continue };
        for e in rd.flatten() {
            if let Ok(a) = std::fs::read_to_string(e.path().join("modalias")) {
                let a = a.trim();
                if want(a) && !out.iter().any(|x| x == a) {
                    out.push(a.to_string());
                }
            }
        }
    }
    out.sort();
    out
}

pub fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists())
}

/// Start `modprobe -q -a ARGS…` without waiting for it.
pub fn spawn_modprobe(args: &[String]) -> std::io::Result<Child> {
    let mp = find_tool("modprobe").ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no modprobe in this ramdisk"))?;
    Command::new(mp).arg("-q").arg("-b").arg("-a").args(args).stdin(Stdio::null()).stdout(Stdio::null()).spawn()
}

/// Is OpenZFS loaded and initialised? Not "/dev/zfs exists": systemd and kmod create a
/// static /dev/zfs from modules.devname before the module is loaded (opening it loads the
/// module), and /sys/module/zfs appears while the module is still initialising.
pub fn zfs_loaded() -> bool {
    zfs_state(&std::fs::read_to_string("/sys/module/zfs/initstate").ok(), Path::new("/sys/module/zfs").exists())
}

/// Pure: the module's initstate (None when the file is missing) and whether its sysfs
/// directory exists (built into the kernel: a directory without initstate).
pub fn zfs_state(initstate: &Option<String>, dir: bool) -> bool {
    match initstate {
        Some(s) => s.trim() == "live",
        None => dir,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zfs_is_loaded_only_when_live() {
        assert!(zfs_state(&Some("live\n".into()), true));
        assert!(!zfs_state(&Some("coming\n".into()), true));
        assert!(!zfs_state(&None, false));
        assert!(zfs_state(&None, true));
    }

    #[test]
    fn storage_only() {
        for a in [
            "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", // ICH9 AHCI
            "pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02", // NVMe
            "pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", // xHCI
            "pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00", // virtio-blk
            "virtio:d00000002v00001AF4",
            "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00",
            "scsi:t-0x00",
        ] {
            assert!(storage_alias(a), "{a}");
        }
        for a in [
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00", // VGA
            "pci:v00008086d00002918sv00001AF4sd00001100bc06sc01i00", // ISA bridge
            "virtio:d00000001v00001AF4",                             // virtio-net
            "usb:v0627p0001d0000dc00dsc00dp00ic03isc00ip00in00",     // HID tablet
            "scsi:t-0x05",                                           // CD-ROM
            "acpi:PNP0501:",
            "",
        ] {
            assert!(!storage_alias(a), "{a}");
        }
    }

    #[test]
    fn network_only() {
        assert!(net_alias("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00")); // e1000e
        assert!(net_alias("virtio:d00000001v00001AF4"));
        assert!(net_alias("usb:v0B95p1790d0100dc00dsc00dp00ic02isc06ip00in00"));
        assert!(!net_alias("virtio:d00000002v00001AF4"));
        assert!(!net_alias("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"));
        assert!(!net_alias("usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00"));
    }

    #[test]
    fn cold_plug_scan() {
        let d = std::env::temp_dir().join(format!("zroam-mod-{}", std::process::id()));
        for (bus, dev, alias) in [
            ("pci", "0000:00:1f.2", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01\n"),
            ("pci", "0000:00:01.0", "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00\n"),
            ("scsi", "0:0:0:0", "scsi:t-0x00\n"),
            ("scsi", "1:0:0:0", "scsi:t-0x00\n"),
        ] {
            let p = d.join("bus").join(bus).join("devices").join(dev);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("modalias"), alias).unwrap();
        }
        let a = present_aliases(&d);
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(a, ["pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", "scsi:t-0x00"]);
    }
}
