//! The timeline as a chart for a console: one line per row, a bar scaled to the total.
//! Every line fits in `WIDTH` columns: an 80th column makes some consoles wrap.

use super::{secs_text, tick_step, tick_text, Kind, Timeline};
use std::fmt::Write;

pub const WIDTH: usize = 79;
const NAME_W: usize = 15;
const NUM_W: usize = 8;
/// Where the bars start: name, start and duration, each followed by a space.
const BAR_X: usize = NAME_W + 2 * (NUM_W + 1) + 1;
pub const BAR_W: usize = WIDTH - BAR_X;

/// The columns `[c0, c1)` a span covers: at least one, so a zero-length stage still shows.
fn cells(start: f64, secs: f64, span: f64) -> (usize, usize) {
    let col = |x: f64| (x / span * BAR_W as f64).round() as usize;
    let c0 = col(start).min(BAR_W - 1);
    (c0, col(start + secs).clamp(c0 + 1, BAR_W))
}

fn header(t: &Timeline, s: &mut String) {
    let _ = writeln!(s, "{}", t.headline());
    if let Some(p) = &t.pool {
        let _ = writeln!(s, "pool:  {p}");
    }
    if let Some(be) = &t.be {
        let _ = writeln!(s, "BE:    {be}");
    }
    let total = secs_text(t.total);
    let _ = if t.from_kernel {
        let zroam = secs_text(t.total - t.zroam_start);
        writeln!(s, "total: {total} since the kernel started (kernel {}, zroam {zroam})", secs_text(t.zroam_start))
    } else {
        writeln!(s, "total: {total} since zroam started (the axis starts there: no kernel uptime)")
    };
}

pub fn render(t: &Timeline) -> String {
    let mut s = String::new();
    header(t, &mut s);
    if t.rows.is_empty() {
        let _ = writeln!(s, "no stage timings in this report");
        return s;
    }
    let span = t.total.max(1e-3);
    // Ticks, each labelled where its label fits.
    let step = tick_step(span, BAR_W / 6);
    let (mut labels, mut axis) = (String::new(), vec!['-'; BAR_W]);
    for k in 0.. {
        let v = k as f64 * step;
        if v > span * (1.0 + 1e-9) {
            break;
        }
        let c = ((v / span * BAR_W as f64).round() as usize).min(BAR_W - 1);
        axis[c] = '+';
        let l = tick_text(v, step);
        if c >= labels.chars().count() + usize::from(c > 0) && c + l.len() <= BAR_W {
            labels.push_str(&" ".repeat(c - labels.chars().count()));
            labels.push_str(&l);
        }
    }
    let _ = writeln!(s, "\n{:BAR_X$}{labels}", "");
    let axis: String = axis.into_iter().collect();
    let _ = writeln!(s, "{:<NAME_W$} {:>NUM_W$} {:>NUM_W$} {axis}", "stage", "start", "took");
    for r in &t.rows {
        let mut bar = vec![' '; BAR_W];
        let (c0, c1) = cells(r.start, r.secs, span);
        bar[c0..c1].fill(match r.kind {
            Kind::Wait => '=',
            Kind::Beside => '~',
            Kind::Kernel | Kind::Work => '#',
        });
        for &(at, secs) in &r.busy {
            let (b0, b1) = cells(at, secs, span);
            let b0 = b0.clamp(c0, c1 - 1);
            bar[b0..b1.clamp(b0 + 1, c1)].fill('#');
        }
        let bar: String = bar.into_iter().collect();
        let _ = writeln!(s, "{:<NAME_W$} {:>NUM_W$} {:>NUM_W$} {}", r.label, secs_text(r.start), secs_text(r.secs), bar.trim_end());
    }
    let _ = writeln!(s, "\n#  working (zroam, or a helper it runs)");
    if t.rows.iter().any(|r| r.kind == Kind::Wait) {
        let _ = writeln!(s, "=  waiting: wait for devices (# there: a probe pass), zfs-module for zfs.ko");
    }
    if t.rows.iter().any(|r| r.kind == Kind::Beside) {
        let _ = writeln!(s, "~  beside the stages: zfs.ko's load, the drivers zroam preload loaded first");
    }
    for n in &t.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bare, fixture};
    use super::super::{build, KERNEL, NAME_MAX};
    use super::*;
    use crate::boot::stage::Stage;

    /// The chart's rows: (label, bar) in order, the bar from its first column.
    fn bars(text: &str) -> Vec<(String, String)> {
        let start = text.lines().position(|l| l.starts_with("stage ")).expect("a column header") + 1;
        text.lines().skip(start).take_while(|l| !l.is_empty()).map(|l| (l[..NAME_W].trim().to_string(), l[BAR_X..].to_string())).collect()
    }

    fn fits(text: &str) {
        for l in text.lines() {
            assert!(l.chars().count() <= WIDTH, "{} columns: {l:?}\n{text}", l.chars().count());
        }
    }

    #[test]
    fn the_fixture_bars_are_proportional_and_in_order() {
        let t = build(&fixture());
        let text = render(&t);
        fits(&text);
        assert!(text.starts_with("zroam boot timeline: booted\npool:  rpool\nBE:    rpool/ROOT/debian\n"), "{text}");
        assert!(text.contains("total: 19.82 s since the kernel started (kernel 6.59 s, zroam 13.23 s)"), "{text}");
        let rows = bars(&text);
        let labels: Vec<_> = rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, [KERNEL, "modules", "wait", "zfs-module", "import", "choose-be", "mount", "esp", "pivot"]);
        let scale = BAR_W as f64 / t.total;
        let mut last_start = 0;
        for ((label, bar), row) in rows.iter().zip(&t.rows) {
            let first = bar.find(|c| c != ' ').unwrap();
            let len = bar.trim().chars().count();
            // Length and position within a column of rounding; never less than one.
            assert!(len >= 1 && (len as f64 - row.secs * scale).abs() <= 1.0, "{label}: {len} columns for {} s\n{text}", row.secs);
            assert!((first as f64 - row.start * scale).abs() <= 1.0, "{label} at column {first}\n{text}");
            assert!(first >= last_start, "{label} is drawn before the row above");
            last_start = first;
        }
        // The wait is waiting (=) with its probe passes (#); the pivot, zero-length, is a mark.
        let wait = &rows[2].1;
        assert!(wait.contains('=') && wait.trim().starts_with('#'), "{wait}");
        assert_eq!(rows[8].1.trim(), "#");
        assert!(text.lines().any(|l| l.starts_with("pivot") && l.contains(" 0 ms ")), "{text}");
        assert!(text.contains("=  waiting"));
        assert!(!text.contains("note:"), "{text}");
    }

    #[test]
    fn the_axis_has_ticks_and_labels() {
        let text = render(&build(&fixture()));
        let axis = text.lines().find(|l| l.starts_with("stage ")).unwrap();
        // 19.82 s in steps of 5: 0, 5, 10, 15.
        assert_eq!(axis[BAR_X..].matches('+').count(), 4, "{axis}");
        assert_eq!(axis.chars().count(), WIDTH);
        let labels = text.lines().find(|l| l.starts_with(&" ".repeat(BAR_X)) && !l.trim().is_empty()).unwrap();
        assert_eq!(labels.split_whitespace().collect::<Vec<_>>(), ["0", "5", "10", "15"]);
    }

    #[test]
    fn no_stages_says_so() {
        let text = render(&build(&bare(None, &[])));
        assert!(text.contains("no stage timings in this report"), "{text}");
        assert!(text.contains("no kernel uptime"), "{text}");
        fits(&text);
        // With the uptime alone there is the kernel's row.
        let text = render(&build(&bare(Some(2.5), &[])));
        assert_eq!(bars(&text).len(), 1, "{text}");
    }

    #[test]
    fn zero_lengths_show_a_mark() {
        let text = render(&build(&bare(None, &[(Stage::Modules, 0, 0), (Stage::Import, 0, 0)])));
        fits(&text);
        for (label, bar) in bars(&text) {
            assert_eq!(bar, "#", "{label}\n{text}");
        }
    }

    #[test]
    fn overlaps_draw_over_the_same_columns() {
        let t = build(&bare(Some(0.0), &[(Stage::Import, 0, 2000), (Stage::Mount, 500, 1000)]));
        let text = render(&t);
        let rows = bars(&text);
        assert_eq!(rows.len(), 3, "{text}");
        let (a, b) = (&rows[1].1, &rows[2].1);
        assert!(b.find('#').unwrap() > 0 && b.find('#').unwrap() < a.trim_end().len(), "{text}");
        assert!(text.contains("note: mount starts before an earlier row ends"), "{text}");
    }

    #[test]
    fn hostile_numbers_and_names_do_not_break_it() {
        let mut r = bare(Some(f64::NAN), &[(Stage::Modules, u64::MAX, u64::MAX), (Stage::Import, 3, 0)]);
        r.boot.pool = Some(serde_json::json!({"decision": "chosen", "name": format!("\u{1b}]0;pwned\u{7}{}", "x".repeat(300))}));
        let text = render(&build(&r));
        fits(&text);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("note: uptime_at_start"), "{text}");
        assert!(text.contains("clamped"), "{text}");
        let pool = text.lines().find(|l| l.starts_with("pool:")).unwrap();
        assert_eq!(pool.chars().count(), "pool:  ".len() + NAME_MAX);
        for v in [-1.0, f64::INFINITY, 1e300, f64::MIN_POSITIVE] {
            let text = render(&build(&bare(Some(v), &[(Stage::Wait, 0, 1)])));
            fits(&text);
        }
    }
}
