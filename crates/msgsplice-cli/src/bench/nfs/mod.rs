//! The `nfs` section: msgsplice's read-only NFSv3 export against the
//! `nfsserve` crate and nfs-ganesha, with the same client reading the same
//! file, and raw `sendfile` as the ceiling.
//!
//! - One file (256 MiB by default, `--nfs-size`; 8 MiB with `--quick`) in a
//!   temporary directory, written, synced and read once so that it is in
//!   the page cache.
//! - Client: `nfs-cat URL > /dev/null` (libnfs-utils), timed from spawn to
//!   exit. libnfs reads in 1 MiB READs from both servers (both say
//!   `rtmax` = 1 MiB in FSINFO).
//! - Servers, each run a fresh process so that its CPU time (user +
//!   system, from `getrusage(RUSAGE_CHILDREN)` around reaping it) is that
//!   run's: `msgsplice nfs serve DIR` (this binary) and the nfsserve peer
//!   (`crates/msgsplice-rpc/examples/nfsserve_peer.rs`, found beside this
//!   binary or built once with cargo; see [`procs::nfsserve_peer`]), which
//!   gets libnfs's `auto-traverse-mounts=0` (its MOUNT EXPORT reply makes
//!   `nfs-cat` fail otherwise). nfs-ganesha ([`ganesha`]: FSAL VFS, one
//!   process for the whole section, its CPU time per run from its
//!   process CPU-time clock) where it can run: as root, its packages installed.
//!   All listen on 127.0.0.1 only. Beside msgsplice's default row, one of
//!   `msgsplice nfs serve --engine uring` (threads driver, replies through
//!   the io_uring engine) where io_uring can be used, with fewer runs
//!   ([`URING_RUNS`]) to keep the section short.
//! - Ceiling: the file by `sendfile` over loopback TCP to a plain reader,
//!   both threads of this process ([`inproc::sendfile_ceiling`]).
//! - Per READ reply of msgsplice's export: system calls and heap
//!   allocations, measured on this thread through the same dispatcher and
//!   transport the server uses ([`inproc::reply_costs`]).
//! - Random and concurrent READs: the bench's own pipelined client
//!   ([`load`], over [`client`]) against every server, fresh per run
//!   ([`load_rows`]); 4 KiB random READs also get their syscalls and
//!   allocations per reply.
//!
//! Before the timed runs each server's output is compared with the file
//! once, so a fast wrong server cannot win; the own client compares a
//! sample of its replies with the file in every run.

pub mod client;
pub mod ganesha;
pub mod inproc;
pub mod load;
mod load_rows;
pub mod procs;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::ganesha::Ganesha;
use self::procs::{ServerProc, Serving};
use super::report::{Group, Outcome, Row, Table};
use super::{fmt_size, Options, Progress, Section};

/// File size by default.
pub const DEFAULT_SIZE: usize = 256 << 20;
/// File size with `--quick`.
pub const QUICK_SIZE: usize = 8 << 20;
/// The file's name in the exported directory.
const FILE_NAME: &str = "nfs-bench.bin";
/// READ size of the `nfs-cat` rows' per-reply measurement (libnfs's).
const COST_READ_SIZE: u32 = 1 << 20;
/// READs of the per-reply measurement, and how many of them warm up.
const COST_READS: u32 = 40;
const COST_WARM: u32 = 8;
/// Timed `nfs-cat` runs of the io_uring row at most (its own budget: the
/// default `msgsplice bench` stays under two minutes).
const URING_RUNS: usize = 3;

const SERVER_CPU: &str = "server CPU-s/GiB";
const CLIENT_CPU: &str = "client CPU-s/GiB";
const CALLS: &str = "syscalls/READ";
const ALLOCS: &str = "allocs/READ";

/// The `nfs` section.
pub struct NfsSection;

/// The contenders, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nfsserve,
    Msgsplice,
    MsgspliceUring,
    Ganesha,
    Ceiling,
    PerRequest,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Nfsserve => "nfsserve 0.11 (tokio)",
            Who::Msgsplice => "msgsplice nfs serve",
            Who::MsgspliceUring => "msgsplice nfs serve --engine uring",
            Who::Ganesha => "nfs-ganesha (VFS)",
            Who::Ceiling => "sendfile to a plain reader",
            Who::PerRequest => "sendfile per 1 MiB request",
        }
    }
}

/// The samples of one contender, one per run.
#[derive(Default)]
struct Samples {
    gbps: Vec<f64>,
    server_cpu: Vec<f64>,
    client_cpu: Vec<f64>,
}

impl Samples {
    fn push(&mut self, size: u64, elapsed: Duration, server: Duration, client: Duration) {
        let gib = size as f64 / (1u64 << 30) as f64;
        self.gbps.push(size as f64 / elapsed.as_secs_f64() / 1e9);
        self.server_cpu.push(server.as_secs_f64() / gib);
        self.client_cpu.push(client.as_secs_f64() / gib);
    }
}

/// A temporary directory holding the file; removed with it on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    /// Creates the directory and a file of `size` bytes in it (1 MiB blocks
    /// of pseudo-random bytes, each stamped with its index so that a
    /// misplaced block cannot verify), synced and then read once.
    fn create(size: usize) -> std::io::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("msgsplice-bench-nfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        let s = Scratch { dir };
        let mut f = std::fs::File::create(s.file())?;
        let mut block = super::net::pattern(1 << 20, 0x6e66_7333);
        let mut left = size;
        let mut i = 0u64;
        while left > 0 {
            block[..8].copy_from_slice(&i.to_le_bytes());
            let n = left.min(block.len());
            f.write_all(&block[..n])?;
            left -= n;
            i += 1;
        }
        // Written back before measuring, so writeback does not disturb it.
        f.sync_all()?;
        drop(f);
        let mut f = std::fs::File::open(s.file())?;
        let mut buf = vec![0u8; 1 << 20];
        while f.read(&mut buf)? > 0 {}
        Ok(s)
    }

    fn file(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the section needs to run a server.
struct Servers {
    msgsplice: PathBuf,
    /// Whether io_uring can be used here (else why not).
    uring: Result<(), String>,
    nfsserve: Result<PathBuf, String>,
    /// Started once for the whole section.
    ganesha: Result<Ganesha, String>,
}

impl Servers {
    fn program(&self, who: Who) -> Option<&Path> {
        match who {
            Who::Msgsplice => Some(&self.msgsplice),
            Who::MsgspliceUring => self.uring.is_ok().then_some(self.msgsplice.as_path()),
            Who::Nfsserve => self.nfsserve.as_deref().ok(),
            Who::Ganesha | Who::Ceiling | Who::PerRequest => None,
        }
    }

    /// True if `who` is a server that can run here.
    fn serves(&self, who: Who) -> bool {
        match who {
            Who::Ganesha => self.ganesha.is_ok(),
            _ => self.program(who).is_some(),
        }
    }

    /// The servers that can run here, in table order.
    fn present(&self) -> Vec<Who> {
        [
            Who::Nfsserve,
            Who::Msgsplice,
            Who::MsgspliceUring,
            Who::Ganesha,
        ]
        .into_iter()
        .filter(|&w| self.serves(w))
        .collect()
    }
}

/// The server `who` for one run over the scratch directory: a fresh
/// process of msgsplice or nfsserve, or the section's ganesha.
fn start_server<'a>(
    who: Who,
    servers: &'a Servers,
    scratch: &Scratch,
) -> Result<Serving<'a>, String> {
    if let (Who::Ganesha, Ok(ganesha)) = (who, &servers.ganesha) {
        return Ok(Serving::Shared {
            ganesha,
            cpu_at_start: ganesha.cpu(),
        });
    }
    let Some(program) = servers.program(who) else {
        return Err(format!("{} is not a server here", who.name()));
    };
    let dir = scratch.dir.as_os_str();
    // No portmapper: the URL names both ports, and a benchmark must
    // neither depend on nor change what a system rpcbind holds.
    let ours = ["nfs", "serve", "--portmap", "off"].map(OsStr::new);
    let args: Vec<&OsStr> = match who {
        Who::Msgsplice => [&ours[..], &[dir]].concat(),
        Who::MsgspliceUring => [&ours[..], &["--engine", "uring"].map(OsStr::new), &[dir]].concat(),
        _ => vec![dir],
    };
    let errors = std::env::temp_dir().join(format!(
        "msgsplice-bench-nfs-{}-server.err",
        std::process::id()
    ));
    let server = ServerProc::start(program, &args, &errors);
    let _ = std::fs::remove_file(&errors);
    server
        .map(Serving::Fresh)
        .map_err(|e| format!("{}: {e}", who.name()))
}

/// One run of `who`: timed (output to /dev/null), or checked against the
/// file (not timed). Returns elapsed, server CPU, client CPU.
fn run_one(
    who: Who,
    servers: &Servers,
    scratch: &Scratch,
    check: bool,
) -> Result<(Duration, Duration, Duration), String> {
    if !servers.serves(who) {
        let how = match who {
            Who::PerRequest => inproc::Ceiling::PerRequest,
            _ => inproc::Ceiling::Stream,
        };
        let r = inproc::sendfile_ceiling(&scratch.file(), how)?;
        return Ok((r.elapsed, r.server_cpu, r.client_cpu));
    }
    let server = start_server(who, servers, scratch)?;
    let file = scratch.file();
    let client = procs::nfs_cat(&server.file_url(FILE_NAME), check.then_some(file.as_path()));
    let server_cpu = server.stop();
    let client = client.map_err(|e| format!("{}: {e}", who.name()))?;
    Ok((client.elapsed, server_cpu, client.cpu))
}

impl NfsSection {
    fn size(opts: &Options) -> usize {
        opts.nfs_size
            .unwrap_or(if opts.quick { QUICK_SIZE } else { DEFAULT_SIZE })
    }

    fn measure(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        if !procs::nfs_cat_available() {
            return Outcome::Skipped {
                reason: super::peers::LIBNFS_UTILS.advice(opts.no_install),
            };
        }
        let msgsplice = match procs::msgsplice_binary() {
            Ok(p) => p,
            Err(reason) => return Outcome::Skipped { reason },
        };
        let size = Self::size(opts);
        progress.step(format_args!(
            "writing and warming a {} file",
            fmt_size(size)
        ));
        let scratch = match Scratch::create(size) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed {
                    error: format!("cannot make the {} test file: {e}", fmt_size(size)),
                }
            }
        };
        let nfsserve = procs::nfsserve_peer(progress);
        let ganesha = match ganesha::unavailable(opts.no_install) {
            Some(why) => Err(why),
            None => {
                progress.step(format_args!("starting nfs-ganesha"));
                Ganesha::start(&scratch.dir, FILE_NAME)
            }
        };
        let mut servers = Servers {
            msgsplice,
            uring: uring_here(),
            nfsserve,
            ganesha,
        };
        match self.table(opts, progress, &mut servers, &scratch, size as u64) {
            Ok(t) => Outcome::Ran(t),
            Err(error) => Outcome::Failed { error },
        }
    }

    fn table(
        &self,
        opts: &Options,
        progress: &mut Progress,
        servers: &mut Servers,
        scratch: &Scratch,
        size: u64,
    ) -> Result<Table, String> {
        // Each server's output is checked once; this also warms it up. A
        // wrong answer from ganesha drops its rows (a peer's fault is not
        // msgsplice's failure); from the others it fails the section.
        for w in servers.present() {
            progress.step(format_args!("{}: checking what nfs-cat gets", w.name()));
            match (w, run_one(w, servers, scratch, true)) {
                (_, Ok(_)) => {}
                (Who::Ganesha, Err(e)) => {
                    let tail = servers.ganesha.as_ref().map(Ganesha::log_tail);
                    servers.ganesha = Err(format!(
                        "its check read failed: {e}; its log ends: {}",
                        tail.unwrap_or_default()
                    ));
                }
                (_, Err(e)) => return Err(e),
            }
        }
        let servers = &*servers;
        let mut who = servers.present();
        who.extend([Who::Ceiling, Who::PerRequest]);
        let mut samples: Vec<Samples> = who.iter().map(|_| Samples::default()).collect();
        for run in 0..opts.runs {
            // A different order each round, so that no contender always
            // follows the same one.
            for k in 0..who.len() {
                let i = (k + run) % who.len();
                if who[i] == Who::MsgspliceUring && run >= URING_RUNS {
                    continue;
                }
                progress.step(format_args!(
                    "{}, run {}/{}",
                    who[i].name(),
                    run + 1,
                    opts.runs
                ));
                let (elapsed, server, client) = run_one(who[i], servers, scratch, false)?;
                samples[i].push(size, elapsed, server, client);
            }
        }
        progress.step(format_args!("msgsplice: cost of one READ reply"));
        let costs = inproc::reply_costs(
            &scratch.dir,
            FILE_NAME,
            COST_READ_SIZE,
            if opts.quick { 16 } else { COST_READS },
            COST_WARM,
        )?;
        let small_costs = inproc::reply_costs(
            &scratch.dir,
            FILE_NAME,
            load_rows::SMALL_READ,
            if opts.quick { 16 } else { COST_READS },
            COST_WARM,
        )?;
        let load_groups = load_rows::groups(opts, progress, servers, scratch, &small_costs)?;

        let mut t = Table::new("GB/s", true, "vs nfsserve");
        t.about = vec![
            format!(
                "one {} file in page cache read whole by `nfs-cat URL > /dev/null` (libnfs-utils, \
                 1 MiB READs); GB/s from spawn to exit of the client, median of {} runs, spread \
                 min..max; higher is better",
                fmt_size(size as usize),
                opts.runs
            ),
            "each run starts a fresh msgsplice or nfsserve process; server CPU-s/GiB is its \
             user+system time (getrusage of the reaped child) per GiB served, lower is better; \
             client likewise"
                .into(),
            "nfsserve: the nfsserve crate over a read-only view of the same directory \
             (msgsplice-rpc's examples/nfsserve_peer.rs), libnfs auto-traverse-mounts=0 for it \
             only; all servers on 127.0.0.1"
                .into(),
            "nfs-ganesha: FSAL VFS, read-only NFSv3 export over TCP, NLM and RQUOTA off; one \
             process for the whole section (its CPU per run from its process CPU-time clock), \
             with an rpcbind the bench starts if none runs"
                .into(),
            "sendfile to a plain reader: the file by one sendfile(2) over loopback TCP to a \
             reader of 1 MiB reads, two threads of this process: the ceiling, no protocol at all"
                .into(),
            "sendfile per 1 MiB request: the same, but the reader asks for each MiB (4 bytes) \
             before reading it, as an NFS client does: the bound for this access pattern"
                .into(),
        ];
        t.about.push(format!(
            "msgsplice nfs serve --engine uring: the same export on the threads driver (the \
             tokio driver has no io_uring engine), replies through msgsplice's io_uring engine \
             (one ring per connection; READ data by sendfile in both); median of {} runs",
            opts.runs.min(URING_RUNS)
        ));
        t.about.extend(load_rows::about(opts));
        t.extra_columns = vec![
            SERVER_CPU.into(),
            CLIENT_CPU.into(),
            load_rows::READS_PER_SEC.into(),
            load_rows::CPU_PER_READ.into(),
            CALLS.into(),
            ALLOCS.into(),
        ];
        let mut g = Group::new(format!("{} file", fmt_size(size as usize)));
        for (w, s) in who.iter().zip(&samples) {
            let Some(mut row) = Row::new(w.name(), *w == Who::Nfsserve, &s.gbps) else {
                continue;
            };
            row = row
                .with_extra(SERVER_CPU, &s.server_cpu)
                .with_extra(CLIENT_CPU, &s.client_cpu);
            if *w == Who::Msgsplice {
                row = row
                    .with_extra(CALLS, &costs.syscalls)
                    .with_extra(ALLOCS, &costs.allocs);
            }
            g.rows.push(row);
        }
        t.groups.push(g);
        t.groups.extend(load_groups);
        t.compute_ratios();
        t.notes = notes(&t, servers, &costs, opts);
        t.notes.extend(load_rows::notes(&t));
        Ok(t)
    }
}

/// The ratios against nfsserve and the ceilings with their targets, the
/// per-reply costs, and what was missing.
fn notes(t: &Table, servers: &Servers, costs: &inproc::ReplyCosts, opts: &Options) -> Vec<String> {
    let mut notes = Vec::new();
    let row = |w: Who| t.groups[0].rows.iter().find(|r| r.name == w.name());
    let cpu = |w: Who| {
        row(w)
            .and_then(|r| r.extras.get(SERVER_CPU))
            .map(|s| s.median)
    };
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    if let (Some(ours), Some(peer)) = (row(Who::Msgsplice), row(Who::Nfsserve)) {
        let tp = ours.value.median / peer.value.median;
        notes.push(format!(
            "msgsplice vs nfsserve: {tp:.2}x the throughput (target >= 1.4x: {})",
            verdict(tp >= 1.4)
        ));
        if let (Some(a), Some(b)) = (cpu(Who::Msgsplice), cpu(Who::Nfsserve)) {
            let r = a / b;
            notes.push(format!(
                "msgsplice vs nfsserve: {r:.2}x the server CPU per GiB (target <= 0.6x: {})",
                verdict(r <= 0.6)
            ));
        }
    }
    for (w, what) in [
        (Who::Ceiling, "sendfile to a plain reader"),
        (Who::PerRequest, "sendfile per 1 MiB request"),
    ] {
        if let (Some(ours), Some(ceiling)) = (row(Who::Msgsplice), row(w)) {
            let r = ours.value.median / ceiling.value.median;
            notes.push(format!(
                "msgsplice vs {what}: {r:.2}x the throughput (target >= 0.8x: {})",
                verdict(r >= 0.8)
            ));
        }
    }
    let median = |v: &[f64]| super::stats::Summary::of(v).map_or(f64::NAN, |s| s.median);
    notes.push(format!(
        "syscalls/READ and allocs/READ: one 1 MiB READ reply of msgsplice's export ({} READs \
         after {COST_WARM} to warm up, on this thread, through the server's dispatcher and \
         Splicer transport over loopback TCP): {} system calls to send it (sendmsg(MSG_MORE) \
         of the head, sendfile of the range) and {} heap allocations from decoding the call \
         to the last byte sent; the server also makes one read of the request and one fstat \
         for the reply's attributes",
        costs.allocs.len(),
        super::report::fmt_num(median(&costs.syscalls)),
        super::report::fmt_num(median(&costs.allocs)),
    ));
    if !crate::alloc_count::installed() {
        notes.push("the counting allocator is not installed here: allocs/READ reads 0".into());
    }
    if let (Some(ring), Some(ours)) = (row(Who::MsgspliceUring), row(Who::Msgsplice)) {
        let mut line = format!(
            "--engine uring vs the default msgsplice row: {:.2}x the throughput",
            ring.value.median / ours.value.median
        );
        if let (Some(a), Some(b)) = (cpu(Who::MsgspliceUring), cpu(Who::Msgsplice)) {
            line += &format!(", {:.2}x the server CPU per GiB", a / b);
        }
        notes.push(line);
    }
    if let Err(e) = &servers.uring {
        notes.push(format!("--engine uring rows missing: {e}"));
    }
    if let Err(e) = &servers.nfsserve {
        notes.push(format!("nfsserve row missing: {e}"));
    }
    if let Err(e) = &servers.ganesha {
        notes.push(format!("nfs-ganesha rows missing: {e}"));
    }
    if opts.nfs_size.is_none() {
        notes.push(format!(
            "file size: {} by default to keep `msgsplice bench` short; --nfs-size 1024M \
             reads a 1 GiB file",
            fmt_size(NfsSection::size(opts))
        ));
    }
    notes
}

impl Section for NfsSection {
    fn id(&self) -> &'static str {
        "nfs"
    }

    fn title(&self) -> String {
        "NFSv3 READ of a file in page cache, same client: msgsplice's export, nfsserve, \
         nfs-ganesha, and the sendfile ceiling"
            .into()
    }

    fn run_length(&self) -> Option<Duration> {
        None
    }

    fn estimate(&self, opts: &Options) -> Duration {
        if !procs::nfs_cat_available() {
            return Duration::ZERO;
        }
        // nfs-ganesha, where it can run, is one more server; it starts
        // once, in a fraction of a second.
        let (servers, ganesha_start) = match ganesha::unavailable(opts.no_install) {
            None => (3, 0.2),
            Some(_) => (2, 0.0),
        };
        let uring = usize::from(uring_here().is_ok());
        // Measured here: the contenders read at 2 to 5 GB/s, a checked read
        // at about 1 GB/s, a server process starts in a few milliseconds,
        // and making the file runs at about 1 GB/s. So: the servers and the
        // two sendfile references per run at 2 GB/s, a checked read per
        // server, a fresh server per run and per check, and the file.
        let size = Self::size(opts) as f64;
        let uring_runs = uring * opts.runs.min(URING_RUNS);
        let secs = size * ((servers + 2) * opts.runs + uring_runs) as f64 / 2e9
            + size * (servers + uring) as f64 / 1e9
            + 0.02 * (2 * opts.runs + 2 + uring_runs + uring) as f64
            + size / 1e9;
        Duration::from_secs_f64(secs + 0.2 + ganesha_start)
            + load_rows::estimate(opts, servers, uring == 1)
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        self.measure(opts, progress)
    }

    fn peers(&self) -> Vec<super::peers::Peer> {
        use super::peers::{GANESHA, GANESHA_VFS, LIBNFS_UTILS, RPCBIND};
        vec![LIBNFS_UTILS, GANESHA, GANESHA_VFS, RPCBIND]
    }
}

/// Whether `msgsplice nfs serve --engine uring` would send through io_uring
/// here (the export would fall back to sendmsg otherwise, which is not
/// what its row is for): the engine's own probe, on a socket pair.
fn uring_here() -> Result<(), String> {
    let (a, _b) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
    msgsplice::UringSplicer::new(a)
        .map(drop)
        .map_err(|e| e.to_string())
}
