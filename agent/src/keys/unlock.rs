//! LUKS containers: which to open (pure, over the probe report and the command line) and
//! opening one with cryptsetup (the only effect here). The opened mapper devices are then
//! probed for ZFS labels like any other device.

use crate::decide::cmdline::LuksOpts;
use crate::probe::ProbeReport;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// Key derivation under emulation, or with a memory-hard PBKDF, takes seconds.
const OPEN_BOUND: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Container {
    pub device: String,
    pub uuid: String,
    pub version: u16,
    /// LUKS2 token types its header names: only then is `open_token` tried.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tokens: Vec<String>,
}

/// The device-mapper name for a container (systemd's and dracut's convention).
pub fn mapper_name(uuid: &str) -> String {
    format!("luks-{uuid}")
}

/// Containers to open now: LUKS headers found by the probe, allowed by the command line,
/// not already open (a holder on the device, or the mapper name taken) and not settled
/// earlier in this boot (`settled`: opened, or given up on).
pub fn to_open(rep: &ProbeReport, opts: &LuksOpts, settled: &[String], mapper_exists: impl Fn(&str) -> bool) -> Vec<Container> {
    if !opts.enabled {
        return Vec::new();
    }
    let mut out: Vec<Container> = Vec::new();
    for d in &rep.devices {
        let Some(l) = &d.contents.luks else { continue };
        let uuid = l.uuid.to_ascii_lowercase();
        if !opts.uuids.is_empty() && !opts.uuids.contains(&uuid) {
            continue;
        }
        if !d.dev.holders.is_empty() || settled.contains(&uuid) || mapper_exists(&mapper_name(&uuid)) {
            continue;
        }
        // The same container seen twice (multipath, a disk and its only partition): once.
        if out.iter().any(|c| c.uuid == uuid) {
            continue;
        }
        out.push(Container { device: d.dev.node.clone(), uuid, version: l.version, tokens: l.tokens.clone() });
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No key slot opens with this key (cryptsetup exit 2).
    WrongKey,
    Other(String),
}

/// What cryptsetup's exit status means. Pure.
pub fn classify(code: Option<i32>, said: &str) -> OpenError {
    match code {
        Some(2) => OpenError::WrongKey,
        _ => OpenError::Other(if said.is_empty() { format!("cryptsetup exited with {code:?}") } else { said.to_string() }),
    }
}

/// Where udev's device-mapper rules would be; 95-dm-notify.rules is the one that tells
/// libdevmapper its new device is ready.
const DM_NOTIFY_RULES: &[&str] =
    &["/usr/lib/udev/rules.d/95-dm-notify.rules", "/lib/udev/rules.d/95-dm-notify.rules", "/etc/udev/rules.d/95-dm-notify.rules"];

/// Whether libdevmapper may wait for udev to confirm a new device: only when udev runs and
/// has the rule that confirms it. Otherwise it would wait forever (a ramdisk with udevd but
/// without the dm rules) or for nothing (no udev at all), and must make the node itself. Pure.
pub fn udev_confirms_dm(udev_running: bool, notify_rules: bool) -> bool {
    udev_running && notify_rules
}

/// `cryptsetup open` of `c` as /dev/mapper/luks-UUID, `how` saying with what (a key on
/// stdin, or the tokens alone).
fn cryptsetup_open(c: &Container, how: &[&str], key: Option<&[u8]>, readonly: bool) -> crate::sys::run::Outcome {
    let mut args: Vec<String> = ["open"].iter().chain(how).map(|s| s.to_string()).collect();
    if readonly {
        args.push("--readonly".into());
    }
    args.extend([c.device.clone(), mapper_name(&c.uuid)]);
    let udev = Path::new("/run/udev/control").exists();
    let notify = DM_NOTIFY_RULES.iter().any(|p| Path::new(p).exists());
    let env: &[(&str, &str)] = if udev_confirms_dm(udev, notify) { &[] } else { &[("DM_DISABLE_UDEV", "1")] };
    crate::sys::run::run_with("cryptsetup", &args, key, env, OPEN_BOUND)
}

/// Open `c` as /dev/mapper/luks-UUID with `key` (a passphrase or a key file's bytes).
pub fn open(c: &Container, key: &[u8], readonly: bool) -> Result<(), OpenError> {
    let out = cryptsetup_open(c, &["--type", "luks", "--key-file=-"], Some(key), readonly);
    if out.ok() {
        Ok(())
    } else {
        Err(classify(out.code, &out.said()))
    }
}

/// Open a LUKS2 container with its tokens alone (`cryptsetup open --token-only`): a TPM2
/// enrolled with systemd-cryptenroll, through cryptsetup's token plugin. No token, no
/// plugin or a TPM that does not unseal: an error, and the keys are tried next.
pub fn open_token(c: &Container, readonly: bool) -> Result<(), String> {
    let out = cryptsetup_open(c, &["--type", "luks2", "--token-only"], None, readonly);
    if out.ok() {
        Ok(())
    } else {
        Err(out.said())
    }
}

/// Token types cryptsetup handles without a plugin.
const BUILTIN_TOKENS: &[&str] = &["luks2-keyring"];

/// Where distributions put cryptsetup's token plugins (`libcryptsetup-token-TYPE.so`):
/// Debian's multiarch /lib/TRIPLET/cryptsetup (a ramdisk does not merge /usr), Arch's
/// /usr/lib/cryptsetup, Fedora's /usr/lib64/cryptsetup.
const PLUGIN_ROOTS: &[&str] = &["/lib", "/usr/lib", "/lib64", "/usr/lib64"];

/// The token types this ramdisk has a cryptsetup plugin for.
pub fn token_plugins() -> Vec<String> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for root in PLUGIN_ROOTS {
        dirs.push(Path::new(root).join("cryptsetup"));
        // Multiarch subdirectories: /lib/x86_64-linux-gnu/cryptsetup.
        if let Ok(rd) = std::fs::read_dir(root) {
            dirs.extend(rd.flatten().map(|e| e.path().join("cryptsetup")).filter(|p| p.is_dir()));
        }
    }
    let mut found: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .filter_map(|e| plugin_type(&e.file_name().to_string_lossy()))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// `libcryptsetup-token-systemd-tpm2.so` → `systemd-tpm2`. Pure.
fn plugin_type(file: &str) -> Option<String> {
    let t = file.strip_prefix("libcryptsetup-token-")?.strip_suffix(".so")?;
    (!t.is_empty()).then(|| t.to_string())
}

/// Splits a container's token types into those cryptsetup can use here (built in, or with
/// a plugin in `plugins`) and the others (a Clevis token is a key hook's business). Pure.
pub fn usable_tokens(tokens: &[String], plugins: &[String]) -> (Vec<String>, Vec<String>) {
    tokens.iter().cloned().partition(|t| BUILTIN_TOKENS.contains(&t.as_str()) || plugins.contains(t))
}

/// Has `c` been opened meanwhile, by zroam's name or another (a holder on its device)?
pub fn is_open(c: &Container) -> bool {
    let name = c.device.rsplit('/').next().unwrap_or_default();
    let held = std::fs::read_dir(format!("/sys/class/block/{name}/holders")).is_ok_and(|mut d| d.next().is_some());
    held || Path::new("/dev/mapper").join(mapper_name(&c.uuid)).exists()
}

/// dm-crypt and the ciphers LUKS uses, for a ramdisk whose kernel has them as modules.
pub fn load_modules() {
    let args = ["-q", "-a", "dm_mod", "dm_crypt", "xts", "algif_skcipher"].map(String::from);
    crate::sys::run::run("modprobe", &args, Duration::from_secs(30));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ondisk::luks::Luks;

    #[test]
    fn libdevmapper_waits_for_udev_only_when_udev_can_answer() {
        assert!(udev_confirms_dm(true, true));
        // mkinitcpio's udev hook without the dm rules: waiting would never end.
        assert!(!udev_confirms_dm(true, false));
        assert!(!udev_confirms_dm(false, true));
        assert!(!udev_confirms_dm(false, false));
    }
    use crate::probe::sysfs::BlockDev;
    use crate::probe::{Contents, DeviceReport};

    fn dev(name: &str, luks: Option<&str>, holders: &[&str]) -> DeviceReport {
        let (disk, n) = name.split_at(name.len() - 1);
        let mut dev = BlockDev::test_partition(disk, n.parse().unwrap_or(0));
        dev.holders = holders.iter().map(|h| h.to_string()).collect();
        DeviceReport {
            dev,
            gpt_entry: None,
            contents: Contents { luks: luks.map(|u| Luks { version: 2, uuid: u.into(), tokens: Vec::new() }), ..Contents::default() },
            elapsed_ms: 0.0,
            error: None,
        }
    }

    const A: &str = "0B1E3A8C-5D2F-4C6E-9A7B-1C2D3E4F5A6B";
    const B: &str = "11111111-2222-3333-4444-555555555555";
    const C: &str = "99999999-2222-3333-4444-555555555555";

    #[test]
    fn tokens_need_a_plugin_or_cryptsetup_itself() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let plugins = v(&["systemd-tpm2", "systemd-fido2"]);
        assert_eq!(usable_tokens(&v(&["systemd-tpm2", "clevis"]), &plugins), (v(&["systemd-tpm2"]), v(&["clevis"])));
        assert_eq!(usable_tokens(&v(&["luks2-keyring"]), &[]), (v(&["luks2-keyring"]), v(&[])));
        assert_eq!(usable_tokens(&v(&["clevis"]), &plugins), (v(&[]), v(&["clevis"])));
        assert_eq!(plugin_type("libcryptsetup-token-systemd-tpm2.so"), Some("systemd-tpm2".into()));
        assert_eq!(plugin_type("libcryptsetup-token-.so"), None);
        assert_eq!(plugin_type("libcryptsetup.so.12"), None);
    }

    #[test]
    fn which_containers_to_open() {
        let rep = ProbeReport {
            devices: vec![dev("vda2", Some(A), &[]), dev("vdb2", Some(B), &[]), dev("vdc2", Some(C), &["dm-0"]), dev("vdd1", None, &[])],
            ..ProbeReport::default()
        };
        let any = LuksOpts { enabled: true, uuids: Vec::new() };
        let got: Vec<String> = to_open(&rep, &any, &[], |_| false).into_iter().map(|c| c.device).collect();
        // vdc2 is already open (a holder); vdd1 is no container.
        assert_eq!(got, ["/dev/vda2", "/dev/vdb2"]);
        assert_eq!(to_open(&rep, &any, &[], |_| false)[0].uuid, A.to_ascii_lowercase());
        // Settled this boot, or its mapper name taken: not again.
        let got = to_open(&rep, &any, &[A.to_ascii_lowercase()], |n| n == mapper_name(&B.to_ascii_lowercase()));
        assert!(got.is_empty(), "{got:?}");
        // rd.luks.uuid= limits; rd.luks=0 opens none.
        let only_b = LuksOpts { enabled: true, uuids: vec![B.into()] };
        assert_eq!(to_open(&rep, &only_b, &[], |_| false).len(), 1);
        assert!(to_open(&rep, &LuksOpts { enabled: false, uuids: Vec::new() }, &[], |_| false).is_empty());
    }

    #[test]
    fn an_opened_container_lives_on_its_disk() {
        let mut dm = dev("dm-0", None, &[]);
        dm.dev.parent = None;
        let rep = ProbeReport { devices: vec![dev("vda2", Some(A), &["dm-0"]), dm.clone()], ..ProbeReport::default() };
        assert_eq!(rep.disk_of(&dm), "vda");
        assert_eq!(rep.disk_of(&rep.devices[0]), "vda");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(classify(Some(2), "No key available with this passphrase."), OpenError::WrongKey);
        assert!(matches!(classify(Some(5), "Device luks-x already exists."), OpenError::Other(m) if m.contains("exists")));
        assert!(matches!(classify(None, ""), OpenError::Other(_)));
    }
}
