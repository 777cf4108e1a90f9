//! Native ZFS encryption: which keys the mounts of a boot environment need, and where each
//! comes from. Pure; `boot` loads them (`zfs load-key`) before anything is written.

use crate::decide::be::{BePlan, Dataset};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum KeySource {
    /// keylocation=prompt: ask (after trying passphrases already typed this boot).
    Prompt,
    /// keylocation=file:///PATH: the ramdisk's file, else the ESPs'.
    File(String),
    /// https:// and anything else zroam cannot fetch in a ramdisk.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct KeyNeed {
    /// The encryption root whose key is loaded.
    pub root: String,
    pub source: KeySource,
    /// A passphrase (other formats are raw or hex key bytes).
    pub passphrase: bool,
}

/// Encryption roots of the planned mounts whose keys are not loaded, in mount order (the
/// BE's first). A root whose facts are missing from the list is asked for as a prompt.
pub fn needed(plan: &BePlan, ds: &[Dataset]) -> Vec<KeyNeed> {
    let mut out: Vec<KeyNeed> = Vec::new();
    for m in &plan.mounts {
        // A clone made at boot has the key of the dataset it was cloned from.
        let name = m.origin.as_deref().unwrap_or(&m.dataset);
        let Some(d) = ds.iter().find(|d| d.name == name) else { continue };
        let Some(root) = &d.encryption_root else { continue };
        if d.keystatus.as_deref() == Some("available") || out.iter().any(|k| &k.root == root) {
            continue;
        }
        let r = ds.iter().find(|x| &x.name == root).unwrap_or(d);
        let source = match r.keylocation.as_deref() {
            None | Some("prompt") => KeySource::Prompt,
            Some(l) => match l.strip_prefix("file://") {
                Some(p) if p.starts_with('/') => KeySource::File(p.to_string()),
                _ => KeySource::Unsupported(l.to_string()),
            },
        };
        out.push(KeyNeed { root: root.clone(), source, passphrase: r.keyformat.as_deref().is_none_or(|f| f == "passphrase") });
    }
    out
}

/// Is the key of encryption root `root` loaded (by zroam or by hand)?
pub fn key_available(root: &str) -> bool {
    let args: Vec<String> = ["get", "-H", "-o", "value", "keystatus", root].map(String::from).to_vec();
    let o = crate::sys::run::run("zfs", &args, std::time::Duration::from_secs(10));
    o.ok() && o.stdout.trim() == "available"
}

/// What `zfs load-key` said, as: wrong key (try again) or another failure.
pub fn wrong_key(said: &str) -> bool {
    let s = said.to_ascii_lowercase();
    s.contains("incorrect key") || s.contains("invalid key") || s.contains("wrong key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::be::{parse_list, Mount};

    #[test]
    fn keys_for_the_planned_mounts() {
        let list = "rpool\tnone\toff\t-\t-\t-\tnone\tnone\n\
rpool/ROOT/enc\t/\tnoauto\t-\trpool/ROOT/enc\tunavailable\tprompt\tpassphrase\n\
rpool/ROOT/enc/var\t/var\ton\t-\trpool/ROOT/enc\tunavailable\tnone\tpassphrase\n\
rpool/ROOT/enc/home\t/home\ton\t-\trpool/ROOT/enc/home\tunavailable\tfile:///boot/efi/k/home.key\traw\n\
rpool/ROOT/enc/web\t/web\ton\t-\trpool/ROOT/enc/web\tunavailable\thttps://keys.example/k\traw\n\
rpool/ROOT/enc/ok\t/ok\ton\t-\trpool/ROOT/enc/ok\tavailable\tprompt\tpassphrase\n";
        let ds = parse_list(list);
        assert_eq!(ds.len(), 6);
        assert_eq!(ds[0].encryption_root, None);
        let m = |d: &str, t: &str| Mount { dataset: d.into(), target: t.into(), origin: None };
        let plan = BePlan {
            dataset: "rpool/ROOT/enc".into(),
            reason: String::new(),
            consume_nextboot: None,
            mounts: vec![
                m("rpool/ROOT/enc", "/"),
                m("rpool/ROOT/enc/var", "/var"),
                m("rpool/ROOT/enc/home", "/home"),
                m("rpool/ROOT/enc/web", "/web"),
                m("rpool/ROOT/enc/ok", "/ok"),
            ],
            steps: Vec::new(),
            warnings: Vec::new(),
        };
        let n = needed(&plan, &ds);
        assert_eq!(n.len(), 3, "{n:?}");
        assert_eq!((n[0].root.as_str(), &n[0].source, n[0].passphrase), ("rpool/ROOT/enc", &KeySource::Prompt, true));
        assert_eq!(n[1].source, KeySource::File("/boot/efi/k/home.key".into()));
        assert!(!n[1].passphrase);
        assert_eq!(n[2].source, KeySource::Unsupported("https://keys.example/k".into()));
        assert!(wrong_key("Key load error: Incorrect key provided for 'rpool/ROOT/enc'."));
        assert!(!wrong_key("Key load error: Keys must be loaded for encryption root"));
    }
}
