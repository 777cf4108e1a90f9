//! `zroam unlock`: a password agent for an SSH session (or a second console) in the
//! ramdisk. It lists the questions published in /run/systemd/ask-password (zroam's, and
//! any other asker's, such as systemd-cryptsetup), asks the person at this terminal, and
//! sends the answer; for zroam's own questions it waits to say whether the key was right.

use super::Res;
use crate::keys::ask::{Secret, MAX_PASSPHRASE};
use crate::keys::askfile::{self, Question, DIR, MAX_ASK_FILE};
use crate::keys::publish::{monotonic_us, RESULTS};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// Unlocking a key (a LUKS KDF, `zfs load-key`) under emulation can take a minute.
const RESULT_BOUND: Duration = Duration::from_secs(180);

/// A question pending now: its file's token (`ask.TOKEN`) and what it asks.
struct Pending {
    token: String,
    q: Question,
}

fn pending(dir: &Path) -> Vec<Pending> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let now = monotonic_us();
    let mut v: Vec<Pending> = rd
        .filter_map(|e| e.ok())
        .take(256)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let token = name.strip_prefix("ask.")?.to_string();
            let f = std::fs::File::open(e.path()).ok()?;
            let mut text = String::new();
            f.take(MAX_ASK_FILE as u64).read_to_string(&mut text).ok()?;
            let q = Question::parse(&text)?;
            // A question whose asker is gone, or whose time is up, is nobody's.
            let alive = Path::new(&format!("/proc/{}", q.pid)).exists();
            (alive && !q.expired(now)).then_some(Pending { token, q })
        })
        .collect();
    v.sort_by(|a, b| a.token.cmp(&b.token));
    v
}

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let (mut list, mut id, mut wait) = (false, None::<String>, Duration::from_secs(30));
    while let Some(arg) = args.next()? {
        match arg {
            Long("list") => list = true,
            Long("motd") => {
                // The login message generators put in images with an SSH server.
                print!("{}", crate::boot::remote::BANNER.trim_start());
                return Ok(ExitCode::SUCCESS);
            }
            Long("id") => id = Some(args.value()?.string()?),
            Long("wait") => wait = Duration::from_secs(args.value()?.parse()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let dir = PathBuf::from(DIR);
    let matching = |p: &Pending| id.as_ref().is_none_or(|i| &p.q.id == i);
    if list {
        for p in pending(&dir).iter().filter(|p| matching(p)) {
            println!("{}\t{}", p.q.id, p.q.message);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let tty = std::io::stdin().is_terminal();
    let mut answered: Vec<String> = Vec::new();
    let mut failed = false;
    let started = Instant::now();
    loop {
        let next = pending(&dir).into_iter().filter(|p| matching(p) && !answered.contains(&p.token)).collect::<Vec<_>>();
        let Some(p) = next.into_iter().next() else {
            // Nothing (more) to answer: wait for a question only before the first answer.
            if answered.is_empty() && started.elapsed() < wait {
                if started.elapsed() < Duration::from_millis(100) {
                    eprintln!("zroam unlock: no question yet; waiting up to {} s", wait.as_secs());
                }
                std::thread::sleep(Duration::from_millis(250));
                continue;
            }
            break;
        };
        answered.push(p.token.clone());
        let Some(pass) = read_passphrase(&p.q.message, tty) else {
            eprintln!("zroam unlock: no passphrase given");
            return Ok(ExitCode::from(1));
        };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to(&askfile::reply_for(&pass), &p.q.socket));
        if let Err(e) = sent {
            eprintln!("zroam unlock: cannot answer {}: {e}", p.q.id);
            failed = true;
            continue;
        }
        drop(pass);
        if !p.q.id.starts_with("zroam:") {
            eprintln!("zroam unlock: sent to {}", p.q.id);
            continue;
        }
        match outcome(&p.token) {
            Some(true) => eprintln!("zroam unlock: accepted"),
            Some(false) => {
                eprintln!("zroam unlock: that passphrase did not open it");
                failed = true;
                if !tty {
                    break;
                }
            }
            None => {
                eprintln!("zroam unlock: sent; zroam has not said whether it opened anything");
            }
        }
        // The next question (another key, or the same one asked again) comes quickly.
        std::thread::sleep(Duration::from_millis(500));
    }
    if answered.is_empty() {
        eprintln!("zroam unlock: no question is waiting for an answer");
        return Ok(ExitCode::from(1));
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// What zroam said of the answer to question `token`, within a bound.
fn outcome(token: &str) -> Option<bool> {
    let path = Path::new(RESULTS).join(token);
    let until = Instant::now() + RESULT_BOUND;
    while Instant::now() < until {
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Some(s.trim() == "accepted");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Ask at this terminal with echo off; or, when stdin is no terminal (a script piping the
/// passphrase), read one line of it. The bytes stay in zeroed-on-drop memory reserved once.
fn read_passphrase(message: &str, tty: bool) -> Option<Secret> {
    let stdin = std::io::stdin();
    let mode = if tty { crate::sys::tty::Mode::set(&stdin, |t| t.local_flags.remove(nix::sys::termios::LocalFlags::ECHO)) } else { None };
    if tty {
        eprint!("{message}: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(Vec::with_capacity(MAX_PASSPHRASE));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut lock = stdin.lock();
    let mut ended = false;
    // One byte at a time: nothing past the line is taken from a pipe.
    while let Ok(1) = lock.read(&mut byte[..]) {
        if byte[0] == b'\n' || byte[0] == b'\r' {
            ended = true;
            break;
        }
        if line.len() < MAX_PASSPHRASE {
            line.push(byte[0]);
        }
    }
    if mode.is_some() {
        drop(mode);
        eprintln!();
    }
    (ended || !line.is_empty()).then_some(line)
}
