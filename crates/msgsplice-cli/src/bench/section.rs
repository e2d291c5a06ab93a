//! The skeleton of a timed section, shared by `tcp`/`unix`/`file`, `udp`
//! and `tls`: every group of a table is `runs` runs of its rows, the rows
//! taking turns within each run (so that a change in the shared machine's
//! speed hits them alike); each row collects one sample per run of its main
//! value and of each extra column; the table then shows the median and
//! min..max of each ([`Row::new`]), and, where asked, the *per-run ratio*:
//! a row's main value over the baseline's in the same run, as a median over
//! runs, steadier than the ratio of medians when runs differ in speed.
//!
//! What runs in one turn (a connection, a slice of sending, its own
//! warm-up messages before counting) is the section's business; this
//! module only orders the turns, keeps the samples and builds the rows.

use std::time::Duration;

use super::report::{Group, Outcome, Row};
use super::Progress;

/// One turn's values of one row: the main value, then one per extra column
/// (`None`: not measured in this run, such as allocations without the
/// counting allocator; left out of that column's samples).
pub type Turn = Vec<Option<f64>>;

/// The samples of one group: per row, per column (main value first), one
/// value per run, in run order.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSamples {
    rows: Vec<Vec<Vec<f64>>>,
}

impl GroupSamples {
    /// No samples yet, for `rows` rows of `columns` columns (main value
    /// included).
    pub fn new(rows: usize, columns: usize) -> GroupSamples {
        GroupSamples {
            rows: vec![vec![Vec::new(); columns]; rows],
        }
    }

    /// Adds one run's values of `row`.
    pub fn push(&mut self, row: usize, turn: &[Option<f64>]) {
        for (col, v) in self.rows[row].iter_mut().zip(turn) {
            col.extend(*v);
        }
    }

    /// The samples of `row` in column `col` (0: the main value).
    pub fn column(&self, row: usize, col: usize) -> &[f64] {
        &self.rows[row][col]
    }

    /// Per run, `row`'s main value over `baseline`'s in the same run (runs
    /// where the baseline measured nothing are left out).
    pub fn per_run_ratio(&self, row: usize, baseline: usize) -> Vec<f64> {
        self.rows[row][0]
            .iter()
            .zip(&self.rows[baseline][0])
            .filter(|(_, &b)| b > 0.0)
            .map(|(x, b)| x / b)
            .collect()
    }

    /// The group `name`: one row per name in `rows` (the first is the
    /// baseline) with the main value and the extra columns `extras`, in
    /// the order of the samples' columns; with `per_run` also a column of
    /// that name holding each row's [`per_run_ratio`](Self::per_run_ratio)
    /// against the first row.
    pub fn into_group(
        &self,
        name: String,
        rows: &[&str],
        extras: &[&str],
        per_run: Option<&str>,
    ) -> Group {
        let mut g = Group::new(name);
        for (i, row_name) in rows.iter().enumerate() {
            let Some(mut r) = Row::new(*row_name, i == 0, self.column(i, 0)) else {
                continue;
            };
            for (c, extra) in extras.iter().enumerate() {
                r = r.with_extra(extra, self.column(i, c + 1));
            }
            if let Some(col) = per_run {
                r = r.with_extra(col, &self.per_run_ratio(i, 0));
            }
            g.rows.push(r);
        }
        g
    }
}

/// `runs` runs of the rows `names` in turn, within each run in the order
/// given: `turn(run, row)` measures one row once. Reports each turn through
/// `progress`; the first error stops everything and names the group.
pub fn interleaved(
    group: &str,
    names: &[&str],
    runs: usize,
    columns: usize,
    progress: &mut Progress,
    mut turn: impl FnMut(usize, usize) -> Result<Turn, String>,
) -> Result<GroupSamples, String> {
    let mut samples = GroupSamples::new(names.len(), columns);
    for run in 0..runs {
        for (row, name) in names.iter().enumerate() {
            progress.step(format_args!("{group}: {name}, run {}/{runs}", run + 1));
            let values = turn(run, row).map_err(|e| format!("{group}: {e}"))?;
            samples.push(row, &values);
        }
    }
    Ok(samples)
}

/// `runs` runs in which the rows share the time among themselves (the
/// section interleaves them inside `run_all`, which returns one turn per
/// row, in row order).
pub fn together(
    group: &str,
    rows: usize,
    runs: usize,
    columns: usize,
    progress: &mut Progress,
    mut run_all: impl FnMut(usize) -> Result<Vec<Turn>, String>,
) -> Result<GroupSamples, String> {
    let mut samples = GroupSamples::new(rows, columns);
    for run in 0..runs {
        progress.step(format_args!("{group}: run {}/{runs}", run + 1));
        let turns = run_all(run).map_err(|e| format!("{group}: {e}"))?;
        for (row, values) in turns.iter().enumerate() {
            samples.push(row, values);
        }
    }
    Ok(samples)
}

/// The line of a table's description that says how its numbers were
/// taken: `what` (unit and direction), the runs, and what the ratio
/// compares with.
pub fn about_runs(what: &str, runs: usize, run: Duration, baseline: &str) -> String {
    format!(
        "{what}; median of {runs} runs of {} ms, spread min..max; ratio = row / {baseline}",
        run.as_millis()
    )
}

/// The note a table carries when heap allocations could not be counted.
pub fn allocs_note(column: &str) -> Option<String> {
    (!crate::alloc_count::installed())
        .then(|| format!("{column}: not measured (the counting allocator is not installed)"))
}

/// The outcome of a section that measured `table`, or failed with an error.
pub fn outcome(table: Result<super::report::Table, String>) -> Outcome {
    match table {
        Ok(t) => Outcome::Ran(t),
        Err(error) => Outcome::Failed { error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_take_turns_and_keep_their_samples() {
        let mut order = Vec::new();
        let s = interleaved(
            "g",
            &["a", "b"],
            3,
            2,
            &mut Progress::silent(),
            |run, row| {
                order.push((run, row));
                let v = (10 * row + run + 1) as f64;
                // Row b's extra column is measured only in run 1.
                Ok(vec![Some(v), (row == 0 || run == 1).then_some(-v)])
            },
        )
        .unwrap();
        assert_eq!(order, [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(s.column(0, 0), [1.0, 2.0, 3.0]);
        assert_eq!(s.column(1, 0), [11.0, 12.0, 13.0]);
        assert_eq!(s.column(1, 1), [-12.0]);
        let g = s.into_group("g".into(), &["a", "b"], &["x"], Some("paired"));
        assert_eq!(g.rows.len(), 2);
        assert!(g.rows[0].baseline && !g.rows[1].baseline);
        assert_eq!(g.rows[1].value.median, 12.0);
        assert_eq!(g.rows[1].extras["x"].samples, [-12.0]);
        assert_eq!(g.rows[1].extras["paired"].samples, [11.0, 6.0, 13.0 / 3.0]);
        assert_eq!(g.rows[0].extras["paired"].median, 1.0);
    }

    #[test]
    fn an_error_names_the_group_and_stops() {
        let mut turns = 0;
        let e = interleaved(
            "N = 1 KiB",
            &["a"],
            5,
            1,
            &mut Progress::silent(),
            |_, _| {
                turns += 1;
                Err("broken".into())
            },
        )
        .unwrap_err();
        assert_eq!(e, "N = 1 KiB: broken");
        assert_eq!(turns, 1);
    }

    #[test]
    fn runs_together_fill_every_row() {
        let s = together("g", 3, 2, 1, &mut Progress::silent(), |run| {
            Ok((0..3)
                .map(|row| vec![Some((run * 3 + row) as f64)])
                .collect())
        })
        .unwrap();
        assert_eq!(s.column(2, 0), [2.0, 5.0]);
        assert_eq!(s.per_run_ratio(2, 1), [2.0, 1.25]);
    }

    #[test]
    fn per_run_ratio_skips_runs_without_a_baseline() {
        let mut s = GroupSamples::new(2, 1);
        s.push(0, &[Some(2.0)]);
        s.push(1, &[Some(3.0)]);
        s.push(0, &[Some(0.0)]);
        s.push(1, &[Some(5.0)]);
        assert_eq!(s.per_run_ratio(1, 0), [1.5]);
    }
}
