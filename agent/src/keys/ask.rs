//! Asking for a passphrase: one question, many answerers. It is published for password
//! agents (systemd's protocol: `zroam unlock` over SSH, systemd-tty-ask-password-agent,
//! Plymouth's and the console's agents), and zroam also asks on the console or through
//! Plymouth where no agent does. Every ask has a bound (`zroam.key.timeout=`); the answer
//! lives in zeroed-on-drop memory reserved once to its largest size, and is never logged.

use crate::keys::askfile::Reply;
use crate::keys::publish;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::LocalFlags;
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

/// systemd's console and Plymouth agents: when installed in a systemd initramfs they answer
/// the published question on the console and the splash, and zroam must not read the
/// console beside them.
const CONSOLE_AGENT: &[&str] =
    &["/usr/lib/systemd/system/systemd-ask-password-console.path", "/lib/systemd/system/systemd-ask-password-console.path"];
const PLYMOUTH_AGENT: &[&str] =
    &["/usr/lib/systemd/system/systemd-ask-password-plymouth.path", "/lib/systemd/system/systemd-ask-password-plymouth.path"];

/// Who asks besides the published question (which any agent may answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ways {
    /// zroam reads the console itself.
    pub console: bool,
    /// zroam runs `plymouth ask-for-password` itself.
    pub plymouth: bool,
}

/// Pure: the ways given what the image has and runs.
pub fn ways_for(plymouth_shows: bool, systemd: bool, console_agent: bool, plymouth_agent: bool) -> Ways {
    Ways {
        plymouth: plymouth_shows && !(systemd && plymouth_agent),
        // While the splash shows, the console's keys are Plymouth's.
        console: !(plymouth_shows || (systemd && console_agent)),
    }
}

fn any_exists(paths: &[&str]) -> bool {
    paths.iter().any(|p| Path::new(p).exists())
}

pub fn ways(pid1: bool) -> Ways {
    let plymouth_shows = Path::new("/run/plymouth/pid").exists() && crate::sys::modules::find_tool("plymouth").is_some();
    let systemd = !pid1 && Path::new("/run/systemd/system").exists();
    ways_for(plymouth_shows, systemd, any_exists(CONSOLE_AGENT), any_exists(PLYMOUTH_AGENT))
}

/// How a question ended.
pub enum Answer {
    /// A passphrase: where it came from (`console`, `plymouth`, `agent NAME`) and, for an
    /// agent's, the published question's token (to tell `zroam unlock` how it went).
    Typed { secret: Secret, via: String, token: Option<String> },
    /// `done()` said the key was had by other means (loaded or opened by hand).
    Elsewhere,
}

/// How often `done()` is asked while waiting (it may run `zfs get`).
const DONE_EVERY: Duration = Duration::from_secs(2);

/// Ask once, every way at once: the question is published for agents, and zroam asks on
/// the console or through Plymouth itself unless an agent does that already. The first
/// answer wins and the others are withdrawn. `timeout` zero: no limit.
pub fn ask(prompt: &str, id: &str, timeout: Duration, pid1: bool, done: &mut dyn FnMut() -> bool) -> Result<Answer, AskError> {
    ask_with(prompt, id, timeout, ways(pid1), done)
}

/// `ask`, the ways given.
pub fn ask_with(prompt: &str, id: &str, timeout: Duration, w: Ways, done: &mut dyn FnMut() -> bool) -> Result<Answer, AskError> {
    let published = match publish::Published::new(prompt, id, timeout) {
        Ok(p) => Some(p),
        Err(e) if w.console || w.plymouth => {
            log::warn!("cannot publish the passphrase question for agents ({e}); asking here only");
            None
        }
        Err(e) => return Err(AskError::Unavailable(format!("cannot publish the question for agents: {e}"))),
    };
    let mut console = if w.console || (published.is_none() && !w.plymouth) { Some(Console::open(prompt)?) } else { None };
    let mut splash = if w.plymouth { Plymouth::start(prompt) } else { None };
    let until = (!timeout.is_zero()).then(|| Instant::now() + timeout);
    let mut checked = Instant::now();
    loop {
        if checked.elapsed() >= DONE_EVERY {
            checked = Instant::now();
            if done() {
                if let Some(c) = &mut console {
                    c.say("answered elsewhere");
                }
                return Ok(Answer::Elsewhere);
            }
        }
        let left = match until {
            Some(u) => {
                let left = u.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(AskError::Timeout(timeout.as_secs()));
                }
                left
            }
            None => DONE_EVERY,
        };
        let wait = PollTimeout::try_from(left.min(DONE_EVERY).as_millis() as i32).unwrap_or(PollTimeout::MAX);
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        if let Some(p) = &published {
            fds.push(PollFd::new(p.fd(), PollFlags::POLLIN));
        }
        if let Some(c) = &console {
            fds.push(PollFd::new(c.tty.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &splash {
            fds.push(PollFd::new(s.out.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(AskError::Unavailable(format!("poll: {e}"))),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        let mut i = 0;
        if let Some(p) = &published {
            if ready[i] {
                match p.recv() {
                    Some((Reply::Password(secret), via)) => {
                        if let Some(c) = &mut console {
                            c.say(&format!("answered by {via}"));
                        }
                        return Ok(Answer::Typed { secret, via, token: Some(p.token().to_string()) });
                    }
                    Some((Reply::Cancel, via)) => return Err(AskError::Unavailable(format!("the question was cancelled by {via}"))),
                    None => {}
                }
            }
            i += 1;
        }
        if let Some(c) = &mut console {
            if ready[i] {
                if let Some(secret) = c.read()? {
                    return Ok(Answer::Typed { secret, via: "console".into(), token: None });
                }
            }
            i += 1;
        }
        if let Some(s) = &mut splash {
            if ready[i] {
                match s.read() {
                    Ok(None) => {}
                    Ok(Some(secret)) => return Ok(Answer::Typed { secret, via: "plymouth".into(), token: None }),
                    Err(e) => {
                        log::warn!("{e}");
                        splash = None;
                        if published.is_none() && console.is_none() {
                            return Err(AskError::Unavailable(e));
                        }
                    }
                }
            }
        }
    }
}

/// `plymouth ask-for-password`, killed when another way answers first.
struct Plymouth {
    child: std::process::Child,
    out: std::process::ChildStdout,
    got: Secret,
}

impl Plymouth {
    fn start(prompt: &str) -> Option<Plymouth> {
        let exe = crate::sys::modules::find_tool("plymouth")?;
        let mut child = std::process::Command::new(exe)
            .arg("ask-for-password")
            .arg(format!("--prompt={prompt}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| log::warn!("cannot run plymouth: {e}"))
            .ok()?;
        let out = child.stdout.take()?;
        Some(Plymouth { child, out, got: Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE + 1)) })
    }

    /// Read what is there; Some at the end of the answer, Err when Plymouth gave none.
    fn read(&mut self) -> Result<Option<Secret>, String> {
        let mut buf = Zeroizing::new([0u8; 256]);
        let n = self.out.read(&mut buf[..]).map_err(|e| format!("plymouth: {e}"))?;
        if n > 0 {
            let room = (MAX_PASSPHRASE + 1).saturating_sub(self.got.len());
            self.got.extend_from_slice(&buf[..n.min(room)]);
            return Ok(None);
        }
        let status = self.child.wait().map_err(|e| format!("plymouth: {e}"))?;
        if !status.success() {
            return Err(format!("plymouth ask-for-password gave no answer ({status})"));
        }
        let mut v = std::mem::replace(&mut self.got, Zeroizing::new(Vec::new()));
        while v.last().is_some_and(|c| *c == b'\n' || *c == b'\r') {
            v.pop();
        }
        Ok(Some(v))
    }
}

impl Drop for Plymouth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The console with echo off while asked; echo is restored on drop (also on errors).
struct Console {
    line: Secret,
    tty: std::fs::File,
    _mode: Option<crate::sys::tty::Mode>,
}

impl Console {
    fn open(prompt: &str) -> Result<Console, AskError> {
        let mut tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
            .map_err(|e| AskError::Unavailable(format!("/dev/console: {e}")))?;
        let mode = crate::sys::tty::Mode::set(&tty, |t| {
            t.local_flags.remove(LocalFlags::ECHO);
            t.local_flags.insert(LocalFlags::ICANON);
        });
        if let Some(m) = &mode {
            m.drop_typeahead();
        }
        let _ = write!(tty, "{prompt}: ");
        let _ = tty.flush();
        // Reserved to its largest size once: a growing buffer would leave copies behind.
        Ok(Console { line: Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE)), tty, _mode: mode })
    }

    /// Read what was typed; Some at the end of the line.
    fn read(&mut self) -> Result<Option<Secret>, AskError> {
        let mut buf = Zeroizing::new([0u8; 256]);
        let n = self.tty.read(&mut buf[..]).map_err(|e| AskError::Unavailable(format!("read /dev/console: {e}")))?;
        if n == 0 {
            return Err(AskError::Unavailable("the console closed".into()));
        }
        for &c in &buf[..n] {
            if c == b'\n' || c == b'\r' {
                return Ok(Some(std::mem::replace(&mut self.line, Zeroizing::new(Vec::new()))));
            }
            if self.line.len() < MAX_PASSPHRASE {
                self.line.push(c);
            }
        }
        Ok(None)
    }

    /// End the prompt's line with a word on how it ended.
    fn say(&mut self, what: &str) {
        let _ = write!(self.tty, "({what})");
    }
}

impl Drop for Console {
    /// Ends the prompt's line; the mode guard then puts echo back.
    fn drop(&mut self) {
        let _ = writeln!(self.tty);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_asks_besides_the_agents() {
        // zroam's own ramdisk, initramfs-tools, mkinitcpio: the console, or the splash.
        assert_eq!(ways_for(false, false, false, false), Ways { console: true, plymouth: false });
        assert_eq!(ways_for(true, false, false, false), Ways { console: false, plymouth: true });
        // A systemd initramfs with its console agent: the agent asks there, not zroam.
        assert_eq!(ways_for(false, true, true, false), Ways { console: false, plymouth: false });
        // ... without one: zroam reads the console.
        assert_eq!(ways_for(false, true, false, true), Ways { console: true, plymouth: false });
        // The splash with Plymouth's agent: the agent; without it: zroam asks Plymouth.
        assert_eq!(ways_for(true, true, true, true), Ways { console: false, plymouth: false });
        assert_eq!(ways_for(true, true, true, false), Ways { console: false, plymouth: true });
    }
}
