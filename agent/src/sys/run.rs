//! Run a helper (zpool, zfs, modprobe) with a time bound, capturing what it says.

use serde::{Deserialize, Serialize};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub argv: Vec<String>,
    /// Exit code; None when killed (timeout) or never started.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub ms: u64,
    pub timed_out: bool,
}

impl Outcome {
    /// A helper that could not be run at all.
    pub fn failed(argv: Vec<String>, why: String) -> Self {
        Outcome { argv, code: None, stdout: String::new(), stderr: why, ms: 0, timed_out: false }
    }
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// stderr (or stdout) in one line, for messages.
    pub fn said(&self) -> String {
        let s = if self.stderr.trim().is_empty() { &self.stdout } else { &self.stderr };
        s.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A started child awaited on its own thread, so the caller blocks on it with a deadline
/// instead of polling. `T` is what the wait yields: the exit status, or the whole output.
pub struct Pending<T = std::process::ExitStatus> {
    pid: u32,
    rx: mpsc::Receiver<std::io::Result<T>>,
}

impl Pending {
    pub fn new(child: std::process::Child) -> Self {
        Pending::watch(child, |mut c| c.wait())
    }
}

impl<T: Send + 'static> Pending<T> {
    fn watch(child: std::process::Child, finish: impl FnOnce(std::process::Child) -> std::io::Result<T> + Send + 'static) -> Self {
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(finish(child));
        });
        Pending { pid, rx }
    }

    /// What the wait yielded once the child has exited, or None at the deadline; the child
    /// goes on (a module load cannot be cut short anyway).
    pub fn wait_detached(self, deadline: Instant) -> Option<std::io::Result<T>> {
        self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }

    /// What the wait yielded once the child has exited, or None at the deadline (the child
    /// is then killed).
    pub fn wait_until(self, deadline: Instant) -> Option<std::io::Result<T>> {
        let pid = self.pid;
        let r = self.wait_detached(deadline);
        if r.is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
        }
        r
    }
}

/// Most output kept from one command.
const MAX_OUT: usize = 256 * 1024;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(MAX_OUT)]).into_owned()
}

pub fn run(prog: &str, args: &[String], timeout: Duration) -> Outcome {
    run_with(prog, args, None, &[], timeout)
}

/// `run`, with `input` written to the helper's stdin (a key, never logged: only argv is
/// recorded) and extra environment variables.
pub fn run_with(prog: &str, args: &[String], input: Option<&[u8]>, env: &[(&str, &str)], timeout: Duration) -> Outcome {
    let t = Instant::now();
    let mut argv = vec![prog.to_string()];
    argv.extend(args.iter().cloned());
    let exe = crate::sys::modules::find_tool(prog).unwrap_or_else(|| prog.into());
    let child = Command::new(&exe)
        .args(args)
        // zroam names device nodes it has just read: libzfs need not wait for udev to
        // settle their links. (Its per-device readiness poll is another wait, answered by
        // `udevdb`; this variable does not shorten that one.)
        .env("ZPOOL_IMPORT_UDEV_TIMEOUT_MS", "0")
        .envs(env.iter().copied())
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child.map(|mut c| {
        if let (Some(data), Some(mut w)) = (input, c.stdin.take()) {
            use std::io::Write;
            // Keys are small (bounded by their readers); the pipe buffer holds them, and
            // dropping the writer gives the helper its end of input.
            let _ = w.write_all(data);
        }
        c
    }) {
        Ok(c) => c,
        Err(e) => return Outcome::failed(argv, format!("cannot run {}: {e}", exe.display())),
    };
    match Pending::watch(child, |c| c.wait_with_output()).wait_until(t + timeout) {
        Some(Ok(o)) => Outcome {
            argv,
            code: o.status.code(),
            stdout: text(&o.stdout),
            stderr: text(&o.stderr),
            ms: t.elapsed().as_millis() as u64,
            timed_out: false,
        },
        Some(Err(e)) => {
            Outcome { argv, code: None, stdout: String::new(), stderr: e.to_string(), ms: t.elapsed().as_millis() as u64, timed_out: false }
        }
        None => Outcome {
            argv,
            code: None,
            stdout: String::new(),
            stderr: format!("no answer within {} s; killed", timeout.as_secs()),
            ms: t.elapsed().as_millis() as u64,
            timed_out: true,
        },
    }
}

/// Run a helper whose stdout is a key (a key hook): at most `cap` bytes of it are kept, in
/// memory reserved once and zeroed on drop, never as text. The outcome holds no stdout.
pub fn run_secret(prog: &str, args: &[String], env: &[(&str, &str)], timeout: Duration, cap: usize) -> (Outcome, crate::keys::ask::Secret) {
    use std::io::Read;
    let t = Instant::now();
    let mut argv = vec![prog.to_string()];
    argv.extend(args.iter().cloned());
    let spawned =
        Command::new(prog).args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return (Outcome::failed(argv, format!("cannot run {prog}: {e}")), Default::default()),
    };
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        return (Outcome::failed(argv, "no pipes".into()), Default::default());
    };
    let finish = move |mut c: std::process::Child| {
        let errs = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = (&mut err).take(MAX_OUT as u64).read_to_end(&mut v);
            v
        });
        let mut key = zeroize::Zeroizing::new(Vec::with_capacity(cap));
        let mut buf = zeroize::Zeroizing::new([0u8; 4096]);
        loop {
            match out.read(&mut buf[..]) {
                Ok(0) | Err(_) => break,
                // Past the cap the rest is read and dropped, so the helper is not blocked.
                Ok(n) => {
                    let room = cap - key.len();
                    key.extend_from_slice(&buf[..n.min(room)])
                }
            }
        }
        let status = c.wait()?;
        Ok((status, key, errs.join().unwrap_or_default()))
    };
    match Pending::watch(child, finish).wait_until(t + timeout) {
        Some(Ok((status, key, errs))) => {
            let o = Outcome {
                argv,
                code: status.code(),
                stdout: String::new(),
                stderr: text(&errs),
                ms: t.elapsed().as_millis() as u64,
                timed_out: false,
            };
            (o, key)
        }
        Some(Err(e)) => (Outcome::failed(argv, e.to_string()), Default::default()),
        None => {
            let mut o = Outcome::failed(argv, format!("no answer within {} s; killed", timeout.as_secs()));
            o.timed_out = true;
            (o, Default::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_past_its_bound_is_killed() {
        let t = Instant::now();
        let o = run("sleep", &["30".to_string()], Duration::from_millis(200));
        assert!(o.timed_out, "{o:?}");
        assert_eq!(o.code, None);
        assert!(!o.ok());
        assert!(t.elapsed() < Duration::from_secs(5), "the bound was not kept: {:?}", t.elapsed());
    }

    #[test]
    fn a_helper_within_its_bound_is_heard() {
        let o = run("sh", &["-c".into(), "echo out; echo err >&2; exit 3".into()], Duration::from_secs(10));
        assert_eq!((o.code, o.timed_out), (Some(3), false));
        assert_eq!((o.stdout.trim(), o.stderr.trim()), ("out", "err"));
        assert_eq!(o.said(), "err");
    }

    #[test]
    fn a_secret_helper_is_capped_and_bounded() {
        let (o, key) = run_secret("sh", &["-c".into(), "head -c 100000 /dev/zero; echo oops >&2".into()], &[], Duration::from_secs(10), 64);
        assert_eq!((o.code, key.len(), key.capacity()), (Some(0), 64, 64));
        assert_eq!(o.stderr.trim(), "oops");
        let (o, key) = run_secret("sleep", &["30".into()], &[], Duration::from_millis(200), 64);
        assert!(o.timed_out && key.is_empty());
    }

    #[test]
    fn a_missing_helper_is_an_outcome_not_a_panic() {
        let o = run("/nonexistent/zpool", &[], Duration::from_secs(1));
        assert!(!o.ok() && !o.timed_out);
        assert!(!o.stderr.is_empty());
    }

    #[test]
    fn pending_kills_at_its_deadline() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        assert!(Pending::new(child).wait_until(Instant::now() + Duration::from_millis(100)).is_none());
        // Killed: reaped by the watcher thread soon after, and then no such process.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            nix::sys::signal::kill(pid, None).is_err()
        });
        assert!(gone, "the helper outlived its deadline");
    }
}
