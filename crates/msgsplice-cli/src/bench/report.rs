//! What a benchmark run produces, and its text form.
//!
//! A [`Report`] holds one [`SectionReport`] per section. A section either
//! ran and produced a [`Table`], was skipped (with the reason, e.g. a
//! missing peer tool), or failed (e.g. the receiver saw wrong bytes). A
//! table is a list of [`Group`]s (one per message size, or per allocator
//! operation); each group has its own baseline row, and every other row's
//! ratio is taken against it.
//!
//! The same structures serialise to the `--json` file (they round-trip
//! through `serde_json`) and are drawn by [`render_section`] as the text
//! tables printed on stdout, and by `svg` as the chart.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::stats::{ratio, Summary};

/// Everything one `msgsplice bench` run measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always "msgsplice bench".
    pub tool: String,
    /// The crate version that measured.
    pub version: String,
    /// The machine it ran on.
    pub host: Host,
    /// The options in force.
    pub settings: Settings,
    /// One entry per section, in the order run.
    pub sections: Vec<SectionReport>,
}

/// The machine a report comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// CPUs this process may run on.
    pub cpus: usize,
    /// The CPU's model name, from /proc/cpuinfo.
    pub cpu_model: String,
    /// The kernel release, from /proc/sys/kernel/osrelease.
    pub kernel: String,
    /// One-minute load average when the run started (other work on the
    /// machine disturbs the numbers); `None` if /proc does not say.
    pub load_at_start: Option<f64>,
}

impl Host {
    /// Reads the facts about this machine (best effort: "unknown" where
    /// /proc does not say).
    pub fn current() -> Host {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse().ok()));
        Host {
            cpus,
            cpu_model,
            kernel,
            load_at_start,
        }
    }
}

/// The options a report was measured with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Section ids selected.
    pub sections: Vec<String>,
    /// Runs per row.
    pub runs: usize,
    /// Per-run duration forced by `--duration-ms` (else each section's
    /// default).
    pub duration_ms: Option<u64>,
    /// Payload sizes of the send sections, in bytes.
    pub sizes: Vec<usize>,
    /// Whether `--quick` was given.
    pub quick: bool,
}

/// One section's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectionReport {
    /// Short id, as given to `--sections` ("alloc", "tcp", ...).
    pub id: String,
    /// What the section measures, in a line.
    pub title: String,
    /// Its table, or why there is none.
    pub outcome: Outcome,
}

/// Whether a section produced numbers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// It ran.
    Ran(Table),
    /// It cannot run on this machine; the reason says what is missing.
    Skipped {
        /// For example "nfs-cat (Debian package libnfs-utils) is missing ...".
        reason: String,
    },
    /// It started and went wrong (an I/O error, bytes that did not verify).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// A section's results: groups of rows, each group with its baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Unit of the main value ("ns/op", "GB/s").
    pub metric: String,
    /// True if larger main values are better (throughput), false if
    /// smaller are (time per operation).
    pub higher_is_better: bool,
    /// Heading of the ratio column ("vs Bytes").
    pub ratio_label: String,
    /// Lines explaining what was measured, printed under the title.
    pub about: Vec<String>,
    /// Units of further per-row values, in display order.
    pub extra_columns: Vec<String>,
    /// The rows, grouped.
    pub groups: Vec<Group>,
    /// Lines printed after the table (references, rows that could not run).
    pub notes: Vec<String>,
}

/// Rows measured under the same conditions, compared with one baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// What the rows share ("N = 16 KiB", "single thread, memdup 256 B").
    pub name: String,
    /// The rows, baseline included.
    pub rows: Vec<Row>,
}

/// One contender under one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The contender ("FragCache", "writev").
    pub name: String,
    /// True for the row the others are compared with.
    pub baseline: bool,
    /// The main value over the runs.
    pub value: Summary,
    /// Median of this row against the group's baseline median, above 1.0
    /// meaning better; `None` in a group without a baseline.
    pub ratio: Option<f64>,
    /// Further values, keyed by a name from [`Table::extra_columns`].
    pub extras: BTreeMap<String, Summary>,
}

impl Table {
    /// An empty table of `metric` values.
    pub fn new(metric: &str, higher_is_better: bool, ratio_label: &str) -> Table {
        Table {
            metric: metric.into(),
            higher_is_better,
            ratio_label: ratio_label.into(),
            about: Vec::new(),
            extra_columns: Vec::new(),
            groups: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Fills in every row's ratio against its group's baseline.
    pub fn compute_ratios(&mut self) {
        let better = self.higher_is_better;
        for g in &mut self.groups {
            let base = g.rows.iter().find(|r| r.baseline).map(|r| r.value.median);
            for r in &mut g.rows {
                r.ratio = base.and_then(|b| ratio(r.value.median, b, better));
            }
        }
    }
}

impl Group {
    /// An empty group.
    pub fn new(name: impl Into<String>) -> Group {
        Group {
            name: name.into(),
            rows: Vec::new(),
        }
    }
}

impl Row {
    /// A row of `samples` (one per run); its ratio is filled in later by
    /// [`Table::compute_ratios`]. `None` if there are no samples.
    pub fn new(name: impl Into<String>, baseline: bool, samples: &[f64]) -> Option<Row> {
        Some(Row {
            name: name.into(),
            baseline,
            value: Summary::of(samples)?,
            ratio: None,
            extras: BTreeMap::new(),
        })
    }

    /// Adds a further value (ignored if there are no samples).
    pub fn with_extra(mut self, column: &str, samples: &[f64]) -> Row {
        if let Some(s) = Summary::of(samples) {
            self.extras.insert(column.into(), s);
        }
        self
    }
}

/// A number in at most about four characters of significant digits: "0",
/// "0.412", "6.12", "27.6", "312", "9999", "12.3k", "1.23M".
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    for (scale, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")] {
        if a >= scale {
            let v = x / if suffix == "k" { 1e3 } else { scale };
            return format!("{}{suffix}", sig3(v));
        }
    }
    sig3(x)
}

/// Three significant digits, no exponent.
fn sig3(x: f64) -> String {
    let a = x.abs();
    let decimals = if a >= 100.0 {
        0
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    format!("{x:.decimals$}")
}

/// The text block for one section: a title line, the explanation, then
/// per group a heading line with the column names and one line per row.
pub fn render_section(s: &SectionReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {}: {} ==", s.id, s.title);
    match &s.outcome {
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "   skipped: {reason}");
        }
        Outcome::Failed { error } => {
            let _ = writeln!(out, "   FAILED: {error}");
        }
        Outcome::Ran(t) => render_table(&mut out, t),
    }
    out
}

fn render_table(out: &mut String, t: &Table) {
    for line in &t.about {
        let _ = writeln!(out, "   {line}");
    }
    // Cells of every row first, so that the widths fit the whole table.
    struct Line {
        name: String,
        cells: Vec<String>,
        tail: &'static str,
    }
    let mut heads: Vec<String> = vec![t.metric.clone(), "min..max".into()];
    heads.extend(t.extra_columns.iter().cloned());
    heads.push(t.ratio_label.clone());
    let mut blocks: Vec<(String, Vec<Line>)> = Vec::new();
    for g in &t.groups {
        let lines = g
            .rows
            .iter()
            .map(|r| {
                let mut cells = vec![
                    fmt_num(r.value.median),
                    format!("{}..{}", fmt_num(r.value.min), fmt_num(r.value.max)),
                ];
                for c in &t.extra_columns {
                    cells.push(r.extras.get(c).map_or("-".into(), |s| fmt_num(s.median)));
                }
                cells.push(r.ratio.map_or("-".into(), |x| format!("{x:.2}x")));
                Line {
                    name: r.name.clone(),
                    cells,
                    tail: if r.baseline { "  baseline" } else { "" },
                }
            })
            .collect();
        blocks.push((g.name.clone(), lines));
    }
    let name_w = blocks
        .iter()
        .flat_map(|(g, ls)| std::iter::once(g.len()).chain(ls.iter().map(|l| l.name.len() + 2)))
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            blocks
                .iter()
                .flat_map(|(_, ls)| ls.iter().map(move |l| l.cells[i].len()))
                .chain(std::iter::once(heads[i].len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (gname, lines) in &blocks {
        let _ = writeln!(out);
        let _ = write!(out, "   {gname:<name_w$}");
        for (h, w) in heads.iter().zip(&widths) {
            let _ = write!(out, "  {h:>w$}");
        }
        let _ = writeln!(out);
        for l in lines {
            let _ = write!(out, "     {:<w$}", l.name, w = name_w - 2);
            for (c, w) in l.cells.iter().zip(&widths) {
                let _ = write!(out, "  {c:>w$}");
            }
            let _ = writeln!(out, "{}", l.tail);
        }
    }
    if !t.notes.is_empty() {
        let _ = writeln!(out);
        for n in &t.notes {
            let _ = writeln!(out, "   {n}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small report with every kind of outcome, for the JSON and SVG tests.
    pub(crate) fn sample_report() -> Report {
        let mut t = Table::new("ns/op", false, "vs Bytes");
        t.about.push("one alloc+copy+drop cycle".into());
        t.extra_columns.push("allocs/op".into());
        let mut g = Group::new("single thread, memdup 256 B");
        g.rows.push(
            Row::new("FragCache", false, &[5.0, 6.0, 7.0])
                .unwrap()
                .with_extra("allocs/op", &[0.0]),
        );
        g.rows
            .push(Row::new("Bytes::copy_from_slice", true, &[30.0, 24.0, 27.0]).unwrap());
        g.rows
            .push(Row::new("Box<[u8]> & co", false, &[54.0, 54.0, 54.0]).unwrap());
        t.groups.push(g);
        t.notes.push("a note".into());
        t.compute_ratios();
        Report {
            tool: "msgsplice bench".into(),
            version: "0.0.0".into(),
            host: Host {
                cpus: 2,
                cpu_model: "test".into(),
                kernel: "6.x".into(),
                load_at_start: Some(0.25),
            },
            settings: Settings {
                sections: vec!["alloc".into(), "tcp".into(), "unix".into()],
                runs: 3,
                duration_ms: None,
                sizes: vec![1024],
                quick: false,
            },
            sections: vec![
                SectionReport {
                    id: "alloc".into(),
                    title: "allocator".into(),
                    outcome: Outcome::Ran(t),
                },
                SectionReport {
                    id: "tcp".into(),
                    title: "send strategies".into(),
                    outcome: Outcome::Skipped {
                        reason: "no reason".into(),
                    },
                },
                SectionReport {
                    id: "unix".into(),
                    title: "send strategies".into(),
                    outcome: Outcome::Failed {
                        error: "bad bytes".into(),
                    },
                },
            ],
        }
    }

    #[test]
    fn ratios_against_group_baseline() {
        let r = sample_report();
        let Outcome::Ran(t) = &r.sections[0].outcome else {
            panic!("first section ran")
        };
        let rows = &t.groups[0].rows;
        // Lower is better: baseline median 27 / row median 6 = 4.5x.
        assert_eq!(rows[0].ratio, Some(4.5));
        assert_eq!(rows[1].ratio, Some(1.0));
        assert_eq!(rows[2].ratio, Some(0.5));
    }

    #[test]
    fn group_without_baseline_has_no_ratio() {
        let mut t = Table::new("GB/s", true, "ratio");
        let mut g = Group::new("reference");
        g.rows.push(Row::new("iperf3", false, &[3.0]).unwrap());
        t.groups.push(g);
        t.compute_ratios();
        assert_eq!(t.groups[0].rows[0].ratio, None);
    }

    #[test]
    fn json_round_trip() {
        let r = sample_report();
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["sections"][0]["outcome"]["status"], "ran");
        assert_eq!(v["sections"][1]["outcome"]["status"], "skipped");
        assert_eq!(
            v["sections"][0]["outcome"]["groups"][0]["rows"][0]["value"]["median"],
            6.0
        );
    }

    #[test]
    fn number_format() {
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(0.41234), "0.412");
        assert_eq!(fmt_num(6.123), "6.12");
        assert_eq!(fmt_num(27.64), "27.6");
        assert_eq!(fmt_num(312.4), "312");
        assert_eq!(fmt_num(9999.0), "9999");
        assert_eq!(fmt_num(12_345.0), "12.3k");
        assert_eq!(fmt_num(1_234_567.0), "1.23M");
        assert_eq!(fmt_num(3.0), "3.00");
    }

    #[test]
    fn text_table_shape() {
        let r = sample_report();
        let text = render_section(&r.sections[0]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "== alloc: allocator ==");
        let head = lines
            .iter()
            .find(|l| l.contains("single thread, memdup 256 B"))
            .unwrap();
        for col in ["ns/op", "min..max", "allocs/op", "vs Bytes"] {
            assert!(head.contains(col), "{head}");
        }
        let frag = lines.iter().find(|l| l.contains("FragCache")).unwrap();
        assert!(frag.contains("6.00") && frag.contains("5.00..7.00") && frag.ends_with("4.50x"));
        let base = lines.iter().find(|l| l.contains("Bytes::copy")).unwrap();
        assert!(base.ends_with("1.00x  baseline"), "{base}");
        // Columns line up: every row of the group is as long as the others
        // up to the ratio column.
        let ratio_end = |l: &str| l.find('x').map(|_| l.trim_end_matches("  baseline").len());
        assert_eq!(ratio_end(frag), ratio_end(base));
        assert!(render_section(&r.sections[1]).contains("skipped: no reason"));
        assert!(render_section(&r.sections[2]).contains("FAILED: bad bytes"));
    }
}
