//! systemd's password-agent protocol, the pure half: the ask file a question is published
//! as, reading one back (for `zroam unlock`), and the answer datagram. Described in
//! systemd's "Password Agents" document: an `ask.*` file in `/run/systemd/ask-password/`
//! names a datagram socket; an agent sends `+PASSWORD` (or `-` to cancel) to it.

use crate::keys::ask::{Secret, MAX_PASSPHRASE};
use zeroize::Zeroizing;

/// Where questions are published; every agent (systemd's, Plymouth's, `zroam unlock`) looks
/// here.
pub const DIR: &str = "/run/systemd/ask-password";

/// Ask files larger than this are not read (a real one is a few hundred bytes).
pub const MAX_ASK_FILE: usize = 16 * 1024;

/// One published question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The asking process (agents ignore questions whose process is gone).
    pub pid: u32,
    /// The datagram socket the answer goes to.
    pub socket: String,
    /// CLOCK_MONOTONIC microseconds after which the question is void; 0: never.
    pub not_after_us: u64,
    pub message: String,
    /// What is asked for, for agents that answer by identity (`zroam:luks:UUID`,
    /// `zroam:zfs:ROOT`).
    pub id: String,
    pub echo: bool,
}

/// One line of printable text: a LUKS UUID or a dataset name comes from a disk, and a
/// newline in it would end the ask file's line and add keys of the disk's choosing.
pub fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).take(512).collect()
}

impl Question {
    /// The ask file's text.
    pub fn render(&self) -> String {
        format!(
            "[Ask]\nPID={}\nSocket={}\nAcceptCached=0\nEcho={}\nNotAfter={}\nMessage={}\nIcon=drive-harddisk\nId={}\n",
            self.pid,
            one_line(&self.socket),
            u8::from(self.echo),
            self.not_after_us,
            one_line(&self.message),
            one_line(&self.id)
        )
    }

    /// Read an ask file back. None: not one (no `[Ask]` section, no PID or socket).
    pub fn parse(text: &str) -> Option<Question> {
        let mut in_ask = false;
        let (mut pid, mut socket, mut not_after, mut message, mut id, mut echo) = (None, None, 0, String::new(), String::new(), false);
        for line in text.lines().take(256) {
            let line = line.trim();
            if line.starts_with('[') {
                in_ask = line == "[Ask]";
                continue;
            }
            let Some((k, v)) = line.split_once('=').filter(|_| in_ask) else { continue };
            match k.trim() {
                "PID" => pid = v.trim().parse().ok(),
                "Socket" => socket = Some(v.trim().to_string()),
                "NotAfter" => not_after = v.trim().parse().unwrap_or(0),
                "Message" => message = one_line(v),
                "Id" => id = one_line(v.trim()),
                "Echo" => echo = matches!(v.trim(), "1" | "yes" | "true"),
                _ => {}
            }
        }
        Some(Question { pid: pid?, socket: socket.filter(|s| s.starts_with('/'))?, not_after_us: not_after, message, id, echo })
    }

    /// Has the question run out at monotonic time `now_us`?
    pub fn expired(&self, now_us: u64) -> bool {
        self.not_after_us != 0 && now_us > self.not_after_us
    }
}

/// What an agent sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Password(Secret),
    /// The user declined (`-`), e.g. pressed Escape in Plymouth.
    Cancel,
}

/// Read an answer datagram. None: not one (empty, another first byte, too long). The copy
/// is made into memory reserved to its final size, so nothing is left behind unzeroed.
pub fn parse_reply(datagram: &[u8]) -> Option<Reply> {
    match datagram.split_first() {
        Some((b'+', rest)) if rest.len() <= MAX_PASSPHRASE => {
            // An agent may send several NUL-separated passwords (cached ones); the first is
            // the one typed.
            let first = rest.split(|c| *c == 0).next().unwrap_or_default();
            let mut v = Zeroizing::new(Vec::with_capacity(first.len()));
            v.extend_from_slice(first);
            Some(Reply::Password(v))
        }
        Some((b'-', _)) => Some(Reply::Cancel),
        _ => None,
    }
}

/// The datagram an agent sends for `pass`, in memory zeroed on drop.
pub fn reply_for(pass: &[u8]) -> Secret {
    let mut v = Zeroizing::new(Vec::with_capacity(pass.len() + 1));
    v.push(b'+');
    v.extend_from_slice(pass);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q() -> Question {
        Question {
            pid: 42,
            socket: "/run/systemd/ask-password/sck.1f".into(),
            not_after_us: 9_000_000,
            message: "zroam: passphrase for /dev/vda2 (LUKS2 0b1e)".into(),
            id: "zroam:luks:0b1e".into(),
            echo: false,
        }
    }

    #[test]
    fn an_ask_file_reads_back() {
        let text = q().render();
        assert!(text.starts_with("[Ask]\nPID=42\nSocket=/run/systemd/ask-password/sck.1f\n"), "{text}");
        assert_eq!(Question::parse(&text), Some(q()));
        assert!(!q().expired(9_000_000) && q().expired(9_000_001));
        assert!(!Question { not_after_us: 0, ..q() }.expired(u64::MAX));
    }

    #[test]
    fn a_name_from_a_disk_cannot_add_lines() {
        let evil = Question { message: "rpool\nSocket=/tmp/x".into(), id: "a\r\nPID=1".into(), ..q() };
        let back = Question::parse(&evil.render()).unwrap();
        assert_eq!(back.socket, q().socket);
        assert_eq!(back.pid, 42);
        assert_eq!(back.message, "rpool?Socket=/tmp/x");
    }

    #[test]
    fn what_is_not_a_question() {
        assert_eq!(Question::parse(""), None);
        assert_eq!(Question::parse("[Other]\nPID=1\nSocket=/s\n"), None);
        assert_eq!(Question::parse("[Ask]\nSocket=/s\n"), None, "no PID");
        assert_eq!(Question::parse("[Ask]\nPID=1\nSocket=relative\n"), None);
        // systemd's own files carry keys zroam does not use.
        let sd = "[Ask]\nPID=7\nSocket=/run/systemd/ask-password/sck.2\nAcceptCached=1\nEcho=0\nNotAfter=0\nSilent=0\nMessage=Please enter passphrase for disk root:\nId=cryptsetup:/dev/vda2\n";
        let got = Question::parse(sd).unwrap();
        assert_eq!((got.pid, got.id.as_str(), got.not_after_us), (7, "cryptsetup:/dev/vda2", 0));
    }

    #[test]
    fn replies() {
        assert_eq!(parse_reply(b"+secret"), Some(Reply::Password(Zeroizing::new(b"secret".to_vec()))));
        assert_eq!(parse_reply(b"+"), Some(Reply::Password(Zeroizing::new(Vec::new()))));
        assert_eq!(parse_reply(b"+first\0cached"), Some(Reply::Password(Zeroizing::new(b"first".to_vec()))));
        assert_eq!(parse_reply(b"-"), Some(Reply::Cancel));
        assert_eq!(parse_reply(b""), None);
        assert_eq!(parse_reply(b"secret"), None);
        assert_eq!(parse_reply(&[b'+'; MAX_PASSPHRASE + 2]), None);
        assert_eq!(&reply_for(b"pw")[..], b"+pw");
    }
}
