//! The `nfs` section's rows measured with the bench's own client
//! ([`super::load`]) instead of `nfs-cat`: random READs of 4 KiB and
//! 32 KiB, 16 in flight per connection, over 1 and 8 connections; and 8
//! connections each reading its own region of the file sequentially in
//! 1 MiB READs, 4 in flight each (as many bytes in flight as a deeper
//! queue, without making nfsserve hold 128 MiB of reply buffers).
//! `nfs-cat` reads one READ at a time, so its rows show the client's
//! limits more than the servers'; these keep the servers busy.
//!
//! msgsplice's export with `--engine uring` runs only the sequential case,
//! for [`URING_RUNS`] runs, to keep the section short.
//!
//! Each run starts a fresh msgsplice or nfsserve process, as the `nfs-cat`
//! rows do, so that its CPU time (from reaping it) is that run's;
//! nfs-ganesha is one process for the section, its CPU time per run read
//! from its process CPU-time clock around the run. The client is the same for all.

use std::time::Duration;

use super::load::{self, LoadSpec, Pattern, Stop};
use super::{Scratch, Servers, Who, FILE_NAME};
use crate::bench::report::{Group, Row, Table};
use crate::bench::{fmt_size, Options, Progress};

/// Column: READs per second.
pub(super) const READS_PER_SEC: &str = "READs/s";
/// Column: the server's CPU time per READ.
pub(super) const CPU_PER_READ: &str = "server CPU-us/READ";

/// READs in flight per connection, for random READs and for 1 MiB
/// sequential ones.
const DEPTH: usize = 16;
const LARGE_DEPTH: usize = 4;
/// Length of one run, and with `--quick`.
const RUN_TIME: Duration = Duration::from_millis(250);
const QUICK_RUN_TIME: Duration = Duration::from_millis(60);
/// Runs per row at most: fifteen rows, so that the section stays short.
const MAX_RUNS: usize = 3;
/// Runs of the io_uring row (in [`URING_CASE`] only): one more row for the
/// default `msgsplice bench`'s two minutes.
const URING_RUNS: usize = 1;
/// The one case the io_uring row is measured in: sequential 1 MiB READs
/// over 8 connections (8 rings), where the CPU per GiB target is.
const URING_CASE: usize = 4;
/// One reply's data in this many is compared with the file.
const VERIFY_EVERY: u64 = 64;
/// Longest wait for one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);
/// READ size of the rows that carry the targets.
pub(super) const SMALL_READ: u32 = 4 << 10;

/// One group of rows: how the client reads.
#[derive(Clone, Copy, Debug)]
struct Case {
    read_size: u32,
    conns: usize,
    depth: usize,
    pattern: Pattern,
}

const CASES: [Case; 5] = [
    Case::random(SMALL_READ, 1),
    Case::random(SMALL_READ, 8),
    Case::random(32 << 10, 1),
    Case::random(32 << 10, 8),
    Case {
        read_size: 1 << 20,
        conns: 8,
        depth: LARGE_DEPTH,
        pattern: Pattern::Sequential,
    },
];

impl Case {
    const fn random(read_size: u32, conns: usize) -> Case {
        Case {
            read_size,
            conns,
            depth: DEPTH,
            pattern: Pattern::Random {
                seed: 0x6d73_6773_706c_6963,
            },
        }
    }

    fn name(&self) -> String {
        let what = match self.pattern {
            Pattern::Random { .. } => "random",
            Pattern::Sequential => "sequential",
        };
        let s = if self.conns == 1 { "" } else { "s" };
        format!(
            "{what} {} READs, {} conn{s} x {} in flight",
            fmt_size(self.read_size as usize),
            self.conns,
            self.depth
        )
    }
}

/// Samples of one server in one case, one per run.
#[derive(Default)]
struct Samples {
    gbps: Vec<f64>,
    reads_per_sec: Vec<f64>,
    cpu_per_read: Vec<f64>,
    server_cpu: Vec<f64>,
    client_cpu: Vec<f64>,
}

impl Samples {
    fn push(&mut self, r: &load::LoadResult, server_cpu: Duration) {
        let gib = r.bytes as f64 / (1u64 << 30) as f64;
        self.gbps.push(r.bytes_per_sec() / 1e9);
        self.reads_per_sec.push(r.reads_per_sec());
        self.cpu_per_read
            .push(server_cpu.as_secs_f64() * 1e6 / r.reads.max(1) as f64);
        self.server_cpu.push(server_cpu.as_secs_f64() / gib);
        self.client_cpu.push(r.client_cpu.as_secs_f64() / gib);
    }

    fn row(&self, who: Who) -> Option<Row> {
        Some(
            Row::new(who.name(), who == Who::Nfsserve, &self.gbps)?
                .with_extra(super::SERVER_CPU, &self.server_cpu)
                .with_extra(super::CLIENT_CPU, &self.client_cpu)
                .with_extra(READS_PER_SEC, &self.reads_per_sec)
                .with_extra(CPU_PER_READ, &self.cpu_per_read),
        )
    }
}

/// Runs per row.
fn runs(opts: &Options) -> usize {
    opts.runs.clamp(1, MAX_RUNS)
}

fn run_time(opts: &Options) -> Duration {
    if opts.quick {
        QUICK_RUN_TIME
    } else {
        RUN_TIME
    }
}

/// What these rows add to the section's time: every case for each of
/// `servers`, and the io_uring row's runs if `uring`; each run a fresh
/// server or ganesha's (a few tens of milliseconds to start, mount and
/// look up).
pub(super) fn estimate(opts: &Options, servers: usize, uring: bool) -> Duration {
    let per_run = run_time(opts) + Duration::from_millis(40);
    let uring_runs = if uring { URING_RUNS } else { 0 };
    per_run * (servers * CASES.len() * runs(opts) + uring_runs) as u32
}

/// Whether `who` runs case `c` in run `run`: every server every case, but
/// the io_uring row only its case and runs.
fn measured(who: Who, c: usize, run: usize) -> bool {
    who != Who::MsgspliceUring || (c == URING_CASE && run < URING_RUNS)
}

/// One run: the server (fresh, or ganesha's), the load, the server's CPU.
fn run_one(
    who: Who,
    servers: &Servers,
    scratch: &Scratch,
    case: &Case,
    time: Duration,
) -> Result<(load::LoadResult, Duration), String> {
    let server = super::start_server(who, servers, scratch)?;
    let spec = LoadSpec {
        conns: case.conns,
        depth: case.depth,
        read_size: case.read_size,
        pattern: case.pattern,
        stop: Stop::After(time),
        verify_every: VERIFY_EVERY,
        timeout: REPLY_TIMEOUT,
    };
    let result = super::client::Target::from_url(server.url())
        .and_then(|target| load::run(&target, FILE_NAME, &scratch.file(), &spec));
    let cpu = server.stop();
    let result = result.map_err(|e| format!("{} ({}): {e}", who.name(), case.name()))?;
    Ok((result, cpu))
}

/// Measures every case against every server that can run here; one group
/// per case.
pub(super) fn groups(
    opts: &Options,
    progress: &mut Progress,
    servers: &Servers,
    scratch: &Scratch,
    small_costs: &super::inproc::ReplyCosts,
) -> Result<Vec<Group>, String> {
    let who = servers.present();
    let mut samples: Vec<Vec<Samples>> = CASES
        .iter()
        .map(|_| who.iter().map(|_| Samples::default()).collect())
        .collect();
    let runs = runs(opts);
    for run in 0..runs {
        for (c, case) in CASES.iter().enumerate() {
            // Alternate which server goes first.
            for k in 0..who.len() {
                let i = (k + run + c) % who.len();
                if !measured(who[i], c, run) {
                    continue;
                }
                progress.step(format_args!(
                    "{}: {}, run {}/{runs}",
                    who[i].name(),
                    case.name(),
                    run + 1
                ));
                let (r, cpu) = run_one(who[i], servers, scratch, case, run_time(opts))?;
                samples[c][i].push(&r, cpu);
            }
        }
    }
    let mut groups = Vec::new();
    for (case, per_who) in CASES.iter().zip(&samples) {
        let mut g = Group::new(case.name());
        for (&w, s) in who.iter().zip(per_who) {
            let Some(mut row) = s.row(w) else { continue };
            let small_random =
                case.read_size == SMALL_READ && matches!(case.pattern, Pattern::Random { .. });
            if w == Who::Msgsplice && small_random {
                row = row
                    .with_extra(super::CALLS, &small_costs.syscalls)
                    .with_extra(super::ALLOCS, &small_costs.allocs);
            }
            g.rows.push(row);
        }
        groups.push(g);
    }
    Ok(groups)
}

/// The lines explaining these rows, for the table's `about`.
pub(super) fn about(opts: &Options) -> Vec<String> {
    vec![
        format!(
            "READs/s rows: the bench's own NFSv3 client (MOUNT, LOOKUP, then READs; AUTH_SYS \
             uid 0) against every server, one thread and connection per conn, the READs in \
             flight on each kept there (pipelined), for {:?} per run, median of {} runs; every \
             reply's xid, status, count and eof checked, and one reply's data in \
             {VERIFY_EVERY} compared with the file; GB/s is the READs' data, so the ratio is \
             also that of READs/s; sequential: each conn reads its own 1/8 of the file",
            run_time(opts),
            runs(opts)
        ),
        format!(
            "msgsplice nfs serve --engine uring: in the {} rows only, {URING_RUNS} run",
            CASES[URING_CASE].name()
        ),
        "server CPU-us/READ: the server's user+system time per READ answered, lower is \
         better: msgsplice and nfsserve a fresh process per run (start, MOUNT and LOOKUP \
         included, from reaping it); nfs-ganesha one process for the section (started once, \
         as deployed), its process CPU-time clock before and after \
         each run"
            .into(),
    ]
}

/// The targets against nfs-ganesha with the own client, several
/// connections with several READs in flight each: on sequential 1 MiB
/// READs, the server CPU per GiB; on random 4 KiB READs, per READ; at
/// twice its throughput or more in both.
fn ganesha_notes(t: &Table) -> Vec<String> {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let targets = [
        (&CASES[4], super::SERVER_CPU, "per GiB", 0.25),
        (&CASES[1], CPU_PER_READ, "per READ", 0.15),
    ];
    let mut notes = Vec::new();
    for (case, col, per, most) in targets {
        let name = case.name();
        let Some(g) = t.groups.iter().find(|g| g.name == name) else {
            continue;
        };
        let row = |w: Who| g.rows.iter().find(|r| r.name == w.name());
        let (Some(ours), Some(peer)) = (row(Who::Msgsplice), row(Who::Ganesha)) else {
            continue;
        };
        let tp = ours.value.median / peer.value.median;
        let mut line = format!(
            "{name}: msgsplice vs nfs-ganesha: {tp:.2}x the throughput (target >= 2x: {})",
            verdict(tp >= 2.0)
        );
        if let (Some(a), Some(b)) = (ours.extras.get(col), peer.extras.get(col)) {
            let r = a.median / b.median;
            line += &format!(
                ", {r:.2}x the server CPU {per} (target <= {most}x: {})",
                verdict(r <= most)
            );
        }
        notes.push(line);
    }
    notes
}

/// The targets for 4 KiB random READs, per connection count.
pub(super) fn notes(t: &Table) -> Vec<String> {
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut notes = Vec::new();
    for case in CASES
        .iter()
        .filter(|c| c.read_size == SMALL_READ && matches!(c.pattern, Pattern::Random { .. }))
    {
        let name = case.name();
        let Some(g) = t.groups.iter().find(|g| g.name == name) else {
            continue;
        };
        let value = |w: Who, col: &str| {
            g.rows
                .iter()
                .find(|r| r.name == w.name())
                .and_then(|r| r.extras.get(col))
                .map(|s| s.median)
        };
        let (Some(ours), Some(peer)) = (
            value(Who::Msgsplice, READS_PER_SEC),
            value(Who::Nfsserve, READS_PER_SEC),
        ) else {
            continue;
        };
        let mut line = format!(
            "{name}: msgsplice vs nfsserve: {:.2}x the READs/s (target >= 1.5x: {})",
            ours / peer,
            verdict(ours / peer >= 1.5)
        );
        if let (Some(a), Some(b)) = (
            value(Who::Msgsplice, CPU_PER_READ),
            value(Who::Nfsserve, CPU_PER_READ),
        ) {
            line += &format!(
                ", {:.2}x the server CPU per READ (target <= 0.6x: {})",
                a / b,
                verdict(a / b <= 0.6)
            );
        }
        notes.push(line);
    }
    notes.extend(ganesha_notes(t));
    notes.push(format!(
        "syscalls/READ and allocs/READ in the {} random rows: the same measurement as for \
         1 MiB, with {} READs",
        fmt_size(SMALL_READ as usize),
        fmt_size(SMALL_READ as usize)
    ));
    notes
}
