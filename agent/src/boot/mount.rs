//! Mount the planned datasets at the sysroot: the BE first (fatal if it fails), then its
//! children (warnings).

use super::failure::{fail, Failure};
use super::record::MountRecord;
use super::stage::Stage;
use super::Boot;
use crate::decide::be;
use nix::mount::{mount, MsFlags};

impl Boot {
    pub(super) fn mount_all(&mut self, plan: &be::BePlan) -> Result<(), Failure> {
        let ro = self.opts.cmdline.readonly;
        let flags = if ro { MsFlags::MS_RDONLY } else { MsFlags::empty() };
        for (i, m) in plan.mounts.iter().enumerate() {
            let path = match m.target.trim_start_matches('/') {
                "" => self.opts.sysroot.clone(),
                rel => self.opts.sysroot.join(rel),
            };
            if let Err(e) = std::fs::create_dir_all(&path) {
                if i == 0 {
                    return Err(fail(Stage::Mount, format!("cannot create {}: {e}", path.display()), "root= a writable location"));
                }
                self.warn(format!("{} not mounted: cannot create {}: {e}", m.dataset, path.display()));
                continue;
            }
            let r = mount(Some(m.dataset.as_str()), &path, Some("zfs"), flags, Some("zfsutil"));
            match r {
                Ok(()) => {
                    log::info!("mounted {} on {}{}", m.dataset, path.display(), if ro { " (read-only)" } else { "" });
                    self.record.mounts.push(MountRecord { mount: m.clone(), path: path.display().to_string(), readonly: ro });
                }
                Err(e) if i == 0 => {
                    return Err(fail(
                        Stage::Mount,
                        format!("mount {} on {}: {e}", m.dataset, path.display()),
                        "root=ZFS=POOL/DATASET names another BE",
                    ));
                }
                Err(e) => self.warn(format!("{} not mounted on {}: {e}", m.dataset, path.display())),
            }
        }
        Ok(())
    }
}
