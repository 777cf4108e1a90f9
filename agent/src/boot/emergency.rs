//! The emergency shell: what went wrong stays on screen, then a shell on the console (when
//! the ramdisk has one) so the user can look, fix, and exit to try again.

use crate::boot::failure::Failure;
use std::os::unix::process::CommandExt;
use std::process::Command;

const SHELLS: &[&str] = &["/bin/sh", "/usr/bin/sh", "/bin/busybox"];

/// The failure as lines for the console.
/// `report` is where the full report was written.
pub fn explain(f: &Failure, report: &str) -> String {
    let mut s = format!("zroam: cannot boot ({}): {}\n", f.stage, f.message);
    for c in &f.candidates {
        s.push_str(&format!("zroam:   candidate: {}\n", crate::decide::choose::describe(c)));
    }
    s.push_str(&format!("zroam: to fix: {}\n", f.hint));
    s.push_str(&format!("zroam: the full report is {} (zroam status)\n", report));
    s
}

/// Run an interactive shell on the console and wait for it. Returns when it exits.
pub fn shell(banner: &str) {
    eprintln!("zroam: {banner}");
    let Some(sh) = SHELLS.iter().find(|p| std::path::Path::new(p).exists()) else {
        eprintln!("zroam: this ramdisk has no shell; nothing more can be done here");
        return;
    };
    let mut cmd = Command::new(sh);
    if sh.ends_with("busybox") {
        cmd.arg("sh");
    }
    cmd.arg("-i").env("PS1", "zroam# ").env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::unistd::setsid();
            // Make the console our controlling terminal so ^C works in the shell.
            let _ = libc::ioctl(0, libc::TIOCSCTTY, 1);
            Ok(())
        });
    }
    match cmd.spawn() {
        Ok(mut c) => {
            let pid = c.id() as i32;
            // As PID 1 we also reap whatever the shell leaves behind.
            loop {
                match nix::sys::wait::waitpid(None, None) {
                    Ok(s) if s.pid() == Some(nix::unistd::Pid::from_raw(pid)) => break,
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => {
                        let _ = c.wait();
                        break;
                    }
                }
            }
        }
        Err(e) => eprintln!("zroam: cannot start {sh}: {e}"),
    }
}
