//! The timeline as a self-contained SVG 1.1 document: no scripts, no external fonts or
//! styles (generic font families only), so any browser shows it as it is.
//!
//! Every text put into the document goes through `escape`: stage names are the crate's
//! own, but pool and BE names come from disks.

use super::{secs_text, tick_step, tick_text, Kind, Timeline};
use std::fmt::Write;

const WIDTH: f64 = 900.0;
/// The row labels' column, and room right of the plot for the last bar's duration.
const LEFT: f64 = 130.0;
const RIGHT: f64 = 80.0;
const TOP: f64 = 92.0;
const ROW_H: f64 = 24.0;
const BAR_H: f64 = 16.0;

const KERNEL_FILL: &str = "#9e9e9e";
const WORK_FILL: &str = "#3b6fc4";
const WAIT_FILL: &str = "#f3c27a";
const BUSY_FILL: &str = "#b45f06";
const BESIDE_FILL: &str = "#8fbf8f";

/// Text for XML: the five markup characters as entities; characters XML 1.0 cannot carry
/// (controls but tab and newline, and U+FFFE/U+FFFF) dropped.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(' '),
            c if c.is_control() || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

/// A coordinate: one decimal, and never NaN or infinite in the document.
fn n(v: f64) -> String {
    format!("{:.1}", if v.is_finite() { v } else { 0.0 })
}

fn text(s: &mut String, x: f64, y: f64, attrs: &str, body: &str) {
    let _ = writeln!(s, r#"<text x="{}" y="{}"{attrs}>{}</text>"#, n(x), n(y), escape(body));
}

pub fn render(t: &Timeline) -> String {
    let plot = WIDTH - LEFT - RIGHT;
    let span = t.total.max(1e-3);
    let x = |v: f64| LEFT + v / span * plot;
    let axis_y = TOP + t.rows.len() as f64 * ROW_H + 6.0;
    let height = axis_y + 44.0 + 18.0 * (2 + t.notes.len()) as f64;
    let mut s = String::new();
    let _ = writeln!(s, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#,
        w = n(WIDTH),
        h = n(height)
    );
    let _ = writeln!(s, "<title>{}</title>", escape(&t.headline()));
    let _ = writeln!(s, r##"<rect x="0" y="0" width="100%" height="100%" fill="#ffffff"/>"##);
    text(&mut s, 12.0, 24.0, r#" font-size="16" font-weight="bold""#, &t.headline());
    let who = [t.pool.as_ref().map(|p| format!("pool {p}")), t.be.as_ref().map(|b| format!("BE {b}"))];
    let who: Vec<String> = who.into_iter().flatten().collect();
    if !who.is_empty() {
        text(&mut s, 12.0, 44.0, "", &who.join(", "));
    }
    let total = match t.from_kernel {
        true => format!(
            "total {} since the kernel started (kernel {}, zroam {})",
            secs_text(t.total),
            secs_text(t.zroam_start),
            secs_text(t.total - t.zroam_start)
        ),
        false => format!("total {} since zroam started (the axis starts there: the report has no kernel uptime)", secs_text(t.total)),
    };
    text(&mut s, 12.0, 62.0, "", &total);
    if t.rows.is_empty() {
        text(&mut s, 12.0, TOP, "", "no stage timings in this report");
    }
    // Second ticks (or a finer or coarser step that keeps about a dozen) with grid lines.
    let step = tick_step(span, 12);
    let _ = writeln!(s, r##"<g stroke="#dddddd" stroke-width="1">"##);
    let ticks: Vec<f64> = (0..).map(|k| k as f64 * step).take_while(|v| *v <= span * (1.0 + 1e-9)).collect();
    for &v in &ticks {
        let _ = writeln!(s, r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}"/>"#, n(x(v)), n(TOP - 14.0), n(axis_y));
    }
    let _ = writeln!(s, "</g>");
    for (i, r) in t.rows.iter().enumerate() {
        let y = TOP + i as f64 * ROW_H;
        let (x0, w) = (x(r.start), (x(r.end()) - x(r.start)).max(2.0));
        let fill = match r.kind {
            Kind::Kernel => KERNEL_FILL,
            Kind::Work => WORK_FILL,
            Kind::Wait => WAIT_FILL,
            Kind::Beside => BESIDE_FILL,
        };
        let what = format!("{}: from {} for {}", r.label, secs_text(r.start), secs_text(r.secs));
        let label = if r.kind == Kind::Kernel { "kernel → zroam" } else { r.label };
        text(&mut s, LEFT - 8.0, y + 12.0, r#" text-anchor="end""#, label);
        let _ = writeln!(s, "<g><title>{}</title>", escape(&what));
        let _ = writeln!(s, r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}"/>"#, n(x0), n(y), n(w), n(BAR_H));
        for &(at, secs) in &r.busy {
            let bx = x(at).clamp(x0, x0 + w);
            let bw = (x(at + secs) - x(at)).max(1.5).min(x0 + w - bx);
            let _ = writeln!(s, r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{BUSY_FILL}"/>"#, n(bx), n(y), n(bw), n(BAR_H));
        }
        let _ = writeln!(s, "</g>");
        text(&mut s, x0 + w + 4.0, y + 12.0, r##" fill="#444444""##, &secs_text(r.secs));
    }
    let _ = writeln!(s, r##"<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" stroke="#000000"/>"##, n(LEFT), n(axis_y), n(LEFT + plot));
    for &v in &ticks {
        let _ = writeln!(s, r##"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="#000000"/>"##, n(x(v)), n(axis_y), n(axis_y + 5.0));
        text(&mut s, x(v), axis_y + 18.0, r#" text-anchor="middle""#, &format!("{} s", tick_text(v, step)));
    }
    let axis = if t.from_kernel { "seconds since the kernel started" } else { "seconds since zroam started" };
    text(&mut s, LEFT + plot / 2.0, axis_y + 34.0, r#" text-anchor="middle""#, axis);
    // The legend, then what was clamped or odd.
    let mut y = axis_y + 56.0;
    let mut lx = 12.0;
    let has = |k: Kind| t.rows.iter().any(|r| r.kind == k);
    let legend = [
        (Kind::Kernel, KERNEL_FILL, "kernel"),
        (Kind::Work, WORK_FILL, "working"),
        (Kind::Wait, WAIT_FILL, "waiting"),
        (Kind::Wait, BUSY_FILL, "probe pass in a wait"),
        (Kind::Beside, BESIDE_FILL, "beside: zfs.ko, drivers"),
    ];
    for (_, fill, what) in legend.into_iter().filter(|(k, ..)| has(*k)) {
        let _ = writeln!(s, r#"<rect x="{}" y="{}" width="12" height="12" fill="{fill}"/>"#, n(lx), n(y - 10.0));
        text(&mut s, lx + 16.0, y, "", what);
        lx += 40.0 + 7.0 * what.len() as f64;
    }
    for note in &t.notes {
        y += 18.0;
        text(&mut s, 12.0, y, r##" fill="#a00000""##, &format!("note: {note}"));
    }
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::super::build;
    use super::super::tests::{bare, fixture};
    use super::*;
    use crate::boot::stage::Stage;

    /// A small well-formedness check, enough for what `render` writes: one root element,
    /// tags balanced, attributes quoted and unique, only the five predefined entities, no
    /// raw `<` or `&` in text or values, no characters XML 1.0 forbids.
    fn well_formed(doc: &str) -> Result<(), String> {
        let body = doc.strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>").ok_or("no XML declaration")?;
        if let Some(c) = doc.chars().find(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || matches!(c, '\u{fffe}' | '\u{ffff}'))
        {
            return Err(format!("forbidden character {c:?}"));
        }
        let entities = |t: &str| -> Result<(), String> {
            for (i, _) in t.match_indices('&') {
                let rest = &t[i..];
                if !["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"].iter().any(|e| rest.starts_with(e)) {
                    return Err(format!("bare & in {t:?}"));
                }
            }
            Ok(())
        };
        let (mut stack, mut roots, mut rest) = (Vec::<String>::new(), 0, body);
        while let Some(open) = rest.find('<') {
            let chars = &rest[..open];
            if stack.is_empty() && !chars.trim().is_empty() {
                return Err(format!("text outside the root: {chars:?}"));
            }
            entities(chars)?;
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop().as_deref() != Some(name) {
                    return Err(format!("</{name}> closes nothing open"));
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name = tag.split_whitespace().next().ok_or("empty tag")?;
            if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                return Err(format!("bad element name {name:?}"));
            }
            // Attributes: name="value" pairs.
            let mut attrs = tag[name.len()..].trim_start();
            let mut seen = Vec::new();
            while !attrs.is_empty() {
                let eq = attrs.find("=\"").ok_or(format!("unquoted attribute in <{tag}>"))?;
                let key = &attrs[..eq];
                if key.is_empty() || seen.contains(&key) || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == ':') {
                    return Err(format!("bad attribute {key:?} in <{tag}>"));
                }
                seen.push(key);
                let end = attrs[eq + 2..].find('"').ok_or("unterminated value")? + eq + 2;
                let value = &attrs[eq + 2..end];
                if value.contains('<') {
                    return Err(format!("< in a value of <{tag}>"));
                }
                entities(value)?;
                attrs = attrs[end + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !empty {
                stack.push(name.to_string());
            }
        }
        match (stack.is_empty(), roots, rest.trim().is_empty()) {
            (true, 1, true) => Ok(()),
            _ => Err(format!("unclosed {stack:?}, {roots} roots, trailing {rest:?}")),
        }
    }

    #[test]
    fn the_checker_refuses_what_is_not_xml() {
        let decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
        assert!(well_formed(&format!("{decl}<a><b/></a>")).is_ok());
        for bad in ["<a><b></a></b>", "<a>x & y</a>", "<a x=1/>", "<a/><b/>", "<a x=\"<\"/>", "<a>", "<a x=\"1\" x=\"2\"/>"] {
            assert!(well_formed(&format!("{decl}{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_fixture_is_a_whole_svg_with_every_row() {
        let t = build(&fixture());
        let doc = render(&t);
        well_formed(&doc).unwrap();
        assert!(doc.contains(r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1""#));
        assert!(!doc.contains("<script") && !doc.contains("href") && !doc.contains("@import") && !doc.contains("url("));
        assert!(doc.contains("<title>zroam boot timeline: booted</title>"));
        assert!(doc.contains(">pool rpool, BE rpool/ROOT/debian</text>"));
        assert!(doc.contains("total 19.82 s since the kernel started"));
        // One label per row, in order, and one bar each (the wait's passes on top of its bar).
        let mut at = 0;
        for label in ["kernel → zroam", "modules", "wait", "zfs-module", "import", "choose-be", "mount", "esp", "pivot"] {
            let needle = format!(r#"text-anchor="end">{}</text>"#, escape(label));
            at += doc[at..].find(&needle).unwrap_or_else(|| panic!("{label} missing or out of order"));
        }
        assert_eq!(doc.matches(BUSY_FILL).count(), 3 + 1, "three probe passes and the legend");
        // Ticks every 2 s over 19.82 s.
        for v in ["0 s", "2 s", "18 s"] {
            assert!(doc.contains(&format!(">{v}</text>")), "{v}");
        }
        assert!(!doc.contains(">20 s</text>"));
    }

    #[test]
    fn bars_are_proportional() {
        let t = build(&bare(Some(1.0), &[(Stage::Import, 0, 1000), (Stage::Mount, 1000, 2000)]));
        let doc = render(&t);
        well_formed(&doc).unwrap();
        let widths: Vec<f64> = doc
            .lines()
            .filter(|l| l.starts_with("<rect") && l.contains("height=\"16.0\""))
            .map(|l| l.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(widths.len(), 3);
        assert!((widths[0] - widths[1]).abs() < 0.2 && (widths[2] - 2.0 * widths[1]).abs() < 0.2, "{widths:?}");
        assert!((widths.iter().sum::<f64>() - (WIDTH - LEFT - RIGHT)).abs() < 0.5, "{widths:?}");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let mut r = fixture();
        let evil = "</text><script>alert(1)</script>&amp;\"'\u{1b}[2J\u{0}\u{fffe}";
        r.boot.pool = Some(serde_json::json!({"decision": "chosen", "name": evil}));
        r.boot.be = Some(serde_json::json!({"dataset": format!("rpool/ROOT/{}", "<".repeat(10_000))}));
        let doc = render(&build(&r));
        well_formed(&doc).unwrap();
        assert!(!doc.contains("<script") && !doc.contains('\u{1b}'));
        assert!(doc.contains("&lt;/text&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;amp;&quot;&apos;[2J"), "{doc}");
        // Bounded: the name is cut, not carried whole.
        assert!(doc.len() < 20_000, "{} bytes", doc.len());
    }

    #[test]
    fn edge_cases_stay_well_formed() {
        let mut failed = bare(Some(f64::NAN), &[(Stage::Modules, u64::MAX, u64::MAX), (Stage::Pivot, 0, 0)]);
        failed.boot.outcome = crate::boot::record::Outcome::Failed;
        failed.boot.failure = Some(crate::boot::failure::fail(Stage::Import, "x", "y"));
        for r in [bare(None, &[]), bare(Some(3.0), &[]), bare(None, &[(Stage::Esp, 0, 0)]), failed.clone()] {
            let doc = render(&build(&r));
            well_formed(&doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            assert!(!doc.contains("\"NaN") && !doc.contains("\"inf"), "a number in an attribute: {doc}");
        }
        let doc = render(&build(&failed));
        assert!(doc.contains("<title>zroam boot timeline: failed (stopped at import)</title>"), "{doc}");
        assert!(doc.contains("note: uptime_at_start"), "{doc}");
        let doc = render(&build(&bare(None, &[])));
        assert!(doc.contains("no stage timings") && doc.contains("no kernel uptime"));
        let doc = render(&build(&bare(None, &[(Stage::Esp, 0, 0)])));
        assert!(doc.contains(r#"width="2.0""#), "a zero-length stage is a thin mark");
        // The legend names only what is drawn.
        assert!(!doc.contains(">kernel</text>") && !doc.contains(">waiting</text>") && doc.contains(">working</text>"), "{doc}");
    }
}
