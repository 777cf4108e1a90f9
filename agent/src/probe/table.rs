//! The probe report as a table for people.

use crate::probe::assemble::Health;
use crate::probe::{DeviceReport, ProbeReport};
use std::fmt::Write;

pub fn human_size(b: u64) -> String {
    const U: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 || v >= 100.0 {
        format!("{v:.0}{}", U[i])
    } else {
        format!("{v:.1}{}", U[i])
    }
}

fn what(r: &DeviceReport) -> String {
    let mut parts = Vec::new();
    let c = &r.contents;
    if let Some(g) = &c.gpt {
        parts.push(format!(
            "gpt {} ({} partitions{})",
            g.disk_guid,
            g.partitions.len(),
            if g.from_backup { ", from backup header" } else { "" }
        ));
    }
    if let Some(e) = &c.gpt_error {
        parts.push(format!("gpt error: {e}"));
    }
    if let Some(p) = &r.gpt_entry {
        parts.push(format!("{:?} partuuid={}", p.kind, p.partuuid).to_lowercase());
    }
    if let Some(f) = &c.fat {
        parts.push(format!("{} serial={}", f.kind, f.serial));
    }
    if let Some(l) = &c.luks {
        parts.push(format!("LUKS{} uuid={}", l.version, l.uuid));
    }
    if let Some(m) = &c.mdraid {
        parts.push(format!("md {} member of {}", m.metadata, m.array_uuid));
    }
    if let Some(z) = &c.zfs {
        match &z.label {
            Some(l) => {
                let mut s = format!(
                    "zfs pool={} guid={} txg={} labels={}",
                    l.pool_name.as_deref().unwrap_or("?"),
                    l.pool_guid.map(|g| g.to_string()).unwrap_or("-".into()),
                    l.txg,
                    z.copies.iter().filter(|c| matches!(c.state, crate::ondisk::label::CopyState::Valid)).count()
                );
                if !z.damaged_labels.is_empty() {
                    let _ = write!(s, " damaged={:?}", z.damaged_labels);
                }
                parts.push(s);
            }
            None => parts.push("zfs labels present but none valid".into()),
        }
    }
    if let Some(e) = &r.error {
        parts.push(format!("error: {e}"));
    }
    parts.join("; ")
}

pub fn render(rep: &ProbeReport) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{:<14} {:>7} {:<8} {:>3} {:>7}  CONTENTS", "DEVICE", "SIZE", "BUS", "RM", "MS");
    for r in &rep.devices {
        let name = if r.dev.partition.is_some() { format!("  {}", r.dev.name) } else { r.dev.name.clone() };
        let _ = writeln!(
            o,
            "{:<14} {:>7} {:<8} {:>3} {:>7.1}  {}",
            name,
            human_size(r.dev.size),
            format!("{:?}", r.dev.bus).to_lowercase(),
            if r.dev.removable { "yes" } else { "" },
            r.elapsed_ms,
            what(r)
        );
    }
    let _ = writeln!(o);
    if rep.pools.is_empty() {
        let _ = writeln!(o, "no ZFS pools found");
    }
    for p in &rep.pools {
        let _ = writeln!(
            o,
            "pool {} guid={} state={:?} health={:?} txg={} hostid={} hostname={}{}",
            p.name,
            p.guid,
            p.state,
            p.health,
            p.txg,
            p.hostid.map(|h| format!("{h:08x}")).unwrap_or("-".into()),
            p.hostname.as_deref().unwrap_or("-"),
            if p.boot_candidate { "" } else { "  (not a boot candidate)" }
        );
        for t in &p.top_levels {
            let _ = writeln!(o, "  {} [{}] {:?}", t.name, t.class, t.health);
        }
        for m in &p.members {
            let _ = writeln!(o, "  member {} guid={} txg={}{}", m.device, m.guid, m.label_txg, if m.current { "" } else { " (stale)" });
        }
        for m in &p.missing {
            let _ = writeln!(o, "  MISSING guid={} last seen as {} in {}", m.guid, m.path.as_deref().unwrap_or("?"), m.top_level);
        }
        for pr in &p.problems {
            if p.health != Health::Complete {
                let _ = writeln!(o, "  problem: {pr}");
            }
        }
    }
    for a in &rep.aux {
        let _ = writeln!(o, "{:?} device {} guid={} (not a pool on its own)", a.role, a.device, a.guid);
    }
    for w in &rep.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::human_size(512), "512B");
        assert_eq!(super::human_size(64 << 20), "64.0M");
        assert_eq!(super::human_size(256 << 30), "256G");
    }
}
