//! `msgsplice bench`: side-by-side measurements, one table per section.
//!
//! A section is anything that implements [`Section`]: it measures its
//! contenders (each for `--runs` runs), and returns an [`Outcome`]: a
//! [`Table`](report::Table) of rows grouped by condition, each group with a
//! baseline row, or the reason it could not run here. [`sections`] lists
//! them in the order they run; adding a section is one entry there.
//!
//! The timed sections share one skeleton, [`section`]: runs of their rows
//! taking turns, the samples per column, the rows with median and spread,
//! per-run ratios. The options are [`BenchArgs`] as clap reads them and
//! [`Options`] once the defaults are applied.
//!
//! The tables go to stdout as each section finishes, progress goes to
//! stderr, and `--json` / `--svg` write the whole [`Report`] at the end.
//!
//! Sections: `alloc` (the fragment allocator against heap buffers),
//! `memcpy` (the physical reference), `tcp` and `unix` (send strategies for
//! in-memory payloads; `tcp` with iperf3 as reference), `file` (file-backed
//! payloads), `udp` (UDP GSO with and without zero-copy, on a drop sink and
//! on loopback), `nfs` (the NFSv3 export against the nfsserve crate, with
//! `nfs-cat` as the client), `tls` (msgsplice's TLS sender against rustls's
//! buffered writer), `async` (msgsplice's `AsyncSplicer` against tokio's
//! own writes), `uring` (io_uring `SENDMSG_ZC`, from plain memory and from
//! registered folios, against `sendmsg` copying and `MSG_ZEROCOPY`).

pub mod alloc;
pub mod async_send;
pub mod memcpy;
pub mod net;
pub mod netns;
pub mod nfs;
mod options;
pub mod pair;
pub mod peers;
pub mod report;
pub mod section;
pub mod stats;
pub mod svg;
pub mod tls;
pub mod udp;
pub mod uring;

use std::fmt;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

pub use options::{BenchArgs, Options, DEFAULT_RUNS, DEFAULT_SIZES, QUICK_RUN, QUICK_RUNS};
use report::{render_section, Host, Outcome, Report, SectionReport, Settings};

/// A part of the benchmark that produces one table.
pub trait Section {
    /// Short name, as given to `--sections`.
    fn id(&self) -> &'static str;
    /// What it measures, in a line.
    fn title(&self) -> String;
    /// The length of one run when `--duration-ms` does not set it, or
    /// `None` for a section whose runs are not timed.
    fn run_length(&self) -> Option<Duration>;
    /// About how long [`run`](Self::run) takes with these options.
    fn estimate(&self, opts: &Options) -> Duration;
    /// Measures and returns the table, or why there is none. Reports what
    /// it is doing through `progress`.
    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome;
    /// The programs of other projects it needs (installed on demand before
    /// the timed parts, see [`peers`]).
    fn peers(&self) -> Vec<peers::Peer> {
        Vec::new()
    }
}

/// Every section, in the order they run.
pub fn sections() -> Vec<Box<dyn Section>> {
    vec![
        Box::new(alloc::AllocSection),
        Box::new(memcpy::MemcpySection),
        Box::new(net::SendSection::tcp()),
        Box::new(net::SendSection::unix()),
        Box::new(net::SendSection::file()),
        Box::new(udp::UdpSection),
        Box::new(nfs::NfsSection),
        Box::new(tls::TlsSection),
        Box::new(async_send::AsyncSection),
        Box::new(uring::UringSection),
    ]
}

/// `msgsplice bench`: runs the sections, prints their tables, writes the
/// files asked for. Fails if a section failed or a file cannot be written.
pub fn main(args: BenchArgs) -> ExitCode {
    let opts = Options::from(args);
    let report = run(&opts, &mut Progress::stderr());
    let mut ok = report
        .sections
        .iter()
        .all(|s| !matches!(s.outcome, Outcome::Failed { .. }));
    if let Some(path) = &opts.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|j| std::fs::write(path, j + "\n"));
        if let Err(e) = written {
            eprintln!("msgsplice bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &opts.svg {
        if let Err(e) = std::fs::write(path, svg::render(&report)) {
            eprintln!("msgsplice bench: cannot write {}: {e}", path.display());
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the selected sections, printing each table to stdout as it is done.
pub fn run(opts: &Options, progress: &mut Progress) -> Report {
    let host = Host::current();
    let chosen: Vec<Box<dyn Section>> = sections()
        .into_iter()
        .filter(|s| opts.sections.iter().any(|id| id == s.id()))
        .collect();
    println!(
        "msgsplice bench {}: {} CPUs ({}), Linux {}, load {} at start; {} runs per row{}",
        env!("CARGO_PKG_VERSION"),
        host.cpus,
        host.cpu_model,
        host.kernel,
        host.load_at_start
            .map_or("unknown".into(), |l| format!("{l:.2}")),
        opts.runs,
        if opts.quick {
            ", --quick (numbers not meaningful)"
        } else {
            ""
        }
    );
    if let Some(l) = host.load_at_start {
        if l > host.cpus as f64 / 2.0 {
            progress.note(format_args!(
                "the machine is busy (load {l:.2} on {} CPUs): expect noisy numbers",
                host.cpus
            ));
        }
    }
    println!();
    let wanted: Vec<peers::Peer> = chosen.iter().flat_map(|s| s.peers()).collect();
    peers::ensure(&wanted, opts.no_install, &mut |line| {
        progress.note(format_args!("{line}"))
    });
    let estimate: Duration = chosen.iter().map(|s| s.estimate(opts)).sum();
    progress.note(format_args!(
        "running {} (about {} s)",
        opts.sections.join(", "),
        estimate.as_secs().max(1)
    ));
    let mut out = Vec::new();
    for s in &chosen {
        progress.begin(s.id());
        let outcome = s.run(opts, progress);
        progress.end();
        let sr = SectionReport {
            id: s.id().to_string(),
            title: s.title(),
            outcome,
        };
        println!("{}", render_section(&sr));
        let _ = std::io::stdout().flush();
        out.push(sr);
    }
    progress.note(format_args!("done in {} s", progress.elapsed().as_secs()));
    Report {
        tool: "msgsplice bench".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        host,
        settings: Settings {
            sections: opts.sections.clone(),
            runs: opts.runs,
            duration_ms: opts.duration.map(|d| d.as_millis() as u64),
            sizes: opts.sizes.clone(),
            quick: opts.quick,
        },
        sections: out,
    }
}

/// Progress on stderr: on a terminal one line rewritten in place with
/// every step; otherwise (logs, CI) one line per section, so that logs stay
/// short.
pub struct Progress {
    start: Instant,
    live: bool,
    silent: bool,
    section: &'static str,
}

impl Progress {
    /// Progress to stderr, rewritten in place if stderr is a terminal.
    pub fn stderr() -> Progress {
        Progress {
            start: Instant::now(),
            live: std::io::stderr().is_terminal(),
            silent: false,
            section: "",
        }
    }

    /// No progress output at all (for tests).
    pub fn silent() -> Progress {
        Progress {
            silent: true,
            ..Progress::stderr()
        }
    }

    /// Time since the benchmark started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    fn note(&mut self, what: fmt::Arguments<'_>) {
        if !self.silent {
            eprintln!("[{:>4.0}s] {what}", self.elapsed().as_secs_f64());
        }
    }

    fn begin(&mut self, id: &'static str) {
        self.section = id;
        if !self.live {
            self.note(format_args!("{id} ..."));
        }
    }

    /// What the current section is doing now (shown on a terminal only).
    pub fn step(&mut self, what: fmt::Arguments<'_>) {
        if self.live && !self.silent {
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[K[{:>4.0}s] {}: {what}",
                self.elapsed().as_secs_f64(),
                self.section
            );
            let _ = e.flush();
        }
    }

    fn end(&mut self) {
        if self.live && !self.silent {
            eprint!("\r\x1b[K");
        }
    }
}

/// A byte size as people write it: "64 B", "1500 B", "16 KiB", "1 MiB",
/// "1.5 KiB".
pub fn fmt_size(n: usize) -> String {
    let (v, unit) = if n >= 1 << 20 && n % (1 << 18) == 0 {
        (n as f64 / (1 << 20) as f64, "MiB")
    } else if n >= 1 << 10 && n % (1 << 8) == 0 {
        (n as f64 / 1024.0, "KiB")
    } else {
        return format!("{n} B");
    };
    if v.fract() == 0.0 {
        format!("{v} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(fmt_size(64), "64 B");
        assert_eq!(fmt_size(1500), "1500 B");
        assert_eq!(fmt_size(1024), "1 KiB");
        assert_eq!(fmt_size(256 << 10), "256 KiB");
        assert_eq!(fmt_size(1 << 20), "1 MiB");
        assert_eq!(fmt_size(1536), "1.50 KiB");
    }

    #[test]
    fn estimate_of_defaults_is_within_budget() {
        // Not a timing test: checks the arithmetic of the plan, so that the
        // default run stays under two minutes on paper.
        let o = Options::default();
        let each: Vec<(&str, Duration)> = sections()
            .iter()
            .map(|s| (s.id(), s.estimate(&o)))
            .collect();
        let total: Duration = each.iter().map(|e| e.1).sum();
        assert!(total < Duration::from_secs(120), "{total:?}: {each:?}");
    }
}
