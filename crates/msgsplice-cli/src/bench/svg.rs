//! The `--svg` chart: every ratio of a report as a horizontal bar, one
//! block per section, drawn by hand.
//!
//! The scale is logarithmic (base 2) and centred on the 1.0x line, the
//! baseline: a bar going right is that much better than its baseline, a bar
//! going left that much worse, and 2x better looks as long as 2x worse.
//! Baseline rows are the line itself and are not drawn; rows without a
//! ratio (references such as iperf3 or memcpy) are written as text under
//! their block, and sections that did not run say why.

use std::fmt::Write as _;

use super::report::{fmt_num, Group, Outcome, Report, Row, SectionReport, Table};

const WIDTH: f64 = 1000.0;
const ROW_H: f64 = 17.0;
const FONT: &str = "font-family=\"DejaVu Sans, Arial, sans-serif\"";
/// Average width of a character at font-size 12 (for sizing the label
/// column; generous, since fonts differ).
const CHAR_W: f64 = 6.8;
const BETTER: &str = "#2a9d8f";
const WORSE: &str = "#e76f51";

/// Escapes text for XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

/// Horizontal placement: log2 of the ratio mapped onto the bar area.
struct Scale {
    lo: i32,
    hi: i32,
    x0: f64,
    x1: f64,
}

impl Scale {
    fn x(&self, ratio: f64) -> f64 {
        let l = ratio.log2().clamp(self.lo as f64, self.hi as f64);
        self.x0 + (l - self.lo as f64) / (self.hi - self.lo) as f64 * (self.x1 - self.x0)
    }
}

/// Every ratio in the report (baselines excluded).
fn ratios(r: &Report) -> impl Iterator<Item = f64> + '_ {
    tables(r).flat_map(|(_, t)| {
        t.groups
            .iter()
            .flat_map(|g| g.rows.iter())
            .filter(|row| !row.baseline)
            .filter_map(|row| row.ratio)
    })
}

fn tables(r: &Report) -> impl Iterator<Item = (&SectionReport, &Table)> {
    r.sections.iter().filter_map(|s| match &s.outcome {
        Outcome::Ran(t) => Some((s, t)),
        _ => None,
    })
}

/// The chart as an SVG document.
pub fn render(r: &Report) -> String {
    let label_chars = tables(r)
        .flat_map(|(_, t)| t.groups.iter().flat_map(|g| g.rows.iter()))
        .map(|row| row.name.len() + 2)
        .chain(tables(r).flat_map(|(_, t)| t.groups.iter().map(|g| g.name.len())))
        .max()
        .unwrap_or(20);
    let label_w = (label_chars as f64 * CHAR_W).clamp(160.0, 460.0);
    let (mut lo, mut hi) = (-1i32, 1i32);
    for q in ratios(r) {
        if q > 0.0 && q.is_finite() {
            lo = lo.min(q.log2().floor() as i32);
            hi = hi.max(q.log2().ceil() as i32);
        }
    }
    let scale = Scale {
        lo: lo.max(-5),
        hi: hi.min(5),
        x0: 20.0 + label_w,
        x1: WIDTH - 150.0,
    };

    let mut body = String::new();
    let mut y = 34.0;
    let _ = writeln!(
        body,
        "<text x=\"20\" y=\"{y}\" font-size=\"18\" font-weight=\"bold\" {FONT}>{}</text>",
        esc(&format!(
            "msgsplice bench {}: ratio against each group's baseline (log scale)",
            r.version
        ))
    );
    y += 18.0;
    let _ = writeln!(
        body,
        "<text x=\"20\" y=\"{y}\" font-size=\"12\" fill=\"#555\" {FONT}>{}</text>",
        esc(&format!(
            "{} CPUs ({}), Linux {}, load {} at start; median of {} runs; right of 1.0x = better, left = worse{}",
            r.host.cpus,
            r.host.cpu_model,
            r.host.kernel,
            r.host.load_at_start.map_or("unknown".into(), |l| format!("{l:.2}")),
            r.settings.runs,
            if r.settings.quick { "; --quick: not meaningful" } else { "" }
        ))
    );
    y += 16.0;
    for s in &r.sections {
        y += 22.0;
        let _ = writeln!(
            body,
            "<text x=\"20\" y=\"{y}\" font-size=\"15\" font-weight=\"bold\" {FONT}>{}</text>",
            esc(&format!("{}: {}", s.id, s.title))
        );
        match &s.outcome {
            Outcome::Skipped { reason } => {
                y += ROW_H;
                text_line(&mut body, y, &format!("skipped: {reason}"), "#555");
            }
            Outcome::Failed { error } => {
                y += ROW_H;
                text_line(&mut body, y, &format!("FAILED: {error}"), "#b00");
            }
            Outcome::Ran(t) => y = draw_table(&mut body, y, t, &scale),
        }
    }
    y += 20.0;
    let mut out = String::new();
    let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{y}\" \
         viewBox=\"0 0 {WIDTH} {y}\">"
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{y}\" fill=\"white\"/>"
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

fn text_line(body: &mut String, y: f64, text: &str, color: &str) {
    let _ = writeln!(
        body,
        "<text x=\"30\" y=\"{y}\" font-size=\"12\" fill=\"{color}\" {FONT}>{}</text>",
        esc(text)
    );
}

/// The rows of `g` drawn as bars: not the baseline, and with a ratio.
fn bars(g: &Group) -> impl Iterator<Item = (&Row, f64)> {
    g.rows
        .iter()
        .filter(|r| !r.baseline)
        .filter_map(|r| r.ratio.map(|q| (r, q)))
}

/// Draws one section from `y` down: the legend, the grid, each group's
/// bars, the values without a ratio, the notes. Returns the new `y`.
fn draw_table(body: &mut String, mut y: f64, t: &Table, sc: &Scale) -> f64 {
    let has_bars = t.groups.iter().any(|g| bars(g).next().is_some());
    if has_bars {
        y = draw_legend(body, y, t);
        y = draw_grid(body, y, t, sc);
        for g in &t.groups {
            y = draw_group_bars(body, y, g, t, sc);
        }
        y += 6.0;
    }
    y = draw_plain_values(body, y, t, has_bars);
    for n in &t.notes {
        y += ROW_H;
        text_line(body, y, n, "#555");
    }
    y
}

/// The line that says what the bars measure and what 1.0x is.
fn draw_legend(body: &mut String, y: f64, t: &Table) -> f64 {
    let mut baselines: Vec<&str> = Vec::new();
    for r in t.groups.iter().flat_map(|g| &g.rows).filter(|r| r.baseline) {
        if !baselines.contains(&r.name.as_str()) {
            baselines.push(&r.name);
        }
    }
    let y = y + ROW_H;
    text_line(
        body,
        y,
        &format!(
            "{} ({}); 1.0x = {}",
            t.metric,
            if t.higher_is_better {
                "higher is better"
            } else {
                "lower is better"
            },
            baselines.join(", ")
        ),
        "#555",
    );
    y
}

/// Axis labels on the next line, and grid lines down over the rows that
/// [`draw_group_bars`] draws (a heading and the bars of each group that
/// has any). Returns the `y` where the rows start.
fn draw_grid(body: &mut String, y: f64, t: &Table, sc: &Scale) -> f64 {
    let y = y + ROW_H;
    let top = y + 4.0;
    let rows: usize = t
        .groups
        .iter()
        .map(|g| match bars(g).count() {
            0 => 0,
            n => n + 1,
        })
        .sum();
    let bottom = top + rows as f64 * ROW_H + 4.0;
    for e in sc.lo..=sc.hi {
        let x = sc.x(2f64.powi(e));
        let label = if e >= 0 {
            format!("{}x", 1u64 << e)
        } else {
            format!("1/{}x", 1u64 << -e)
        };
        let (stroke, w) = if e == 0 { ("#222", 1.5) } else { ("#ccc", 1.0) };
        let _ = writeln!(
            body,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{bottom}\" stroke=\"{stroke}\" stroke-width=\"{w}\"/>"
        );
        let _ = writeln!(
            body,
            "<text x=\"{x:.1}\" y=\"{y}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\" {FONT}>{}</text>",
            esc(&label)
        );
    }
    top
}

/// One group's heading and a bar per row with a ratio (nothing if it has
/// none). Returns the new `y`.
fn draw_group_bars(body: &mut String, mut y: f64, g: &Group, t: &Table, sc: &Scale) -> f64 {
    if bars(g).next().is_none() {
        return y;
    }
    y += ROW_H;
    let _ = writeln!(
        body,
        "<text x=\"24\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\" fill=\"#333\" {FONT}>{}</text>",
        y - 4.0,
        esc(&g.name)
    );
    for (r, q) in bars(g) {
        y += ROW_H;
        let (x1, x2) = (sc.x(1.0), sc.x(q));
        let (left, w) = (x1.min(x2), (x2 - x1).abs().max(1.0));
        let color = if q >= 1.0 { BETTER } else { WORSE };
        let _ = writeln!(
            body,
            "<text x=\"36\" y=\"{:.1}\" font-size=\"12\" {FONT}>{}</text>",
            y - 4.0,
            esc(&r.name)
        );
        let _ = writeln!(
            body,
            "<rect x=\"{left:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
            y - ROW_H + 3.0,
            ROW_H - 5.0
        );
        // Worse rows put their label right of the 1.0x line, so that it
        // never runs into the row names.
        let tx = if q >= 1.0 { x2 + 4.0 } else { x1 + 4.0 };
        let _ = writeln!(
            body,
            "<text x=\"{tx:.1}\" y=\"{:.1}\" font-size=\"11\" {FONT}>{}</text>",
            y - 4.0,
            esc(&format!(
                "{q:.2}x  ({} {})",
                fmt_num(r.value.median),
                t.metric
            ))
        );
    }
    y
}

/// Values without a ratio, as text: references, and the rows of a table
/// that has no bars at all. Returns the new `y`.
fn draw_plain_values(body: &mut String, mut y: f64, t: &Table, has_bars: bool) -> f64 {
    for g in &t.groups {
        for r in &g.rows {
            if r.ratio.is_none() || (!has_bars && r.baseline) {
                y += ROW_H;
                text_line(
                    body,
                    y,
                    &format!(
                        "{} ({}): {} {}",
                        r.name,
                        g.name,
                        fmt_num(r.value.median),
                        t.metric
                    ),
                    "#333",
                );
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::tests::sample_report;

    /// A small XML well-formedness check: tags nest and close, attribute
    /// values are quoted, text holds no raw `<` and only known entities.
    pub(crate) fn check_well_formed(doc: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = doc;
        let mut root_seen = false;
        while let Some(i) = rest.find('<') {
            check_text(&rest[..i])?;
            rest = &rest[i..];
            let end = rest.find('>').ok_or("unclosed tag")?;
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if let Some(t) = tag.strip_prefix('?') {
                if !t.ends_with('?') {
                    return Err(format!("bad declaration <{tag}>"));
                }
            } else if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else {
                let selfclosing = tag.ends_with('/');
                let inner = tag.trim_end_matches('/');
                let name = inner.split_whitespace().next().ok_or("empty tag")?;
                check_attrs(&inner[name.len()..])?;
                if stack.is_empty() {
                    if root_seen {
                        return Err("two root elements".into());
                    }
                    root_seen = true;
                }
                if !selfclosing {
                    stack.push(name.to_string());
                }
            }
        }
        check_text(rest)?;
        if !stack.is_empty() {
            return Err(format!("unclosed {stack:?}"));
        }
        root_seen.then_some(()).ok_or("no root element".into())
    }

    fn check_text(t: &str) -> Result<(), String> {
        let mut s = t;
        while let Some(i) = s.find('&') {
            let semi = s[i..].find(';').ok_or("bare &")?;
            let ent = &s[i + 1..i + semi];
            if !["amp", "lt", "gt", "quot", "apos"].contains(&ent) {
                return Err(format!("unknown entity &{ent};"));
            }
            s = &s[i + semi + 1..];
        }
        Ok(())
    }

    fn check_attrs(mut a: &str) -> Result<(), String> {
        loop {
            a = a.trim_start();
            if a.is_empty() {
                return Ok(());
            }
            let eq = a.find('=').ok_or(format!("attribute without value: {a}"))?;
            let after = &a[eq + 1..];
            let v = after
                .strip_prefix('"')
                .ok_or(format!("unquoted value: {a}"))?;
            let close = v.find('"').ok_or("unterminated value")?;
            check_text(&v[..close])?;
            if v[..close].contains('<') {
                return Err("< in attribute".into());
            }
            a = &v[close + 1..];
        }
    }

    #[test]
    fn chart_is_well_formed_and_labelled() {
        let svg = render(&sample_report());
        check_well_formed(&svg).unwrap();
        assert!(svg.starts_with("<?xml"));
        // Section titles, group and row labels, escaped.
        assert!(svg.contains("alloc: allocator"));
        assert!(svg.contains("single thread, memdup 256 B"));
        assert!(svg.contains(">FragCache<"));
        assert!(svg.contains("Box&lt;[u8]&gt; &amp; co"));
        // The 1.0x reference line and the ratios' labels.
        assert!(svg.contains(">1x<"));
        assert!(svg.contains("4.50x  (6.00 ns/op)") && svg.contains("0.50x  (54.0 ns/op)"));
        assert!(svg.contains("1.0x = Bytes::copy_from_slice"));
        // Sections that did not run say why.
        assert!(svg.contains("skipped: no reason"));
        assert!(svg.contains("FAILED: bad bytes"));
        // Baselines are the line, not a bar.
        assert!(!svg.contains(">1.00x"));
    }

    #[test]
    fn the_checker_catches_mistakes() {
        assert!(check_well_formed("<a><b></a></b>").is_err());
        assert!(check_well_formed("<a>x < y</a>").is_err());
        assert!(check_well_formed("<a x=1/>").is_err());
        assert!(check_well_formed("<a>&nbsp;</a>").is_err());
        assert!(check_well_formed("<a><b/></a>").is_ok());
    }

    #[test]
    fn scale_is_logarithmic_around_one() {
        let sc = Scale {
            lo: -2,
            hi: 2,
            x0: 0.0,
            x1: 400.0,
        };
        assert_eq!(sc.x(1.0), 200.0);
        assert_eq!(sc.x(2.0) - sc.x(1.0), sc.x(1.0) - sc.x(0.5));
        assert_eq!(sc.x(100.0), 400.0);
    }
}
