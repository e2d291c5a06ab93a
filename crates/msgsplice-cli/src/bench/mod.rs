//! `msgsplice bench`: side-by-side measurements, one table per section.
//!
//! A section is anything that implements [`Section`]: it measures its
//! contenders (each for `--runs` runs), and returns an [`Outcome`]: a
//! [`Table`](report::Table) of rows grouped by condition, each group with a
//! baseline row, or the reason it could not run here. [`sections`] lists
//! them in the order they run; adding a section is one entry there.
//!
//! The tables go to stdout as each section finishes, progress goes to
//! stderr, and `--json` / `--svg` write the whole [`Report`] at the end.
//!
//! Sections now: `alloc` (the fragment allocator against heap buffers),
//! `memcpy` (the physical reference), `tcp` and `unix` (send strategies for
//! in-memory payloads; `tcp` with iperf3 as reference), `file` (file-backed
//! payloads), `udp` (UDP GSO with and without zero-copy, on a drop sink and
//! on loopback), `nfs` (the NFSv3 export against the nfsserve crate, with
//! `nfs-cat` as the client), `tls` (msgsplice's TLS sender against rustls's
//! buffered writer).

pub mod alloc;
pub mod memcpy;
pub mod net;
pub mod netns;
pub mod nfs;
pub mod pair;
pub mod report;
pub mod ring;
pub mod stats;
pub mod svg;
pub mod tls;
pub mod udp;

use std::ffi::OsString;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::args::{parse_count, parse_size, parse_sizes, ArgError, Args};
use report::{render_section, Host, Outcome, Report, SectionReport, Settings};

/// A part of the benchmark that produces one table.
pub trait Section {
    /// Short name, as given to `--sections`.
    fn id(&self) -> &'static str;
    /// What it measures, in a line.
    fn title(&self) -> String;
    /// About how long [`run`](Self::run) takes with these options.
    fn estimate(&self, opts: &Options) -> Duration;
    /// Measures and returns the table, or why there is none. Reports what
    /// it is doing through `progress`.
    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome;
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
    ]
}

/// The options of `msgsplice bench`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Section ids to run, in the order of [`sections`].
    pub sections: Vec<String>,
    /// Runs per row.
    pub runs: usize,
    /// Per-run duration for every section (else each section's default).
    pub duration: Option<Duration>,
    /// Payload sizes of the send sections.
    pub sizes: Vec<usize>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Where to write the SVG chart.
    pub svg: Option<PathBuf>,
    /// Tiny durations and two runs: checks that everything runs, measures
    /// nothing worth reading.
    pub quick: bool,
    /// File size of the `nfs` section (else [`nfs::DEFAULT_SIZE`], or
    /// [`nfs::QUICK_SIZE`] with `quick`).
    pub nfs_size: Option<usize>,
}

/// Runs per row by default.
pub const DEFAULT_RUNS: usize = 5;
/// Runs per row with `--quick`.
pub const QUICK_RUNS: usize = 2;
/// Per-run duration with `--quick`.
pub const QUICK_RUN: Duration = Duration::from_millis(5);
/// Payload sizes by default (issue 3: 1 KiB, 16 KiB, 256 KiB).
pub const DEFAULT_SIZES: [usize; 3] = [1 << 10, 16 << 10, 256 << 10];

impl Default for Options {
    fn default() -> Options {
        Options {
            sections: sections().iter().map(|s| s.id().to_string()).collect(),
            runs: DEFAULT_RUNS,
            duration: None,
            sizes: DEFAULT_SIZES.to_vec(),
            json: None,
            svg: None,
            quick: false,
            nfs_size: None,
        }
    }
}

impl Options {
    /// The duration of one run of a section whose default is `normal`.
    pub fn run_duration(&self, normal: Duration) -> Duration {
        self.duration
            .unwrap_or(if self.quick { QUICK_RUN } else { normal })
    }

    /// Parses the words after `bench`. `Ok(None)` means help was asked for.
    pub fn parse(words: Vec<OsString>) -> Result<Option<Options>, ArgError> {
        let mut o = Options::default();
        let mut runs = None;
        let mut a = Args::new(words);
        while let Some(opt) = a.next_opt()? {
            match opt.name.as_str() {
                "-h" | "--help" => return Ok(None),
                "--sections" => o.sections = a.parsed(&opt, parse_sections)?,
                "--runs" => runs = Some(a.parsed(&opt, parse_count)?),
                "--duration-ms" => {
                    let ms = a.parsed(&opt, parse_count)?;
                    o.duration = Some(Duration::from_millis(ms as u64));
                }
                "--sizes" => o.sizes = a.parsed(&opt, parse_sizes)?,
                "--nfs-size" => {
                    o.nfs_size = Some(a.parsed(&opt, |s| match parse_size(s)? {
                        0 => Err("must be at least 1 byte".to_string()),
                        n => Ok(n),
                    })?)
                }
                "--json" => o.json = Some(a.value(&opt)?.into()),
                "--svg" => o.svg = Some(a.value(&opt)?.into()),
                "--quick" => {
                    a.flag(&opt)?;
                    o.quick = true;
                }
                _ => return Err(ArgError::Unknown(opt.name)),
            }
        }
        o.runs = runs.unwrap_or(if o.quick { QUICK_RUNS } else { DEFAULT_RUNS });
        Ok(Some(o))
    }
}

/// A comma-separated list of section ids (or `all`), returned in run order.
fn parse_sections(s: &str) -> Result<Vec<String>, String> {
    let known: Vec<&str> = sections().iter().map(|s| s.id()).collect();
    let mut want = Vec::new();
    for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if w == "all" {
            want.extend(known.iter().copied());
        } else if known.contains(&w) {
            want.push(w);
        } else {
            return Err(format!(
                "unknown section {w:?} (known: {}, all)",
                known.join(", ")
            ));
        }
    }
    if want.is_empty() {
        return Err("give at least one section".into());
    }
    Ok(known
        .into_iter()
        .filter(|k| want.contains(k))
        .map(String::from)
        .collect())
}

/// The help text of `msgsplice bench`.
pub const USAGE: &str = "\
usage: msgsplice bench [options]

Measures msgsplice against the usual ways, side by side, and prints one
table per section: median and min..max over several runs, and the ratio
against the section's baseline (above 1.00x: better than the baseline).

options:
  --sections LIST     sections to run, comma-separated, or all (default all):
                        alloc   FragCache against Bytes, Vec, Box, Arc
                        memcpy  single-thread memcpy bandwidth (reference)
                        tcp     send strategies over TCP loopback, iperf3 reference
                        unix    send strategies over a Unix stream socket
                        file    file-backed payloads over TCP loopback
                        udp     UDP GSO, SPLICE off/on/default: sender CPU per GiB
                                on a drop sink (needs root) and on loopback
                        nfs     NFSv3 READ with nfs-cat: this export against the
                                nfsserve crate, and the sendfile ceiling
                                (needs libnfs-utils; builds the nfsserve peer
                                once if it is not beside this binary)
                        tls     TLS: msgsplice TlsSplicer against rustls's writer
  --runs N            runs per row (default 5; 2 with --quick)
  --duration-ms N     length of one run in every section (default per section:
                        alloc 50, memcpy 300, tcp/unix/file 200, udp 300)
  --sizes LIST        payload sizes of tcp, unix and file (default 1K,16K,256K)
  --nfs-size SIZE     file size of the nfs section (default 256M, 8M with
                        --quick; 1024M for the 1 GiB of issue 5)
  --json FILE         write every result as JSON
  --svg FILE          draw the ratios as an SVG bar chart
  --quick             tiny runs, to check that everything works
  -h, --help          this text
";

/// `msgsplice bench ARGS...`.
pub fn main(words: Vec<OsString>) -> ExitCode {
    let opts = match Options::parse(words) {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("msgsplice bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
    let estimate: Duration = chosen.iter().map(|s| s.estimate(opts)).sum();
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

    fn parse(words: &[&str]) -> Result<Option<Options>, ArgError> {
        Options::parse(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap().unwrap();
        assert_eq!(
            o.sections,
            ["alloc", "memcpy", "tcp", "unix", "file", "udp", "nfs", "tls"]
        );
        assert_eq!(o.nfs_size, None);
        assert_eq!(o.runs, 5);
        assert_eq!(o.sizes, [1024, 16384, 262144]);
        assert_eq!(
            o.run_duration(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn options() {
        let o = parse(&[
            "--sections",
            "tcp,alloc",
            "--runs=3",
            "--duration-ms",
            "7",
            "--sizes",
            "64,1M",
            "--json",
            "r.json",
            "--svg=r.svg",
            "--nfs-size",
            "1024M",
        ])
        .unwrap()
        .unwrap();
        // Run order, whatever order they were given in.
        assert_eq!(o.sections, ["alloc", "tcp"]);
        assert_eq!(o.runs, 3);
        assert_eq!(
            o.run_duration(Duration::from_secs(1)),
            Duration::from_millis(7)
        );
        assert_eq!(o.sizes, [64, 1 << 20]);
        assert_eq!(o.json.as_deref(), Some(std::path::Path::new("r.json")));
        assert_eq!(o.svg.as_deref(), Some(std::path::Path::new("r.svg")));
        assert_eq!(o.nfs_size, Some(1 << 30));
    }

    #[test]
    fn quick() {
        let o = parse(&["--quick"]).unwrap().unwrap();
        assert_eq!(o.runs, QUICK_RUNS);
        assert_eq!(o.run_duration(Duration::from_secs(1)), QUICK_RUN);
        let o = parse(&["--quick", "--runs", "4"]).unwrap().unwrap();
        assert_eq!(o.runs, 4);
    }

    #[test]
    fn mistakes() {
        assert!(parse(&["--sections", "alloc,nope"])
            .unwrap_err()
            .to_string()
            .contains("unknown section \"nope\""));
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--runs", "x"]).is_err());
        assert_eq!(parse(&["--help"]), Ok(None));
        assert_eq!(
            parse(&["--sections", "all"])
                .unwrap()
                .unwrap()
                .sections
                .len(),
            sections().len()
        );
    }

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
        let total: Duration = sections().iter().map(|s| s.estimate(&o)).sum();
        assert!(total < Duration::from_secs(120), "{total:?}");
    }
}
