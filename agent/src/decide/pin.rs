//! The root's identity, carried in the ramdisk (`/etc/zroam/root.pin`, written by
//! `zroam pin` when the image is built): which pool GUID is the root, which vdevs are its
//! members, which LUKS containers hold them and which ESPs sit on its disks. With a pin,
//! only that pool boots and only its members are believed. Pure: text in, text out; the
//! file comes from the ramdisk, but it is parsed with bounds all the same.

use crate::probe::assemble::Pool;
use crate::probe::ProbeReport;
#[cfg(test)]
use serde::Deserialize;
use serde::Serialize;
use std::fmt::Write;
use uuid::Uuid;

/// Where the generators install the pin in the ramdisk.
pub const PATH: &str = "/etc/zroam/root.pin";
/// A pin is a few lines; anything larger is not one.
pub const MAX_BYTES: usize = 64 * 1024;
/// Most entries of each kind kept from a pin.
pub const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(Deserialize))]
pub struct Pin {
    pub pool_guid: u64,
    pub pool_name: String,
    /// Leaf vdev GUIDs of the pool's config when the pin was made.
    pub vdevs: Vec<u64>,
    /// LUKS containers that hold members.
    pub luks: Vec<String>,
    /// ESP partitions on the members' disks.
    pub esps: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("the pin is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("line {0}: {1}")]
    Line(usize, String),
    #[error("the pin names no pool")]
    NoPool,
}

/// Parse a pin. Unknown keywords are errors: a pin that says more than zroam understands
/// must not be half-believed.
pub fn parse(text: &str) -> Result<Pin, PinError> {
    if text.len() > MAX_BYTES {
        return Err(PinError::TooLarge);
    }
    let mut pin = Pin::default();
    let mut have_pool = false;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| PinError::Line(i + 1, format!("{why}: {line:.80}"));
        let mut w = line.split_whitespace();
        let (key, val) = (w.next().unwrap_or(""), w.next().ok_or_else(|| bad("no value"))?);
        let full = |what: usize| if what >= MAX_ENTRIES { Err(bad("too many entries")) } else { Ok(()) };
        match key {
            "pool" => {
                if have_pool {
                    return Err(bad("a second pool"));
                }
                pin.pool_guid = val.parse().map_err(|_| bad("not a pool GUID"))?;
                pin.pool_name = w.next().unwrap_or("").chars().take(256).collect();
                have_pool = true;
            }
            "vdev" => {
                full(pin.vdevs.len())?;
                pin.vdevs.push(val.parse().map_err(|_| bad("not a vdev GUID"))?);
            }
            "luks" => {
                full(pin.luks.len())?;
                pin.luks.push(crate::decide::cmdline::luks_uuid(val).ok_or_else(|| bad("not a LUKS UUID"))?);
            }
            "esp" => {
                full(pin.esps.len())?;
                pin.esps.push(Uuid::parse_str(val).map_err(|_| bad("not a PARTUUID"))?);
            }
            _ => return Err(bad("unknown keyword")),
        }
    }
    if !have_pool {
        return Err(PinError::NoPool);
    }
    Ok(pin)
}

/// Read the pin at `path`: None when there is none; bounded like the parse.
pub fn load(path: &std::path::Path) -> crate::decide::trust::PinSource {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    let mut text = String::new();
    if let Err(e) = f.take(MAX_BYTES as u64 + 1).read_to_string(&mut text) {
        return Some(Err(e.to_string()));
    }
    Some(parse(&text).map_err(|e| e.to_string()))
}

/// The ESPs a pin names, when it is the pin of pool `guid` (none otherwise).
pub fn esps_for(source: &crate::decide::trust::PinSource, guid: u64) -> Vec<uuid::Uuid> {
    match source {
        Some(Ok(p)) if p.pool_guid == guid => p.esps.clone(),
        _ => Vec::new(),
    }
}

/// The file as `zroam pin` writes it; `parse(render(p)) == p`.
pub fn render(p: &Pin) -> String {
    let mut s = String::from(
        "# zroam root pin: the pool this ramdisk boots, written by `zroam pin` when the image was made.\n\
         # Regenerate the image after zpool replace/attach/detach/reguid or a restore to new disks.\n",
    );
    let _ = writeln!(s, "pool {} {}", p.pool_guid, p.pool_name);
    for v in &p.vdevs {
        let _ = writeln!(s, "vdev {v}");
    }
    for l in &p.luks {
        let _ = writeln!(s, "luks {l}");
    }
    for e in &p.esps {
        let _ = writeln!(s, "esp {e}");
    }
    s
}

/// The pin of `pool` as the probe sees it: the leaves of its current config, the LUKS
/// containers its members are opened from, and the ESPs on its members' disks.
pub fn of_pool(rep: &ProbeReport, pool: &Pool) -> Pin {
    let mut vdevs: Vec<u64> = pool.top_levels.iter().flat_map(|t| t.tree.leaves()).filter(|l| l.kind != "hole").map(|l| l.guid).collect();
    vdevs.sort_unstable();
    vdevs.dedup();
    let member_devs: Vec<_> = rep.devices.iter().filter(|d| pool.members.iter().any(|m| m.current && m.device == d.dev.node)).collect();
    let mut luks: Vec<String> = member_devs
        .iter()
        .flat_map(|d| rep.devices.iter().filter(|x| x.dev.holders.contains(&d.dev.name)))
        .filter_map(|x| x.contents.luks.as_ref().map(|l| l.uuid.to_ascii_lowercase()))
        .collect();
    luks.sort();
    luks.dedup();
    let disks: Vec<String> = member_devs.iter().map(|d| rep.disk_of(d)).collect();
    let mut esps: Vec<Uuid> = rep
        .devices
        .iter()
        .filter(|d| d.is_esp() && d.dev.parent.as_ref().is_some_and(|p| disks.contains(p)))
        .filter_map(|d| d.gpt_entry.as_ref().map(|g| g.partuuid))
        .collect();
    esps.sort();
    esps.dedup();
    Pin { pool_guid: pool.guid, pool_name: pool.name.clone(), vdevs, luks, esps }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pin {
        Pin {
            pool_guid: 15226346372089474211,
            pool_name: "rpool".into(),
            vdevs: vec![1, 18446744073709551615],
            luks: vec!["0b8f0f35-3c8e-4a7e-a3a7-6b0e7a1d9c11".into()],
            esps: vec![Uuid::parse_str("4a67b082-0a4c-41cf-b6c7-440b29bb8c4f").unwrap()],
        }
    }

    #[test]
    fn render_parses_back() {
        assert_eq!(parse(&render(&sample())).unwrap(), sample());
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert_eq!(parse("# nothing\n"), Err(PinError::NoPool));
        assert!(matches!(parse("pool 1 a\npool 2 b\n"), Err(PinError::Line(2, _))));
        assert!(matches!(parse("pool x rpool\n"), Err(PinError::Line(1, _))));
        assert!(matches!(parse("pool 1 rpool\nvdevs 2\n"), Err(PinError::Line(2, _))));
        assert!(matches!(parse("pool 1 rpool\nluks not-a-uuid\n"), Err(PinError::Line(2, _))));
        assert_eq!(parse(&"#".repeat(MAX_BYTES + 1)), Err(PinError::TooLarge));
        let many = format!("pool 1 r\n{}", "vdev 7\n".repeat(MAX_ENTRIES + 1));
        assert!(matches!(parse(&many), Err(PinError::Line(_, _))));
    }
}
