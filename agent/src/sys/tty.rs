//! A terminal's mode changed while zroam asks something on it (echo off, keys one at a
//! time) and put back when the question ends, on every path out: the guard restores it on
//! drop.

use nix::sys::termios::{self, FlushArg, SetArg, Termios};
use std::os::fd::{AsFd, OwnedFd};

pub struct Mode {
    fd: OwnedFd,
    saved: Termios,
}

impl Mode {
    /// Change `tty`'s mode with `change`. None: not a terminal (nothing changed).
    pub fn set(tty: impl AsFd, change: impl FnOnce(&mut Termios)) -> Option<Mode> {
        let fd = tty.as_fd().try_clone_to_owned().ok()?;
        let saved = termios::tcgetattr(&fd).ok()?;
        let mut t = saved.clone();
        change(&mut t);
        let _ = termios::tcsetattr(&fd, SetArg::TCSANOW, &t);
        Some(Mode { fd, saved })
    }

    /// Drop what was typed before the question: it is not its answer.
    pub fn drop_typeahead(&self) {
        let _ = termios::tcflush(&self.fd, FlushArg::TCIFLUSH);
    }
}

impl Drop for Mode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSANOW, &self.saved);
    }
}
