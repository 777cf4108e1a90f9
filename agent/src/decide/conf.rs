//! The ramdisk's own settings, `/etc/zroam/zroam.conf`, written by the generators from the
//! host's: what the kernel command line must not be able to change. Today one key:
//! `shell=open|password|off`, the lock on zroam's emergency shell. Pure: text in,
//! settings out; a value zroam does not understand locks rather than opens.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

pub const PATH: &str = "/etc/zroam/zroam.conf";
const MAX_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum ShellLock {
    /// A root shell for whoever is at the console (the stock initramfs tools' default).
    #[default]
    Open,
    /// Root's password from the ramdisk's shadow file first (sulogin).
    Password,
    /// No shell: the report stays on screen until the machine is reset.
    Off,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Conf {
    pub shell: ShellLock,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub warnings: Vec<String>,
}

pub fn parse(text: &str) -> Conf {
    let mut c = Conf::default();
    if text.len() > MAX_BYTES {
        c.shell = ShellLock::Off;
        c.warnings.push(format!("{PATH} is larger than {MAX_BYTES} bytes: the shell stays locked"));
        return c;
    }
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (k, v) = line.split_once('=').map(|(k, v)| (k.trim(), v.trim().trim_matches('"'))).unwrap_or((line, ""));
        match (k, v) {
            ("shell", "open") => c.shell = ShellLock::Open,
            ("shell", "password") => c.shell = ShellLock::Password,
            ("shell", "off") => c.shell = ShellLock::Off,
            ("shell", other) => {
                c.shell = ShellLock::Off;
                c.warnings.push(format!("{PATH}: shell={other} is not open, password or off: the shell stays locked"));
            }
            _ => c.warnings.push(format!("{PATH}: {line:.60} ignored")),
        }
    }
    c
}

/// The settings of this ramdisk: none means the defaults; unreadable means locked.
pub fn load(path: &std::path::Path) -> Conf {
    match std::fs::read(path) {
        Ok(b) => parse(&String::from_utf8_lossy(&b[..b.len().min(MAX_BYTES + 1)])),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Conf::default(),
        Err(e) => Conf { shell: ShellLock::Off, warnings: vec![format!("cannot read {PATH} ({e}): the shell stays locked")] },
    }
}

/// Does a shadow file give root a password that can be checked? An empty, locked (`!`,
/// `*`) or absent entry cannot be: then `password` means no shell at all.
pub fn root_has_password(shadow: &str) -> bool {
    shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|rest| rest.split(':').next())
        .is_some_and(|h| !h.is_empty() && !h.starts_with('!') && !h.starts_with('*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_and_what_cannot_open_it() {
        assert_eq!(parse("").shell, ShellLock::Open);
        assert_eq!(parse("# comment\nshell=password\n").shell, ShellLock::Password);
        assert_eq!(parse("shell = \"off\"").shell, ShellLock::Off);
        // A value zroam does not know locks, it does not open.
        let c = parse("shell=maybe");
        assert_eq!(c.shell, ShellLock::Off);
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(parse(&"#".repeat(MAX_BYTES + 1)).shell, ShellLock::Off);
    }

    #[test]
    fn root_passwords() {
        assert!(root_has_password("daemon:*:1:\nroot:$y$j9T$abc$def:19000:0:99999:7:::\n"));
        for locked in ["root:!$6$x$y:1::::::", "root:*:1::::::", "root::1::::::", "user:$6$x:1::::::"] {
            assert!(!root_has_password(locked), "{locked}");
        }
    }
}
