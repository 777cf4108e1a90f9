//! The hibernation guard's effects, just before the import: resume the image, restore a
//! discarded image's swap signature, or make the import and mounts read-only. The decision
//! is `decide::resume`'s (made with the plan).

use super::Boot;
use crate::decide::import;
use crate::decide::plan::Import;
use crate::decide::resume::{Action, Guard};
use crate::ondisk::swap;
use std::os::unix::fs::FileExt;

impl Boot {
    /// Applies the guard, records it, and makes `import` (and the mounts) read-only when
    /// it says so. A resume that works never returns.
    pub(super) fn resume_guard(&mut self, guard: &Guard, import: &mut Import) {
        let mut g = guard.clone();
        if let Action::Resume { device, major_minor, .. } = &g.action {
            log::info!("resuming the hibernation image on {device} ({major_minor})");
            self.record.resume = serde_json::to_value(&g).ok();
            self.keep_record();
            // The kernel restores the image from inside this write; returning means it did not.
            let err = match std::fs::write("/sys/power/resume", major_minor) {
                Ok(()) => "the kernel returned without resuming".to_string(),
                Err(e) => e.to_string(),
            };
            g = g.resume_failed(&err);
            self.warn(g.done.last().cloned().unwrap_or_default());
        }
        match g.action.clone() {
            Action::Nothing | Action::Resume { .. } => {}
            Action::Discard { device, restore: false } => self.warn(format!(
                "hibernation image on {device} dropped (zroam.resume=discard) but left on the disk: resume= does not name \
                 {device}, so zroam does not write to it; never resume it now, and mkswap it"
            )),
            Action::Discard { device, restore: true } => match restore_plain(&device) {
                Ok(wrote) => {
                    log::info!("hibernation image on {device} dropped (zroam.resume=discard): it is plain swap again");
                    g.done.push(format!("{} the plain swap signature on {device}", if wrote { "wrote" } else { "found" }));
                }
                Err(e) => {
                    // Left in place, a later resume would write its old state over the pool.
                    g.done.push(format!("cannot restore the plain swap signature on {device}: {e}"));
                    g.action = Action::ReadOnly {
                        why: format!("the hibernation image on {device} could not be dropped ({e})"),
                        hint: format!("mkswap {device} from a shell (zroam.shell=1), then boot again"),
                    };
                }
            },
            Action::ReadOnly { .. } => {}
        }
        if let Action::ReadOnly { why, hint } = &g.action {
            self.warn(format!("importing read-only: {why}; {hint}"));
            import::make_read_only(&mut import.argv);
            // The mounts and the one-shot next boot follow zroam.readonly.
            self.opts.cmdline.readonly = true;
            g.done.push("imported and mounted read-only".into());
        }
        if g.action != Action::Nothing {
            self.record.resume = serde_json::to_value(&g).ok();
        }
    }
}

/// Put plain swap's signature back over a hibernation signature (what the kernel does
/// once it has read an image), only where a hibernation signature still is. False: it
/// was plain swap already.
fn restore_plain(device: &str) -> std::io::Result<bool> {
    let f = std::fs::OpenOptions::new().read(true).write(true).open(device)?;
    let mut page = vec![0u8; swap::PAGE];
    f.read_exact_at(&mut page, 0)?;
    match swap::parse(&page) {
        Some(s) if s.hibernation.is_some() => {}
        Some(_) => return Ok(false),
        None => return Err(std::io::Error::other("not a swap area any more")),
    }
    f.write_all_at(swap::PLAIN, swap::SIG_OFFSET as u64)?;
    f.sync_all().map(|()| true)
}
