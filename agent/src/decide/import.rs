//! Stage `import`: import the chosen pool with exactly the devices probe found. `args` and
//! `classify` are pure; `boot` runs zpool.

#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

/// `zpool import` arguments: no mounts, no cache file, only these devices, by GUID;
/// `rewind`: back to the pool's checkpoint.
pub fn args(guid: u64, devices: &[String], readonly: bool, force: bool, rewind: bool) -> Vec<String> {
    let mut a: Vec<String> = ["import", "-N", "-o", "cachefile=none"].map(String::from).to_vec();
    if readonly {
        a.extend(["-o".into(), "readonly=on".into()]);
    }
    if force {
        a.push("-f".into());
    }
    if rewind {
        a.push("--rewind-to-checkpoint".into());
    }
    for d in devices {
        a.extend(["-d".into(), d.clone()]);
    }
    a.push(guid.to_string());
    a
}

/// Make a planned `zpool import` argv read-only (a guard that changed its mind at the last
/// moment: the hibernation image could not be dropped, or resuming it failed).
pub fn make_read_only(argv: &mut Vec<String>) {
    if !argv.iter().any(|a| a == "readonly=on") {
        let at = argv.iter().position(|a| a == "cachefile=none").map_or(argv.len().min(2), |i| i + 1);
        argv.splice(at..at, ["-o".to_string(), "readonly=on".to_string()]);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// Multihost saw another host writing: never forced.
    InUseElsewhere,
    /// Last imported by another hostid and not exported.
    OtherHost,
    /// Devices missing or unreadable.
    Devices,
    /// The pool uses features this OpenZFS lacks.
    Features,
    Other,
}

impl Cause {
    /// What the category means, said before zpool's own words.
    pub fn meaning(self) -> &'static str {
        match self {
            Cause::InUseElsewhere => "another host is using it now (multihost activity check)",
            Cause::OtherHost => "another host imported it last and did not export it",
            Cause::Devices => "its devices are missing or unreadable",
            Cause::Features => "it uses features this OpenZFS does not support",
            Cause::Other => "zpool import failed",
        }
    }
}

/// What a failed `zpool import` said, in categories with a way out.
pub fn classify(said: &str) -> (Cause, &'static str) {
    let s = said.to_ascii_lowercase();
    // 2.3 says "pool is imported on host 'x'" or, for a host without a name, "imported on (none)".
    if s.contains("is imported on") || s.contains("in use on another system") || s.contains("multihost") {
        (Cause::InUseElsewhere, "export the pool on the other system (zroam never forces a multihost pool another host is using)")
    } else if s.contains("previously in use from another system") || s.contains("hostid") {
        (Cause::OtherHost, "zroam.hostid=adopt (the default) or zroam.force=1")
    } else if s.contains("unsupported feature") || s.contains("newer version") {
        (Cause::Features, "boot a ramdisk with a newer OpenZFS, or zroam.readonly=1 if the features allow it")
    } else if s.contains("checkpoint") {
        (Cause::Other, "drop zroam.rewind=checkpoint: the pool has no checkpoint to go back to")
    } else if s.contains("no such pool") || s.contains("unavailable") || s.contains("insufficient replicas") {
        (Cause::Devices, "attach the missing disks, or raise zroam.wait=SECONDS")
    } else {
        (Cause::Other, "zroam.shell=1 stops before the import so it can be done by hand")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_devices() {
        let a = args(42, &["/dev/vdb2".into(), "/dev/sda2".into()], true, false, false);
        assert_eq!(a.join(" "), "import -N -o cachefile=none -o readonly=on -d /dev/vdb2 -d /dev/sda2 42");
        assert!(args(1, &[], false, true, false).contains(&"-f".to_string()));
        let mut a: Vec<String> = std::iter::once("zpool".into()).chain(args(1, &[], false, true, true)).collect();
        assert_eq!(a.join(" "), "zpool import -N -o cachefile=none -f --rewind-to-checkpoint 1");
        make_read_only(&mut a);
        let ro = "zpool import -N -o cachefile=none -o readonly=on -f --rewind-to-checkpoint 1";
        assert_eq!(a.join(" "), ro);
        make_read_only(&mut a);
        assert_eq!(a.join(" "), ro);
    }

    #[test]
    fn zpool_messages() {
        // As printed by OpenZFS 2.3 zpool import.
        let mmp = "cannot import 'rpool': pool is imported on host 'other' (hostid=badcafe).\n\
                   Export the pool on the other system, then run 'zpool import'.";
        assert_eq!(classify(mmp).0, Cause::InUseElsewhere);
        // Seen in the lab: the holder VM has no hostname.
        let anon = "cannot import 'rpool': pool is imported on (none) (hostid: 0xbadcafe)\n\
                    Export the pool on the other system, then run 'zpool import'.";
        assert_eq!(classify(anon).0, Cause::InUseElsewhere);
        let host = "cannot import 'rpool': pool was previously in use from another system.\n\
                    Last accessed by other (hostid=badcafe) at Tue Nov 24 2026";
        assert_eq!(classify(host).0, Cause::OtherHost);
        assert_eq!(classify("cannot import 'x': no such pool available").0, Cause::Devices);
        assert_eq!(classify("something new").0, Cause::Other);
    }
}
