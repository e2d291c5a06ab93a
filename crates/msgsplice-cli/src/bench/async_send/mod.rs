//! The `async` section: msgsplice's [`AsyncSplicer`](msgsplice::AsyncSplicer)
//! against tokio's own ways to send the same message (a 128-byte header,
//! an N-byte payload, an 8-byte trailer) over TCP loopback, from tasks on
//! one multi-thread runtime of two workers.
//!
//! Contenders ([`run::CONTENDERS`], taking turns within each run, on fresh
//! connections each turn): three `write_all` calls (the baseline),
//! `write_all` of the three copied into a reused `Vec`, a `write_vectored`
//! loop, `AsyncSplicer::send` with the default policy, and with SPLICE off.
//! Each size is measured with one connection and with 64 at once, each
//! connection its own sending task; the receivers run on a second runtime
//! of one worker and check every byte ([`run`]).
//!
//! Besides GB/s, each row has messages per second, system calls per
//! message (tokio rows: writes counted at the stream; `AsyncSplicer`: the
//! engine's count), heap allocations per message while the sending tasks
//! are polled (steady state), how evenly the connections shared the run
//! (fewest messages on one connection over the mean), and its per-run
//! ratio against the best tokio row of its group (the one with the
//! highest median).

pub mod count;
pub mod run;
pub mod send;

use std::time::Duration;

use msgsplice::frag::FragCache;

use self::run::{
    run_turn, Contender, Parts, Runtimes, Stop, CONTENDERS, SEND_WORKERS, WARMUP, WARMUP_MANY,
};
use super::net::{pattern, HEADER, TRAILER};
use super::report::{Group, Outcome, Row, Table};
use super::section::{self, GroupSamples};
use super::stats::Summary;
use super::{fmt_size, Options, Progress, Section};

/// Per-run duration unless `--duration-ms` says otherwise.
const RUN: Duration = Duration::from_millis(60);
/// The connection counts of the groups.
pub const CONNECTIONS: [usize; 2] = [1, 64];
/// Runs of the groups with many connections, at most (their turns take
/// longer to set up and to drain).
const MANY_RUNS: usize = 3;
/// Setup and drain of one turn, for the estimate.
const TURN_OVERHEAD: [Duration; 2] = [Duration::from_millis(5), Duration::from_millis(40)];

const MSGS: &str = "msgs/s";
const CALLS: &str = "syscalls/msg";
const ALLOCS: &str = "allocs/msg";
const FAIR: &str = "fairness";
const VS_BEST: &str = "per-run vs best tokio";

/// The section.
pub struct AsyncSection;

impl Section for AsyncSection {
    fn id(&self) -> &'static str {
        "async"
    }

    fn title(&self) -> String {
        "AsyncSplicer against tokio's own writes, TCP loopback".into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        let dur = opts.run_duration(RUN);
        let per_size: Duration = CONNECTIONS
            .iter()
            .zip(TURN_OVERHEAD)
            .map(|(&conns, extra)| (dur + extra) * (CONTENDERS.len() * runs(opts, conns)) as u32)
            .sum();
        per_size * opts.sizes.len() as u32
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        section::outcome(measure(opts, progress))
    }
}

/// Runs per row of a group with `conns` connections.
fn runs(opts: &Options, conns: usize) -> usize {
    if conns > 1 {
        opts.runs.min(MANY_RUNS)
    } else {
        opts.runs
    }
}

fn measure(opts: &Options, progress: &mut Progress) -> Result<Table, String> {
    let dur = opts.run_duration(RUN);
    let rts = Runtimes::new().map_err(|e| format!("cannot start the tokio runtimes: {e}"))?;
    let header = pattern(HEADER, 1);
    let trailer = pattern(TRAILER, 2);
    let payload = pattern(opts.sizes.iter().copied().max().unwrap_or(0), 3);
    let cache = FragCache::new();
    let names = CONTENDERS.map(Contender::name);
    let mut t = table(opts, dur);
    for conns in CONNECTIONS {
        for &n in &opts.sizes {
            let frag = cache
                .memdup(&payload[..n])
                .map_err(|e| format!("FragCache::memdup of the payload: {e}"))?;
            let parts = Parts::new(&header, frag, &trailer);
            let group = group_name(n, conns);
            let samples =
                section::interleaved(&group, &names, runs(opts, conns), 5, progress, |_, i| {
                    let r = run_turn(&rts, CONTENDERS[i], conns, &parts, Stop::After(dur), false)
                        .map_err(|e| e.to_string())?;
                    Ok(vec![
                        Some(r.gbps()),
                        Some(r.msgs_per_sec()),
                        Some(r.syscalls_per_msg()),
                        r.allocs_per_msg(),
                        Some(r.fairness()),
                    ])
                })?;
            let (g, best) = into_group(group, &samples);
            t.notes.extend(targets(&g, n, &samples, best));
            t.groups.push(g);
        }
    }
    t.notes.extend(allocs_target(&t.groups));
    t.notes.extend(section::allocs_note(ALLOCS));
    t.compute_ratios();
    Ok(t)
}

fn group_name(n: usize, conns: usize) -> String {
    let plural = if conns == 1 { "" } else { "s" };
    format!("N = {}, {conns} connection{plural}", fmt_size(n))
}

/// The empty table: its columns and how its numbers are taken.
fn table(opts: &Options, dur: Duration) -> Table {
    let mut t = Table::new("GB/s", true, "ratio");
    t.about = vec![
        format!(
            "messages of {HEADER} B header + N payload + {TRAILER} B trailer over TCP loopback \
             (TCP_NODELAY), each connection its own sending task on a tokio multi-thread runtime \
             of {SEND_WORKERS} workers; the receivers run on a second runtime of 1 worker and \
             check every byte and every connection's byte count"
        ),
        section::about_runs(
            "GB/s of message bytes, higher is better",
            opts.runs,
            dur,
            CONTENDERS[0].name(),
        ),
        format!(
            "groups of {} connections: at most {MANY_RUNS} runs",
            CONNECTIONS[1]
        ),
        format!(
            "{CALLS}: tokio rows, writes counted at the stream (each poll_write that returned, \
             and each that found the socket full); AsyncSplicer, the engine's count (sends, \
             error-queue reads; not epoll_wait)"
        ),
        format!(
            "{ALLOCS}: heap allocations while the sending tasks are polled, after {WARMUP} \
             messages per connection ({WARMUP_MANY} with many); {VS_BEST}: median over runs of the row's GB/s over the \
             best tokio row's (by median) in the same run"
        ),
        format!(
            "{FAIR}: the fewest messages one connection sent over the mean per connection \
             (1: all alike); every connection runs to one deadline, from when all are set up"
        ),
    ];
    t.extra_columns = vec![
        MSGS.into(),
        CALLS.into(),
        ALLOCS.into(),
        FAIR.into(),
        VS_BEST.into(),
    ];
    t
}

/// The group's rows, each with its per-run ratio against the best tokio
/// row; returns the group and the best tokio row's index.
fn into_group(name: String, samples: &GroupSamples) -> (Group, usize) {
    let best = best_tokio(samples);
    let mut g = Group::new(name);
    for (i, c) in CONTENDERS.iter().enumerate() {
        let Some(mut r) = Row::new(c.name(), i == 0, samples.column(i, 0)) else {
            continue;
        };
        for (col, extra) in [MSGS, CALLS, ALLOCS, FAIR].iter().enumerate() {
            r = r.with_extra(extra, samples.column(i, col + 1));
        }
        g.rows
            .push(r.with_extra(VS_BEST, &samples.per_run_ratio(i, best)));
    }
    (g, best)
}

/// The tokio row with the highest median GB/s. Judged by median once, not
/// afresh in every run, which would pit each row against the luckiest of
/// several noisy samples.
fn best_tokio(samples: &GroupSamples) -> usize {
    (0..CONTENDERS.len())
        .filter(|&i| CONTENDERS[i].is_tokio())
        .map(|i| (i, median(samples.column(i, 0))))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(i, _)| i)
}

fn median(samples: &[f64]) -> f64 {
    Summary::of(samples).map_or(0.0, |s| s.median)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

/// The throughput targets of the default `AsyncSplicer` in one group:
/// 0.95x the best tokio row, and at 1 KiB 1.5x three `write_all` calls
/// (both as medians of per-run ratios).
fn targets(g: &Group, n: usize, samples: &GroupSamples, best: usize) -> Vec<String> {
    let ours = CONTENDERS
        .iter()
        .position(|&c| c == Contender::Splicer)
        .unwrap_or(0);
    let mut out = Vec::new();
    let vs_best = median(&samples.per_run_ratio(ours, best));
    out.push(format!(
        "{}: AsyncSplicer at {vs_best:.2}x the best tokio row, {} (target >= 0.95x): {}",
        g.name,
        CONTENDERS[best].name(),
        verdict(vs_best >= 0.95)
    ));
    if n == 1 << 10 {
        let vs_three = median(&samples.per_run_ratio(ours, 0));
        out.push(format!(
            "{}: AsyncSplicer at {vs_three:.2}x {} (target >= 1.5x): {}",
            g.name,
            CONTENDERS[0].name(),
            verdict(vs_three >= 1.5)
        ));
    }
    out
}

/// The allocation target of the default `AsyncSplicer`: none per message
/// in steady state, in every run of every group.
fn allocs_target(groups: &[Group]) -> Option<String> {
    let worst = groups
        .iter()
        .filter_map(|g| {
            let r = g
                .rows
                .iter()
                .find(|r| r.name == Contender::Splicer.name())?;
            Some(r.extras.get(ALLOCS)?.max)
        })
        .reduce(f64::max)?;
    // A rare allocation (a queue of the runtime growing once) would
    // print as 0.000 beside "NOT met": say how rare it was.
    let shown = if worst > 0.0 && worst < 0.001 {
        format!("{worst:.1e} (one per {:.0} messages)", 1.0 / worst)
    } else {
        format!("{worst:.3}")
    };
    Some(format!(
        "AsyncSplicer: at most {shown} allocations per message in any run (target 0): {}",
        verdict(worst == 0.0)
    ))
}

#[cfg(test)]
mod tests;
