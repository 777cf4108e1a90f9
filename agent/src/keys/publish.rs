//! A question published for password agents (the effectful half of `askfile`): the answer
//! socket, the ask file beside it, and both removed when the question is withdrawn (drop).
//! Only root may answer: each datagram's sender is checked with SCM_CREDENTIALS.

use crate::keys::ask::MAX_PASSPHRASE;
use crate::keys::askfile::{self, Question, Reply, DIR};
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials};
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use zeroize::Zeroizing;

/// Where zroam says whether an answer an agent sent opened anything, for `zroam unlock`
/// (systemd's protocol has no reply to the agent).
pub const RESULTS: &str = "/run/zroam/answers";

pub struct Published {
    token: String,
    file: PathBuf,
    socket_path: PathBuf,
    sock: UnixDatagram,
}

/// CLOCK_MONOTONIC in microseconds, the clock of the ask file's NotAfter.
pub fn monotonic_us() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes only the timespec it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

static SERIAL: AtomicU32 = AtomicU32::new(0);

impl Published {
    /// Publish `message` as question `id`; it lapses after `timeout` (zero: never).
    pub fn new(message: &str, id: &str, timeout: Duration) -> std::io::Result<Published> {
        Self::new_in(Path::new(DIR), message, id, timeout)
    }

    fn new_in(dir: &Path, message: &str, id: &str, timeout: Duration) -> std::io::Result<Published> {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        let token = format!("zroam{}.{}.{}", std::process::id(), monotonic_us(), SERIAL.fetch_add(1, Ordering::Relaxed));
        let socket_path = dir.join(format!("sck.{token}"));
        let _ = std::fs::remove_file(&socket_path);
        let sock = UnixDatagram::bind(&socket_path)?;
        // Agents run as root; the socket is theirs alone.
        std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))?;
        setsockopt(&sock, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
        sock.set_nonblocking(true)?;
        let q = Question {
            pid: std::process::id(),
            socket: socket_path.display().to_string(),
            not_after_us: if timeout.is_zero() { 0 } else { monotonic_us() + timeout.as_micros() as u64 },
            message: message.into(),
            id: id.into(),
            echo: false,
        };
        // Agents watch the directory for files closed or moved in: write aside, then rename,
        // so no agent reads half a file.
        let file = dir.join(format!("ask.{token}"));
        let tmp = dir.join(format!(".ask.{token}.tmp"));
        let p = Published { token, file, socket_path, sock };
        std::fs::write(&tmp, q.render())?;
        std::fs::rename(&tmp, &p.file)?;
        Ok(p)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// One datagram, if one is waiting: the reply and the process that sent it. Datagrams
    /// from anyone but root, and ones that are no reply, are dropped.
    pub fn recv(&self) -> Option<(Reply, String)> {
        let mut buf = Zeroizing::new(vec![0u8; MAX_PASSPHRASE + 2]);
        let mut cmsg = nix::cmsg_space!(UnixCredentials);
        let (n, creds) = {
            let mut iov = [IoSliceMut::new(&mut buf[..])];
            let m = recvmsg::<UnixAddr>(self.sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_TRUNC).ok()?;
            let creds = m.cmsgs().ok()?.find_map(|c| match c {
                ControlMessageOwned::ScmCredentials(u) => Some(u),
                _ => None,
            });
            (m.bytes, creds)
        };
        let Some(creds) = creds.filter(|c| c.uid() == 0) else {
            log::warn!("an answer to the passphrase question came from a process not run by root; ignored");
            return None;
        };
        if n > buf.len() {
            log::warn!("an answer to the passphrase question was longer than {MAX_PASSPHRASE} bytes; ignored");
            return None;
        }
        let reply = askfile::parse_reply(&buf[..n])?;
        // The sender's name, while it still exists: an agent that sends and exits at once
        // may be gone (and reaped) before zroam is scheduled; then its pid is all there is.
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", creds.pid())).unwrap_or_default();
        Some((reply, agent_name(comm.trim(), creds.pid())))
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// How the report names the process that answered: its command name, else (it has exited)
/// its pid. Pure.
pub fn agent_name(comm: &str, pid: i32) -> String {
    let comm = askfile::one_line(comm);
    if comm.is_empty() {
        format!("agent pid {pid}, gone")
    } else {
        format!("agent {comm}")
    }
}

/// Say whether the answer to question `token` opened anything (best effort: only
/// `zroam unlock` reads it).
pub fn tell(token: &str, accepted: bool) {
    let _ = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(RESULTS);
    let _ = std::fs::write(Path::new(RESULTS).join(token), if accepted { "accepted\n" } else { "wrong\n" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_is_named_by_its_command_or_else_its_pid() {
        assert_eq!(agent_name("systemd-tty-ask", 42), "agent systemd-tty-ask");
        assert_eq!(agent_name("", 42), "agent pid 42, gone");
    }

    #[test]
    fn a_question_is_published_answered_and_withdrawn() {
        let dir = std::env::temp_dir().join(format!("zroam-ask-{}", std::process::id()));
        let p = Published::new_in(&dir, "zroam: passphrase for rpool", "zroam:zfs:rpool", Duration::from_secs(60)).unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.iter().filter(|n| n.starts_with("ask.")).count(), 1, "{names:?}");
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
        let q = Question::parse(&std::fs::read_to_string(&p.file).unwrap()).unwrap();
        assert_eq!((q.pid, q.id.as_str()), (std::process::id(), "zroam:zfs:rpool"));
        assert!(q.not_after_us > monotonic_us());
        // Nothing yet; then an agent's answer (the tests run as root in the lab's CI; as
        // another user the sender check drops it, which is what this asserts then).
        assert!(p.recv().is_none());
        let agent = UnixDatagram::unbound().unwrap();
        agent.send_to(&askfile::reply_for(b"pw"), &q.socket).unwrap();
        let got = p.recv();
        if nix::unistd::Uid::effective().is_root() {
            let (reply, who) = got.expect("root's answer is taken");
            assert_eq!(reply, Reply::Password(Zeroizing::new(b"pw".to_vec())));
            assert!(who.starts_with("agent "), "{who}");
        } else {
            assert!(got.is_none());
        }
        agent.send_to(b"nonsense", &q.socket).unwrap();
        assert!(p.recv().is_none());
        drop(p);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "withdrawn: file and socket gone");
        let _ = std::fs::remove_dir(&dir);
    }
}
