//! What reaches the key stage from outside: an ask file in /run/systemd/ask-password (for
//! `zroam unlock`), an agent's answer datagram, a LUKS2 header's JSON area (its tokens),
//! and the network parameters of the command line. The first byte picks the reader.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            let text = String::from_utf8_lossy(rest);
            if let Some(q) = zroam::keys::askfile::Question::parse(&text) {
                // Rendered again, it is one question: no field can add lines or keys.
                let text = q.render();
                for key in ["PID=", "Socket=", "Message=", "Id=", "NotAfter="] {
                    assert_eq!(text.lines().filter(|l| l.starts_with(key)).count(), 1, "{key} in {text:?}");
                }
                let again = zroam::keys::askfile::Question::parse(&text).expect("a rendered question parses");
                assert_eq!((again.pid, again.not_after_us), (q.pid, q.not_after_us));
            }
        }
        1 => {
            if let Some(zroam::keys::askfile::Reply::Password(p)) = zroam::keys::askfile::parse_reply(rest) {
                assert!(p.len() <= zroam::keys::ask::MAX_PASSPHRASE);
            }
        }
        2 => {
            let t = zroam::ondisk::luks::token_types(rest);
            assert!(t.len() <= 32 && t.iter().all(|s| s.len() <= 64));
            let _ = zroam::ondisk::luks::header_len(rest);
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = zroam::decide::net::parse_ip(&text);
            let _ = zroam::decide::net::parse_zroam(&text);
        }
    }
});
