//! The boot menu on the console (`decide::menu` makes its text and reads its lines): a
//! countdown any key stops, then one line at a time, each wait bounded. Works on a serial
//! line and on a VT alike: plain lines, one escape sequence for the highlight.

use crate::decide::menu::{self, Menu, Pick, Reply};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::termios::{LocalFlags, SpecialCharacterIndices};
use serde::Serialize;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// What the menu ended with, as the report records it.
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    /// "boot environments" or "pools".
    pub of: String,
    /// What was listed, in order.
    pub items: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// "typed", "countdown" (the default booted when it ran out), "timeout" (nobody
    /// answered within the bound), or "unavailable: …" (no console).
    pub how: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pick: Option<Pick>,
}

/// Longest line kept (a pick is a few characters).
const MAX_LINE: usize = 64;

impl super::Boot {
    /// Show `m` until it ends with anything but the shell, each showing logged and kept in
    /// the record; `!` opens the shell (as the lock allows, with `banner`) and shows the menu
    /// again, without the countdown (somebody is there).
    pub(super) fn ask(&mut self, m: &Menu, of: &str, mut countdown: Option<Duration>, bound: Duration, banner: &str) -> Option<Pick> {
        loop {
            let shown = show(m, of, countdown, bound);
            log::info!("menu: {} ({})", shown.pick.as_ref().map_or("no pick".to_string(), |p| format!("{p:?}")), shown.how);
            let pick = shown.pick.clone();
            self.record.menu.extend(serde_json::to_value(&shown).ok());
            if pick != Some(Pick::Shell) {
                return pick;
            }
            super::emergency::shell(banner, super::emergency::Why::Asked);
            countdown = None;
        }
    }
}

/// Show `m`; with `countdown` and a default, boot it when the countdown runs out. `bound`:
/// the longest wait for a line once the countdown stopped (or without one).
pub fn show(m: &Menu, of: &str, countdown: Option<Duration>, bound: Duration) -> Shown {
    let mut shown = Shown {
        of: of.to_string(),
        items: m.items.iter().map(|i| i.name.clone()).collect(),
        default: m.default.map(|d| m.items[d].name.clone()),
        how: String::new(),
        pick: None,
    };
    let (how, pick) = match File::options().read(true).write(true).open("/dev/console") {
        Ok(tty) => run(tty, m, countdown, bound),
        Err(e) => (format!("unavailable: /dev/console: {e}"), None),
    };
    shown.how = how;
    shown.pick = pick;
    shown
}

fn run(mut tty: File, m: &Menu, countdown: Option<Duration>, bound: Duration) -> (String, Option<Pick>) {
    // Keys one at a time, echoed by us: a countdown must stop at any key, not at Enter.
    let mode = crate::sys::tty::Mode::set(&tty, |raw| {
        raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
    });
    if let Some(g) = &mode {
        g.drop_typeahead();
    }
    let _ = tty.write_all(menu::render(m).as_bytes());
    let r = talk(&mut tty, m, countdown, bound);
    drop(mode);
    let _ = tty.write_all(b"\n");
    r
}

fn talk(tty: &mut File, m: &Menu, countdown: Option<Duration>, bound: Duration) -> (String, Option<Pick>) {
    let mut line = String::new();
    if let (Some(cd), Some(d)) = (countdown, m.default) {
        let end = Instant::now() + cd;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let _ = writeln!(tty);
                return ("countdown".into(), Some(Pick::Item { index: d }));
            }
            let _ = write!(
                tty,
                "\rBooting {} in {:>2} s; any key stops the countdown. ",
                m.items[d].name,
                left.as_secs() + u64::from(left.subsec_nanos() > 0)
            );
            let _ = tty.flush();
            match wait_key(tty, left.min(Duration::from_secs(1))) {
                Ok(Some(b)) => {
                    let _ = writeln!(tty);
                    if b == b'\r' || b == b'\n' {
                        return ("typed".into(), Some(Pick::Item { index: d }));
                    }
                    if (0x20..0x7f).contains(&b) {
                        line.push(b as char);
                    }
                    break;
                }
                Ok(None) => {}
                Err(e) => return (format!("unavailable: {e}"), None),
            }
        }
    }
    let until = Instant::now() + bound;
    let _ = write!(tty, "> {line}");
    let _ = tty.flush();
    let mut escape = 0;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ("timeout".into(), None);
        }
        let b = match wait_key(tty, left) {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => return (format!("unavailable: {e}"), None),
        };
        // Arrow keys and the like (ESC [ X): not ours, skipped whole.
        if escape > 0 {
            escape = if escape == 1 && b == b'[' { 2 } else { 0 };
            continue;
        }
        match b {
            0x1b => escape = 1,
            b'\r' | b'\n' => {
                let _ = tty.write_all(b"\r\n");
                match menu::interpret(m, &line) {
                    Reply::Pick(p) => return ("typed".into(), Some(p)),
                    Reply::Say(s) => {
                        let _ = write!(tty, "{}\r\n> ", s.replace('\n', "\r\n"));
                    }
                }
                line.clear();
            }
            0x7f | 0x08 if !line.is_empty() => {
                line.pop();
                let _ = tty.write_all(b"\x08 \x08");
            }
            0x20..=0x7e if line.len() < MAX_LINE => {
                line.push(b as char);
                let _ = tty.write_all(&[b]);
            }
            _ => {}
        }
        let _ = tty.flush();
    }
}

/// One byte, or None when `wait` passed first.
fn wait_key(tty: &mut File, wait: Duration) -> Result<Option<u8>, String> {
    let ms = PollTimeout::try_from(wait.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(tty.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, ms) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(format!("poll /dev/console: {e}")),
    }
    let mut b = [0u8; 1];
    match tty.read(&mut b) {
        Ok(1) => Ok(Some(b[0])),
        Ok(_) => Err("the console closed".into()),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(format!("read /dev/console: {e}")),
    }
}
