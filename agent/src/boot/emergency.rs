//! The emergency shell: what went wrong stays on screen, then a shell on the console (when
//! the ramdisk has one) so the user can look, fix, and exit to try again.

use crate::boot::failure::Failure;
use crate::decide::conf::{self, ShellLock};
use std::os::unix::process::CommandExt;
use std::path::Path;
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

/// Where sulogin may be in a ramdisk (util-linux's, or busybox's applet).
const SULOGIN: &[&str] = &["/sbin/sulogin", "/usr/sbin/sulogin", "/bin/sulogin", "/usr/bin/sulogin"];

/// Why a shell is wanted: a failed boot (as PID 1, with nothing else to do), or
/// `zroam.shell=1` before the switch (the boot goes on without it when the shell is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    Failure,
    Asked,
}

/// The emergency shell as the ramdisk's lock allows (`decide::conf`); the kernel command
/// line has no say. Returns when the shell exits; a failure with the shell off never does.
pub fn shell(banner: &str, why: Why) {
    let conf = conf::load(Path::new(conf::PATH));
    for w in &conf.warnings {
        eprintln!("zroam: {w}");
    }
    let lock = match conf.shell {
        ShellLock::Password => {
            let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
            match SULOGIN.iter().find(|p| Path::new(p).exists()) {
                Some(s) if conf::root_has_password(&shadow) => Some(*s),
                Some(_) => {
                    eprintln!("zroam: shell=password, but this ramdisk holds no root password to check: no shell");
                    return locked_out(why);
                }
                None => {
                    eprintln!("zroam: shell=password, but this ramdisk has no sulogin: no shell");
                    return locked_out(why);
                }
            }
        }
        ShellLock::Off => {
            eprintln!("zroam: the emergency shell is off (zroam.conf shell=off)");
            return locked_out(why);
        }
        ShellLock::Open => None,
    };
    eprintln!("zroam: {banner}");
    if let Some(sulogin) = lock {
        // sulogin asks for root's password (refusing wrong ones) and runs root's shell;
        // Control-D leaves it, and zroam goes on as after a shell.
        eprintln!("zroam: the shell is locked (zroam.conf shell=password): root's password opens it");
        let mut cmd = Command::new(sulogin);
        cmd.env("PS1", "zroam# ");
        return run_on_console(cmd, sulogin);
    }
    let Some(sh) = SHELLS.iter().find(|p| Path::new(p).exists()) else {
        eprintln!("zroam: this ramdisk has no shell; nothing more can be done here");
        return;
    };
    let mut cmd = Command::new(sh);
    if sh.ends_with("busybox") {
        cmd.arg("sh");
    }
    cmd.arg("-i").env("PS1", "zroam# ");
    run_on_console(cmd, sh);
}

/// shell=off: after a failure the report stays on the console and nothing more happens
/// until the machine is reset (as PID 1, zroam must not exit); asked for, the boot goes on.
fn locked_out(why: Why) {
    if why == Why::Asked {
        eprintln!("zroam: zroam.shell=1 ignored: the emergency shell is locked (zroam.conf)");
        return;
    }
    eprintln!("zroam: no emergency shell is opened (zroam.conf); reset or power off the machine");
    loop {
        // Reap whatever is left; nothing is started here.
        match nix::sys::wait::waitpid(None, None) {
            Ok(_) => {}
            Err(_) => std::thread::sleep(std::time::Duration::from_secs(3600)),
        }
    }
}

/// Run `cmd` on the console as a session leader with the console as its terminal, and wait
/// for it, reaping whatever else exits meanwhile (as PID 1).
fn run_on_console(mut cmd: Command, sh: &str) {
    cmd.env("PATH", crate::boot::setup::PATH);
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
