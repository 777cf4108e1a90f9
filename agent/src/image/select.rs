//! What goes into the ramdisk, decided from text the build host's tools print: the kernel
//! modules a portable disk may need (by where the kernel tree keeps them), kmod's and ldd's
//! answers, the compression the kernel can unpack. Pure.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// Where the kernel keeps the drivers between a disk anywhere and zroam, and a keyboard to
/// type its passphrase on: a directory (ending in `/`: every module under it) or one
/// module (its path without `.ko`), relative to the modules directory.
pub const PORTABLE: &[&str] = &[
    // SATA/PATA (AHCI and the rest), NVMe (PCIe only: not over fabrics, whose RDMA stack
    // is 2 MiB), and Intel's VMD that hides NVMe on laptops.
    "kernel/drivers/ata/",
    "kernel/drivers/nvme/host/nvme",
    "kernel/drivers/nvme/host/nvme-core",
    "kernel/drivers/pci/controller/vmd",
    // Disks behind SCSI: the disk driver and the virtual machines' controllers.
    "kernel/drivers/scsi/sd_mod",
    "kernel/drivers/scsi/virtio_scsi",
    "kernel/drivers/scsi/vmw_pvscsi",
    "kernel/drivers/scsi/hv_storvsc",
    // USB controllers and USB disks (usb-storage, UAS), SD/MMC cards.
    "kernel/drivers/usb/host/",
    "kernel/drivers/usb/storage/",
    "kernel/drivers/mmc/core/",
    "kernel/drivers/mmc/host/",
    // Virtual machines' disks.
    "kernel/drivers/virtio/",
    "kernel/drivers/block/virtio_blk",
    "kernel/drivers/block/xen-blkfront",
    "kernel/drivers/hv/",
    // USB keyboards.
    "kernel/drivers/hid/usbhid/",
    "kernel/drivers/hid/hid-generic",
];

/// kmod's spelling of a module's name: `-` is `_`.
pub fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// A module's name from its path (`.../ahci.ko.xz` -> `ahci`).
pub fn module_name(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split_once(".ko").map(|(s, _)| s)?;
    (!stem.is_empty()).then(|| norm(stem))
}

/// The modules `modules.dep` lists: (path relative to the modules directory, name).
pub fn listed(dep: &str) -> Vec<(String, String)> {
    dep.lines().filter_map(|l| l.split_once(':')).filter_map(|(p, _)| Some((p.trim().to_string(), module_name(p.trim())?))).collect()
}

/// Does a module at `path` belong to `PORTABLE`?
pub fn portable(path: &str) -> bool {
    PORTABLE.iter().any(|p| match p.strip_suffix('/') {
        Some(dir) => path.strip_prefix(dir).is_some_and(|r| r.starts_with('/')),
        None => path.strip_prefix(p).is_some_and(|r| r.starts_with(".ko")),
    })
}

/// The names asked for that this kernel has, as modules or built in, and those it lacks.
/// `modules.builtin` lists paths like `modules.dep`, without the colon.
pub fn known(wanted: &[String], dep: &str, builtin: &str) -> (Vec<String>, Vec<String>) {
    let have: BTreeSet<String> = listed(dep).into_iter().map(|(_, n)| n).chain(builtin.lines().filter_map(module_name)).collect();
    let mut seen = BTreeSet::new();
    let (mut yes, mut no) = (Vec::new(), Vec::new());
    for w in wanted.iter().map(|w| norm(w)) {
        if seen.insert(w.clone()) {
            if have.contains(&w) {
                yes.push(w)
            } else {
                no.push(w)
            }
        }
    }
    (yes, no)
}

/// The module files `modprobe --show-depends` names (its `insmod PATH [options]` lines;
/// `builtin NAME` lines need nothing), in its order, each once.
pub fn insmods(out: &str) -> Vec<PathBuf> {
    let mut seen = BTreeSet::new();
    out.lines()
        .filter_map(|l| l.strip_prefix("insmod "))
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.starts_with('/') && seen.insert(p.to_string()))
        .map(PathBuf::from)
        .collect()
}

/// The libraries `ldd` names (`name => /path (addr)` and the loader's `/path (addr)`), and
/// the names it could not find. A static program has none.
pub fn ldd_libs(out: &str) -> (Vec<PathBuf>, Vec<String>) {
    let (mut libs, mut missing) = (Vec::new(), Vec::new());
    for l in out.lines().map(str::trim) {
        let (name, rest) = match l.split_once("=>") {
            Some((n, r)) => (n.trim(), r.trim()),
            None => ("", l),
        };
        if rest.starts_with("not found") {
            missing.push(name.to_string());
            continue;
        }
        if let Some(p) = rest.split_whitespace().next().filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    (libs, missing)
}

/// How the ramdisk is compressed; the kernel must have the matching unpacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Zstd,
    Xz,
    Gzip,
    None,
}

impl Compress {
    pub fn parse(s: &str) -> Option<Compress> {
        Some(match s {
            "zstd" => Compress::Zstd,
            "xz" => Compress::Xz,
            "gzip" => Compress::Gzip,
            "none" => Compress::None,
            _ => return None,
        })
    }

    /// The kernel option that unpacks it.
    fn option(self) -> Option<&'static str> {
        match self {
            Compress::Zstd => Some("CONFIG_RD_ZSTD"),
            Compress::Xz => Some("CONFIG_RD_XZ"),
            Compress::Gzip => Some("CONFIG_RD_GZIP"),
            Compress::None => None,
        }
    }

    /// The compressor's command line, reading the archive on stdin: same input, same bytes
    /// (one thread, no names or times stored). xz's check is the one the kernel verifies.
    /// zstd at its default level: 0.6 s for a 57 MiB archive against 3 s at -9 and 17 s at
    /// -15, for 10% more bytes (19.2 against 17.4 and 17.2 MB); unpacking costs the same.
    pub fn argv(self) -> Option<Vec<&'static str>> {
        match self {
            Compress::Zstd => Some(vec!["zstd", "-q", "-c", "-T1", "-3"]),
            Compress::Xz => Some(vec!["xz", "-q", "-c", "-T1", "--check=crc32", "-6"]),
            Compress::Gzip => Some(vec!["gzip", "-c", "-n", "-9"]),
            Compress::None => None,
        }
    }
}

/// The compression to use: the one asked for if the kernel's configuration (its
/// `/boot/config-VERSION`, when there is one) can unpack it, else zstd, xz, gzip, in that
/// order of preference; none when the kernel can unpack none of them.
pub fn compression(asked: Option<Compress>, config: Option<&str>) -> Result<Compress, String> {
    let has = |c: Compress| match (config, c.option()) {
        (_, None) | (None, _) => true,
        (Some(t), Some(o)) => t.lines().any(|l| l.trim() == format!("{o}=y")),
    };
    match asked {
        Some(c) if has(c) => Ok(c),
        Some(c) => Err(format!("this kernel cannot unpack a {c:?} ramdisk ({} is not set)", c.option().unwrap_or("?"))),
        None => Ok([Compress::Zstd, Compress::Xz, Compress::Gzip].into_iter().find(|c| has(*c)).unwrap_or(Compress::None)),
    }
}

/// The version a bzImage says it is (the setup header's `kernel_version` string), as
/// `uname -r` prints it; None for anything else.
pub fn bzimage_version(b: &[u8]) -> Option<String> {
    if b.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let at = u16::from_le_bytes(b.get(0x20e..0x210)?.try_into().ok()?) as usize + 0x200;
    let s = b.get(at..(at + 256).min(b.len()))?;
    let s = &s[..s.iter().position(|&c| c == 0)?];
    let v = std::str::from_utf8(s).ok()?.split_whitespace().next()?;
    (!v.is_empty() && v.bytes().all(|c| c.is_ascii_graphic())).then(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/drivers/ata/ahci.ko.xz: kernel/drivers/ata/libahci.ko.xz kernel/drivers/ata/libata.ko.xz
kernel/drivers/ata/libahci.ko.xz: kernel/drivers/ata/libata.ko.xz
kernel/drivers/ata/libata.ko.xz:
kernel/drivers/scsi/sd_mod.ko.xz: kernel/drivers/scsi/scsi_common.ko.xz
kernel/drivers/scsi/sd_mod_extra.ko.xz:
kernel/drivers/scsi/lpfc/lpfc.ko.xz:
kernel/drivers/hid/hid-generic.ko.xz:
kernel/drivers/usb/storage/uas.ko:
kernel/drivers/usb/storageless.ko:
updates/dkms/zfs.ko.xz: updates/dkms/spl.ko.xz
";

    #[test]
    fn portable_by_place() {
        let picked: Vec<String> = listed(DEP).into_iter().filter(|(p, _)| portable(p)).map(|(_, n)| n).collect();
        assert_eq!(picked, ["ahci", "libahci", "libata", "sd_mod", "hid_generic", "uas"]);
    }

    #[test]
    fn known_and_lacking() {
        let want: Vec<String> = ["zfs", "hid-generic", "nvme", "xhci_pci", "zfs"].map(String::from).to_vec();
        let (yes, no) = known(&want, DEP, "kernel/drivers/usb/host/xhci-pci.ko\n");
        assert_eq!(yes, ["zfs", "hid_generic", "xhci_pci"]);
        assert_eq!(no, ["nvme"]);
    }

    #[test]
    fn kmod_and_ldd_answers() {
        let out = "insmod /lib/modules/6.1/kernel/drivers/ata/libata.ko.xz \nbuiltin crc32c\ninsmod /lib/modules/6.1/kernel/drivers/ata/ahci.ko.xz mobile_lpm_policy=1\ninsmod /lib/modules/6.1/kernel/drivers/ata/libata.ko.xz\n";
        assert_eq!(
            insmods(out),
            [
                PathBuf::from("/lib/modules/6.1/kernel/drivers/ata/libata.ko.xz"),
                PathBuf::from("/lib/modules/6.1/kernel/drivers/ata/ahci.ko.xz")
            ]
        );
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibzfs.so.6 => /lib/x86_64-linux-gnu/libzfs.so.6 (0x00007f)\n\tlibfoo.so.1 => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let (libs, missing) = ldd_libs(ldd);
        assert_eq!(libs, [PathBuf::from("/lib/x86_64-linux-gnu/libzfs.so.6"), PathBuf::from("/lib64/ld-linux-x86-64.so.2")]);
        assert_eq!(missing, ["libfoo.so.1"]);
        assert_eq!(ldd_libs("\tnot a dynamic executable\n"), (vec![], vec![]));
    }

    #[test]
    fn compression_follows_the_kernel() {
        assert_eq!(compression(None, None), Ok(Compress::Zstd));
        let cfg = "# CONFIG_RD_ZSTD is not set\nCONFIG_RD_XZ=y\nCONFIG_RD_GZIP=y\n";
        assert_eq!(compression(None, Some(cfg)), Ok(Compress::Xz));
        assert_eq!(compression(Some(Compress::Gzip), Some(cfg)), Ok(Compress::Gzip));
        assert!(compression(Some(Compress::Zstd), Some(cfg)).unwrap_err().contains("CONFIG_RD_ZSTD"));
        assert_eq!(compression(None, Some("")), Ok(Compress::None));
    }

    #[test]
    fn bzimage_header() {
        let mut b = vec![0u8; 0x1000];
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x20e..0x210].copy_from_slice(&0x700u16.to_le_bytes());
        let v = b"6.12.95+deb12-amd64 (debian-kernel@lists.debian.org) #1 SMP";
        b[0x900..0x900 + v.len()].copy_from_slice(v);
        assert_eq!(bzimage_version(&b).as_deref(), Some("6.12.95+deb12-amd64"));
        b[0x20e..0x210].copy_from_slice(&0xfff0u16.to_le_bytes());
        assert_eq!(bzimage_version(&b), None);
        assert_eq!(bzimage_version(b"MZ"), None);
    }

    /// The guest kernel's image, where this host has it, says its own version.
    #[test]
    fn real_bzimage() {
        for e in std::fs::read_dir("/boot").into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(v) = name.strip_prefix("vmlinuz-") {
                assert_eq!(bzimage_version(&std::fs::read(e.path()).unwrap()).as_deref(), Some(v));
            }
        }
    }
}
