//! `zroam ask`: ask for a passphrase the way the boot does (published for password agents,
//! so `zroam unlock` over SSH can answer it, and on the console or Plymouth where no agent
//! asks there) and print the answer. For key hooks that need a PIN or a second secret.

use super::Res;
use crate::keys::ask::{self, Answer, Ways};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub fn run(mut args: lexopt::Parser) -> Res {
    use lexopt::prelude::*;
    let (mut id, mut timeout, mut console, mut message) = ("zroam:ask".to_string(), Duration::from_secs(300), true, None::<String>);
    while let Some(arg) = args.next()? {
        match arg {
            Long("id") => id = args.value()?.string()?,
            Long("timeout") => timeout = Duration::from_secs(args.value()?.parse()?),
            Long("no-console") => console = false,
            Value(v) if message.is_none() => message = Some(v.string()?),
            _ => return Err(arg.unexpected()),
        }
    }
    let Some(message) = message else { return Err("a question to ask is needed".into()) };
    let w = if console { ask::ways(false) } else { Ways { console: false, plymouth: false } };
    match ask::ask_with(&message, &id, timeout, w, &mut || false) {
        Ok(Answer::Typed { secret, token, .. }) => {
            // `zroam unlock` waits to hear how its answer went: here, it was taken.
            if let Some(t) = token {
                crate::keys::publish::tell(&t, true);
            }
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&secret).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush());
            Ok(ExitCode::SUCCESS)
        }
        Ok(Answer::Elsewhere) => Ok(ExitCode::from(1)),
        Err(e) => {
            eprintln!("zroam ask: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
