//! Asking for a passphrase: through Plymouth while it shows the boot splash, through
//! systemd's password agents in a systemd initramfs, else on the console itself with echo
//! off. Every ask has a bound (`zroam.key.timeout=`); the answer lives in zeroed-on-drop
//! memory and is never logged.

use nix::sys::termios::{self, LocalFlags, SetArg};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

pub type Secret = Zeroizing<Vec<u8>>;

/// Longest passphrase read (cryptsetup's own interactive limit is 512 characters).
pub const MAX_PASSPHRASE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error("no passphrase was typed within {0} s")]
    Timeout(u64),
    #[error("cannot ask for a passphrase: {0}")]
    Unavailable(String),
}

/// systemd's console password agent: without an agent to answer, systemd-ask-password
/// would wait out its timeout, so zroam asks on the console itself.
const CONSOLE_AGENT: &str = "/usr/lib/systemd/system/systemd-ask-password-console.path";

/// How the passphrase is asked for, as the report records it.
pub fn method(pid1: bool) -> &'static str {
    if Path::new("/run/plymouth/pid").exists() && crate::sys::modules::find_tool("plymouth").is_some() {
        "plymouth"
    } else if !pid1
        && Path::new("/run/systemd/system").exists()
        && crate::sys::modules::find_tool("systemd-ask-password").is_some()
        && Path::new(CONSOLE_AGENT).exists()
    {
        "systemd-ask-password"
    } else {
        "console"
    }
}

/// Ask once. `timeout` zero: no limit.
pub fn ask(prompt: &str, timeout: Duration, pid1: bool) -> Result<Secret, AskError> {
    match method(pid1) {
        "plymouth" => helper("plymouth", &["ask-for-password".into(), format!("--prompt={prompt}")], timeout),
        "systemd-ask-password" => {
            let t = format!("--timeout={}", timeout.as_secs());
            helper("systemd-ask-password", &["-n".into(), t, prompt.into()], timeout)
        }
        _ => console(prompt, timeout),
    }
}

fn helper(prog: &str, args: &[String], timeout: Duration) -> Result<Secret, AskError> {
    // No limit means a long one for the helper's own bound: a day.
    let bound = if timeout.is_zero() { Duration::from_secs(86_400) } else { timeout + Duration::from_secs(5) };
    let out = crate::sys::run::run(prog, args, bound);
    if out.timed_out {
        return Err(AskError::Timeout(timeout.as_secs()));
    }
    if !out.ok() {
        return Err(AskError::Unavailable(format!("{prog}: {}", out.said())));
    }
    let mut v = Zeroizing::new(out.stdout.into_bytes());
    while v.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
        v.pop();
    }
    Ok(v)
}

/// Echo off, ask, read one line, echo back on (also when the read fails).
fn console(prompt: &str, timeout: Duration) -> Result<Secret, AskError> {
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
        .map_err(|e| AskError::Unavailable(format!("/dev/console: {e}")))?;
    let saved = termios::tcgetattr(tty.as_fd()).ok();
    if let Some(t) = &saved {
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ICANON);
        let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, &quiet);
        // What was typed before the question is not its answer.
        let _ = termios::tcflush(tty.as_fd(), termios::FlushArg::TCIFLUSH);
    }
    let _ = write!(tty, "{prompt}: ");
    let _ = tty.flush();
    let r = read_line(&mut tty, timeout);
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(tty.as_fd(), SetArg::TCSANOW, t);
    }
    let _ = writeln!(tty);
    r
}

fn read_line(tty: &mut std::fs::File, timeout: Duration) -> Result<Secret, AskError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let until = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut line: Secret = Zeroizing::new(Vec::with_capacity(128));
    let mut buf = Zeroizing::new([0u8; 256]);
    loop {
        let wait = match until {
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(AskError::Timeout(timeout.as_secs()));
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(AskError::Unavailable(format!("poll /dev/console: {e}"))),
        }
        let n = tty.read(&mut buf[..]).map_err(|e| AskError::Unavailable(format!("read /dev/console: {e}")))?;
        if n == 0 {
            return Err(AskError::Unavailable("the console closed".into()));
        }
        for &c in &buf[..n] {
            if c == b'\n' || c == b'\r' {
                return Ok(line);
            }
            if line.len() < MAX_PASSPHRASE {
                line.push(c);
            }
        }
    }
}
