//! The hibernation guard. A hibernated system's image holds the pool's in-memory state:
//! importing the pool read-write and resuming the image later writes that old state over
//! the newer one. So before the import: resume the image (zroam as `/init`), or import
//! read-only, or — only when `zroam.resume=discard` says so — drop the image. Pure.

use crate::decide::cmdline::ResumeOpts;
use crate::probe::{DeviceReport, ProbeReport};
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// No hibernation image on the `resume=` device nor on any swap area.
    Nothing,
    /// Write `major_minor` to /sys/power/resume: the kernel restores the image and never
    /// returns. If it does return, the resume failed: `discard` says what follows.
    Resume { device: String, major_minor: String, discard: bool },
    /// Import read-only (and mount read-only), so the image stays valid.
    ReadOnly { why: String, hint: String },
    /// Import read-write; the image goes stale. `restore`: write plain swap's signature
    /// back (only on the device `resume=` names: the user's word that it is this system's).
    Discard { device: String, restore: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Guard {
    /// Hibernation images seen, as `SIGNATURE on DEVICE`.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub images: Vec<String>,
    /// The device `resume=` names, as the probe found it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resume_device: Option<String>,
    #[serde(flatten)]
    pub action: Action,
    /// What the boot did about it (filled in by the boot, not by the decision).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub done: Vec<String>,
}

impl Guard {
    /// Whether the pool is to be imported read-only: so too for a resume, since the
    /// import only happens if the resume fails.
    pub fn read_only(&self) -> bool {
        matches!(self.action, Action::ReadOnly { .. } | Action::Resume { discard: false, .. })
    }

    /// What follows a write to /sys/power/resume that returned.
    pub fn resume_failed(&self, err: &str) -> Guard {
        let mut g = self.clone();
        if let Action::Resume { device, discard, .. } = &self.action {
            g.done.push(format!("resume from {device} failed: {err}"));
            g.action = if *discard {
                Action::Discard { device: device.clone(), restore: true }
            } else {
                Action::ReadOnly {
                    why: format!("resuming the hibernation image on {device} failed ({err})"),
                    hint: "zroam.resume=discard imports read-write and drops the image".into(),
                }
            };
        }
        g
    }
}

/// The devices `resume=` names: `UUID=`, `LABEL=` (the swap header's), `PARTUUID=`,
/// `PARTLABEL=`, their `/dev/disk/by-*` links, `/dev/NAME`, `/dev/mapper/NAME` or `MAJ:MIN`.
/// More than one is a copy (a stick made from this disk, or forged to look like it): the
/// caller trusts none of them.
pub fn find<'a>(rep: &'a ProbeReport, spec: &str) -> Vec<&'a DeviceReport> {
    let (how, v) = spec
        .split_once('=')
        .or_else(|| {
            let rest = spec.strip_prefix("/dev/disk/by-")?;
            let (how, v) = rest.split_once('/')?;
            Some((["uuid", "label", "partuuid", "partlabel"].into_iter().find(|h| *h == how)?, v))
        })
        .map(|(h, v)| (h.to_ascii_uppercase(), v))
        .unwrap_or_default();
    let swap = |d: &'a DeviceReport| d.contents.swap.as_ref();
    let part = |d: &'a DeviceReport| d.gpt_entry.as_ref();
    rep.devices
        .iter()
        .filter(|d| match how.as_str() {
            "UUID" => swap(d).and_then(|s| s.uuid.as_deref()).is_some_and(|u| u.eq_ignore_ascii_case(v)),
            "LABEL" => swap(d).is_some_and(|s| s.label == v),
            "PARTUUID" => part(d).is_some_and(|p| p.partuuid.to_string().eq_ignore_ascii_case(v)),
            "PARTLABEL" => part(d).is_some_and(|p| p.name == v),
            _ => {
                let name = spec.strip_prefix("/dev/").unwrap_or(spec);
                let dm = name.strip_prefix("mapper/");
                d.dev.node == spec
                    || d.dev.name == name
                    || dm.is_some_and(|n| d.dev.detail.as_deref() == Some(n))
                    || spec == format!("{}:{}", d.dev.major, d.dev.minor)
            }
        })
        .collect()
}

/// What to do about hibernation images before the import. `own_ramdisk`: zroam is the
/// ramdisk's `/init`, so no one else has tried to resume.
pub fn decide(rep: &ProbeReport, opts: &ResumeOpts, own_ramdisk: bool) -> Guard {
    let all = opts.device.as_deref().map(|s| find(rep, s)).unwrap_or_default();
    // A resume= that names several devices names none: resuming or writing either could
    // be a stranger's.
    let named = match all[..] {
        [d] => Some(d),
        _ => None,
    };
    let images: Vec<(&DeviceReport, &str)> =
        rep.devices.iter().filter_map(|d| Some((d, d.contents.swap.as_ref()?.hibernation.as_deref()?))).collect();
    let mut g = Guard {
        images: images.iter().map(|(d, s)| format!("{s} on {}", d.dev.node)).collect(),
        resume_device: named.map(|d| d.dev.node.clone()),
        action: Action::Nothing,
        done: Vec::new(),
    };
    let is_named = |d: &DeviceReport| named.is_some_and(|n| n.dev.node == d.dev.node);
    // The image resume= names wins; else the first one found.
    let Some(&(dev, sig)) = images.iter().find(|(d, _)| is_named(d)).or(images.first()) else { return g };
    let node = dev.dev.node.clone();
    let mine = is_named(dev);
    // What resume= would have to say to name it (its UUID, unless another swap has it too).
    let uuid_of = |d: &DeviceReport| d.contents.swap.as_ref().and_then(|s| s.uuid.clone());
    let uuid = uuid_of(dev).filter(|u| rep.devices.iter().filter(|d| uuid_of(d).as_ref() == Some(u)).count() == 1);
    let spec = uuid.map_or_else(|| node.clone(), |u| format!("UUID={u}"));
    g.action = if mine && own_ramdisk && !opts.off && dev.dev.major != 0 {
        Action::Resume { device: node, major_minor: format!("{}:{}", dev.dev.major, dev.dev.minor), discard: opts.discard }
    } else if opts.discard {
        Action::Discard { device: node, restore: mine }
    } else {
        let (why, other) = if opts.off {
            let how =
                if mine { "without noresume it is resumed".to_string() } else { format!("resume={spec} without noresume resumes it") };
            (format!("noresume: the {sig} hibernation image on {node} is not resumed"), how)
        } else if !mine {
            let nodes: Vec<&str> = all.iter().map(|d| d.dev.node.as_str()).collect();
            let said = match (opts.device.as_ref(), nodes.len()) {
                (None, _) => "no resume= names a device".to_string(),
                (Some(s), n) if n > 1 => format!("resume={s} names {n} devices ({}), so none is trusted", nodes.join(", ")),
                (Some(s), _) => format!("resume={s} names another device"),
            };
            (format!("a {sig} hibernation image is on {node} and {said}"), format!("resume={spec} resumes it"))
        } else if own_ramdisk {
            (format!("the {sig} hibernation image on {node} has no device number to resume from"), String::new())
        } else {
            (
                format!("the {sig} hibernation image on {node} is still there after the ramdisk's own resume step"),
                "check the generator's resume setup".into(),
            )
        };
        let mut hint = "zroam.resume=discard imports read-write and drops the image".to_string();
        if !other.is_empty() {
            hint = format!("{hint}, or {other}");
        }
        Action::ReadOnly { why, hint }
    };
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::cmdline::parse;
    use crate::ondisk::blockdev::RegionSource;
    use crate::ondisk::swap::{test_page, PLAIN};
    use crate::probe::sysfs::BlockDev;
    use crate::probe::{read_contents, Contents};

    const ID: [u8; 16] = [0xab; 16];

    /// A partition whose first page is `sig`'s swap area (or nothing), read as the probe does.
    fn dev(name: &str, n: u32, sig: Option<&[u8]>) -> DeviceReport {
        dev_with(name, n, sig, ID)
    }

    fn dev_with(name: &str, n: u32, sig: Option<&[u8]>, id: [u8; 16]) -> DeviceReport {
        let contents = match sig {
            Some(s) => read_contents(&RegionSource { size: 1 << 20, regions: vec![(0, test_page(s, id, "sw"))] }, false, 512),
            None => Contents::default(),
        };
        let dev = BlockDev::test_partition(name, n);
        DeviceReport { dev, gpt_entry: None, contents, elapsed_ms: 0.0, error: None }
    }

    fn rep(devs: Vec<DeviceReport>) -> ProbeReport {
        ProbeReport { devices: devs, ..ProbeReport::default() }
    }

    fn decide_for(r: &ProbeReport, line: &str, pid1: bool) -> Guard {
        decide(r, &parse(line).resume, pid1)
    }

    #[test]
    fn no_image_nothing_to_do() {
        let r = rep(vec![dev("vda", 1, Some(PLAIN)), dev("vda", 2, None)]);
        assert_eq!(r.devices[0].contents.swap.as_ref().unwrap().uuid.as_deref(), Some("abababab-abab-abab-abab-abababababab"));
        let g = decide_for(&r, "resume=/dev/vda1", true);
        assert_eq!((g.action, g.resume_device.as_deref()), (Action::Nothing, Some("/dev/vda1")));
        assert!(!decide_for(&r, "", false).read_only());
    }

    #[test]
    fn own_ramdisk_resumes_the_named_image() {
        let r = rep(vec![dev("vda", 1, None), dev("vda", 3, Some(b"S1SUSPEND\0"))]);
        for spec in ["/dev/vda3", "vda3", "UUID=ABABABAB-abab-abab-abab-abababababab", "LABEL=sw", "/dev/disk/by-label/sw", "8:3"] {
            let g = decide_for(&r, &format!("resume={spec}"), true);
            assert_eq!(g.action, Action::Resume { device: "/dev/vda3".into(), major_minor: "8:3".into(), discard: false }, "{spec}");
            assert_eq!(g.images, ["S1SUSPEND on /dev/vda3"]);
            // The import after a failed resume is read-only, unless discard.
            assert!(g.read_only());
            let after = g.resume_failed("EINVAL");
            assert!(matches!(&after.action, Action::ReadOnly { why, .. } if why.contains("failed (EINVAL)")), "{after:?}");
        }
        let g = decide_for(&r, "resume=/dev/vda3 zroam.resume=discard", true);
        assert!(!g.read_only());
        assert_eq!(g.resume_failed("x").action, Action::Discard { device: "/dev/vda3".into(), restore: true });
    }

    #[test]
    fn read_only_unless_discard() {
        let r = rep(vec![dev("vda", 2, Some(b"ULSUSPEND\0")), dev_with("vdb", 1, Some(PLAIN), [0xcd; 16])]);
        let ro = |line: &str, pid1: bool| match decide_for(&r, line, pid1).action {
            Action::ReadOnly { why, hint } => format!("{why} | {hint}"),
            a => panic!("{line}: {a:?}"),
        };
        // noresume, a generator's image, no resume= or resume= naming another device.
        assert!(ro("noresume resume=/dev/vda2", true).starts_with("noresume"));
        assert!(ro("noresume", true).starts_with("noresume"), "noresume is the reason, not the missing resume=");
        assert!(ro("resume=/dev/vda2", false).contains("after the ramdisk's own resume step"));
        let s = ro("", true);
        assert!(s.contains("no resume= names") && s.contains("zroam.resume=discard") && s.contains("resume=UUID=abab"), "{s}");
        assert!(ro("resume=/dev/vdb1", true).contains("resume=/dev/vdb1 names another device"));
        // discard: the signature is restored only on the device resume= names.
        let d = |line: &str| decide_for(&r, line, true).action;
        assert_eq!(d("noresume resume=/dev/vda2 zroam.resume=discard"), Action::Discard { device: "/dev/vda2".into(), restore: true });
        assert_eq!(d("zroam.resume=discard"), Action::Discard { device: "/dev/vda2".into(), restore: false });
        assert_eq!(d("resume=/dev/vdb1 zroam.resume=discard"), Action::Discard { device: "/dev/vda2".into(), restore: false });
    }

    /// A one-disk pool's member whose active uberblock's checkpoint field is `checkpoint`.
    fn member(checkpoint: u64) -> DeviceReport {
        use crate::ondisk::label::Uberblock;
        use crate::ondisk::vdev::{LabelInfo, PoolState, Vdev};
        let mut d = dev("vdb", 1, None);
        let top = Vdev {
            kind: "disk".into(),
            id: 0,
            guid: 5,
            path: Some("/dev/vdb1".into()),
            nparity: None,
            ashift: Some(12),
            is_log: false,
            alloc_bias: None,
            children: vec![],
        };
        let label = LabelInfo {
            pool_name: Some("rpool".into()),
            pool_guid: Some(9),
            state: PoolState::Active,
            txg: 40,
            version: Some(5000),
            hostid: None,
            hostname: None,
            guid: 5,
            top_guid: Some(5),
            vdev_children: Some(1),
            hole_array: vec![],
            errata: None,
            features_for_read: vec![],
            top: Some(top),
        };
        let ub = Uberblock { label: 0, slot: 3, txg: 44, timestamp: 1, guid_sum: 5, version: 5000, checkpoint_txg: checkpoint, mmp: None };
        d.contents.zfs = Some(crate::probe::ZfsFound {
            label: Some(label),
            chosen_label: Some(0),
            damaged_labels: vec![],
            copies: vec![],
            uberblock: Some(ub),
            config: None,
            config_not_kept: None,
        });
        d
    }

    fn plan_for(devs: Vec<DeviceReport>, line: &str) -> crate::decide::plan::Plan {
        let mut r = rep(devs);
        let found: Vec<_> = r
            .devices
            .iter()
            .filter_map(|d| {
                let z = d.contents.zfs.as_ref()?;
                Some(crate::probe::assemble::Found { device: d.dev.node.clone(), info: z.label.clone()?, uberblock: z.uberblock.clone() })
            })
            .collect();
        r.pools = crate::probe::assemble::assemble(&found).pools;
        crate::decide::plan::plan(&r, &parse(line), &crate::decide::plan::System::default())
    }

    #[test]
    fn the_plan_applies_both_guards() {
        use crate::decide::choose::Choice;
        // Checkpoint: the live uberblocks never record one (OpenZFS zeroes the field in each
        // txg), so the plan cannot know: it asks zpool to rewind, which refuses without one.
        for ub in [30, 0] {
            let p = plan_for(vec![member(ub)], "zroam.rewind=checkpoint");
            assert!(matches!(p.pool, Choice::Chosen { .. }), "{:?}", p.pool);
            let argv = p.import.unwrap().argv.join(" ");
            assert!(argv.contains(" --rewind-to-checkpoint ") && !argv.contains("readonly"), "{argv}");
        }
        let p = plan_for(vec![member(0)], "");
        assert!(!p.import.unwrap().argv.join(" ").contains("rewind"));
        // Hibernation: an image left by a generator makes the import read-only, unless discard.
        let img = || vec![member(0), dev("vda", 2, Some(b"S1SUSPEND\0"))];
        let p = plan_for(img(), "resume=/dev/vda2");
        assert!(matches!(p.resume.action, Action::ReadOnly { .. }));
        assert!(p.import.unwrap().argv.join(" ").contains("-o readonly=on"));
        let p = plan_for(img(), "resume=/dev/vda2 zroam.resume=discard");
        assert_eq!(p.resume.action, Action::Discard { device: "/dev/vda2".into(), restore: true });
        assert!(!p.import.unwrap().argv.join(" ").contains("readonly"));
    }

    #[test]
    fn other_names() {
        let mut r = rep(vec![dev("vda", 2, Some(PLAIN)), dev("dm-", 0, Some(b"LINHIB0001"))]);
        r.devices[1].dev.detail = Some("cryptswap".into());
        let g = decide_for(&r, "resume=/dev/mapper/cryptswap", true);
        assert_eq!(g.action, Action::Resume { device: "/dev/dm-0".into(), major_minor: "8:0".into(), discard: false });
        assert!(find(&r, "PARTUUID=x").is_empty() && find(&r, "/dev/disk/by-id/x").is_empty() && find(&r, "").is_empty());
    }

    #[test]
    fn a_resume_device_named_twice_is_trusted_nowhere() {
        // A stick carrying a copy of the swap's UUID (and an image of its own): nothing is
        // resumed and nothing written, whichever device sorts first.
        let r = rep(vec![dev("sda", 1, Some(b"S1SUSPEND\0")), dev("vda", 3, Some(b"S1SUSPEND\0"))]);
        let uuid = "UUID=abababab-abab-abab-abab-abababababab";
        let g = decide_for(&r, &format!("resume={uuid}"), true);
        let Action::ReadOnly { why, hint } = &g.action else { panic!("{:?}", g.action) };
        assert!(why.contains("names 2 devices (/dev/sda1, /dev/vda3), so none is trusted"), "{why}");
        // The hint names a node, not the UUID both carry.
        assert!(hint.contains("resume=/dev/sda1") && !hint.contains("UUID="), "{hint}");
        assert_eq!(g.resume_device, None);
        let d = decide_for(&r, &format!("resume={uuid} zroam.resume=discard"), true).action;
        assert_eq!(d, Action::Discard { device: "/dev/sda1".into(), restore: false });
    }
}
