//! Mount the planned datasets at the sysroot: the BE first (fatal if it fails), then its
//! children and the BE's `ZFS_INITRD_ADDITIONAL_DATASETS` (warnings). Every mountpoint is
//! resolved inside the sysroot (`sys::confine`): the BE's own symlinks cannot send a
//! mount elsewhere in the ramdisk.

use super::failure::{fail, Failure};
use super::record::MountRecord;
use super::stage::Stage;
use super::Boot;
use crate::decide::be;
use crate::sys::confine;
use nix::mount::{mount, MsFlags};

/// The BE's `/etc/default/zfs` is a small shell fragment; more is not read.
const DEFAULTS_MAX: u64 = 64 * 1024;

/// `rootflags=`: the flags the kernel takes as mount(2) flags, the rest as data for zfs.
pub fn root_flags(opts: &str) -> (MsFlags, MsFlags, Vec<&str>) {
    let (mut set, mut clear, mut data) = (MsFlags::empty(), MsFlags::empty(), Vec::new());
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        let (on, f) = match o {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "atime" => (false, MsFlags::MS_NOATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (true, MsFlags::MS_STRICTATIME),
            "nodiratime" => (true, MsFlags::MS_NODIRATIME),
            "nodev" => (true, MsFlags::MS_NODEV),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (true, MsFlags::MS_DIRSYNC),
            _ => {
                data.push(o);
                continue;
            }
        };
        if on {
            set |= f;
        } else {
            clear |= f;
        }
    }
    (set, clear, data)
}

impl Boot {
    pub(super) fn mount_all(&mut self, plan: &be::BePlan, ds: &[be::Dataset]) -> Result<(), Failure> {
        for (i, m) in plan.mounts.iter().enumerate() {
            self.mount_one(m, i == 0)?;
        }
        // The stock initramfs-tools script's extra datasets, named by the BE itself.
        let defaults = confine::resolve(&self.opts.sysroot, "/etc/default/zfs").ok().filter(|(_, there)| *there);
        let text = defaults.and_then(|(p, _)| {
            use std::io::Read;
            let mut s = String::new();
            std::fs::File::open(p).ok()?.take(DEFAULTS_MAX).read_to_string(&mut s).ok()?;
            Some(s)
        });
        let names = text.as_deref().map(be::additional_datasets).unwrap_or_default();
        if !names.is_empty() {
            let (extra, warnings) = be::extra_mounts(&names, ds, &plan.mounts);
            for w in warnings {
                self.warn(w);
            }
            for m in &extra {
                self.mount_one(m, false)?;
            }
        }
        Ok(())
    }

    fn mount_one(&mut self, m: &be::Mount, is_root: bool) -> Result<(), Failure> {
        let cmd = &self.opts.cmdline;
        let mut flags = if cmd.readonly { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        let mut data = vec!["zfsutil"];
        let rootflags = cmd.rootflags.clone().unwrap_or_default();
        if is_root {
            let (set, clear, extra) = root_flags(&rootflags);
            flags = (flags | set) & !clear;
            if cmd.readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            data.extend(extra);
        }
        let ro = flags.contains(MsFlags::MS_RDONLY);
        let made = if is_root {
            std::fs::create_dir_all(&self.opts.sysroot).map(|_| self.opts.sysroot.clone())
        } else {
            confine::make_dir(&self.opts.sysroot, &m.target)
        };
        let path = match made {
            Ok(p) => p,
            Err(e) if is_root => {
                return Err(fail(Stage::Mount, format!("cannot create {}: {e}", self.opts.sysroot.display()), "root= a writable location"));
            }
            Err(e) => {
                self.warn(format!("{} not mounted: cannot make {} inside the root: {e}", m.dataset, m.target));
                return Ok(());
            }
        };
        let data = data.join(",");
        match mount(Some(m.dataset.as_str()), &path, Some("zfs"), flags, Some(data.as_str())) {
            Ok(()) => {
                log::info!("mounted {} on {}{}", m.dataset, path.display(), if ro { " (read-only)" } else { "" });
                self.record.mounts.push(MountRecord { mount: m.clone(), path: path.display().to_string(), readonly: ro });
                Ok(())
            }
            Err(e) if is_root => Err(fail(
                Stage::Mount,
                format!("mount {} on {} (options {data}): {e}", m.dataset, path.display()),
                "root=ZFS=POOL/DATASET names another BE; rootflags= sets other options",
            )),
            Err(e) => {
                self.warn(format!("{} not mounted on {}: {e}", m.dataset, path.display()));
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootflags_split_into_flags_and_data() {
        let (set, clear, data) = root_flags("noatime,rw,xattr,,nodev,context=x");
        assert_eq!(set, MsFlags::MS_NOATIME | MsFlags::MS_NODEV);
        assert_eq!(clear, MsFlags::MS_RDONLY);
        assert_eq!(data, ["xattr", "context=x"]);
    }
}
