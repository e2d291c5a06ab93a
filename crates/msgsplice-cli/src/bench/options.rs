//! The options of `msgsplice bench`: [`BenchArgs`] as clap reads them, and
//! [`Options`], what the sections use once the defaults that depend on
//! `--quick` are applied. The help text is built from the same constants
//! and the same list of sections as the code that runs, so the defaults it
//! states are the ones in force.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{fmt_size, nfs, sections};
use crate::cli::{parse_count, parse_size, parse_sizes, SizeList};

/// Runs per row by default.
pub const DEFAULT_RUNS: usize = 5;
/// Runs per row with `--quick`.
pub const QUICK_RUNS: usize = 2;
/// Per-run duration with `--quick`.
pub const QUICK_RUN: Duration = Duration::from_millis(5);
/// Payload sizes of the send sections by default, as written on the
/// command line (checked against [`DEFAULT_SIZES`] by a test).
const DEFAULT_SIZES_ARG: &str = "1K,16K,256K";
/// Payload sizes of the send sections by default: small, medium and large
/// messages.
pub const DEFAULT_SIZES: [usize; 3] = [1 << 10, 16 << 10, 256 << 10];

/// The command line of `msgsplice bench`, as written.
#[derive(Args, Clone, Debug)]
#[command(after_help = sections_help())]
pub struct BenchArgs {
    /// Sections to run, comma-separated, or all (listed below)
    #[arg(long, value_name = "LIST", default_value = "all", value_parser = parse_sections)]
    sections: SectionList,
    #[arg(long, value_name = "N", value_parser = parse_count, help = runs_help())]
    runs: Option<usize>,
    #[arg(long = "duration-ms", value_name = "N", value_parser = parse_count, help = duration_help())]
    duration_ms: Option<usize>,
    /// Payload sizes of tcp, unix, file and async, comma-separated (1K = 1024 B)
    #[arg(long, value_name = "LIST", default_value = DEFAULT_SIZES_ARG, value_parser = parse_sizes)]
    sizes: SizeList,
    #[arg(long = "nfs-size", value_name = "SIZE", value_parser = parse_nonzero_size, help = nfs_size_help())]
    nfs_size: Option<usize>,
    /// Write every result as JSON to FILE
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the ratios as an SVG bar chart in FILE
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Tiny runs, to check that everything works (numbers not meaningful)
    #[arg(long)]
    quick: bool,
    /// Never install a missing peer (iperf3, nfs-cat, nfs-ganesha); say how instead
    #[arg(long = "no-install")]
    no_install: bool,
}

/// The options of `msgsplice bench`, defaults applied.
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
    /// Leave missing peers missing (else, as root on Debian, they are
    /// installed with apt-get).
    pub no_install: bool,
}

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
            no_install: false,
        }
    }
}

impl Options {
    /// The duration of one run of a section whose default is `normal`.
    pub fn run_duration(&self, normal: Duration) -> Duration {
        self.duration
            .unwrap_or(if self.quick { QUICK_RUN } else { normal })
    }
}

impl From<BenchArgs> for Options {
    fn from(a: BenchArgs) -> Options {
        Options {
            sections: a.sections.0,
            runs: a
                .runs
                .unwrap_or(if a.quick { QUICK_RUNS } else { DEFAULT_RUNS }),
            duration: a.duration_ms.map(|ms| Duration::from_millis(ms as u64)),
            sizes: a.sizes.0,
            json: a.json,
            svg: a.svg,
            quick: a.quick,
            nfs_size: a.nfs_size,
            no_install: a.no_install,
        }
    }
}

/// Section ids, in run order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SectionList(Vec<String>);

/// A comma-separated list of section ids (or `all`), returned in run order.
fn parse_sections(s: &str) -> Result<SectionList, String> {
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
    Ok(SectionList(
        known
            .into_iter()
            .filter(|k| want.contains(k))
            .map(String::from)
            .collect(),
    ))
}

fn parse_nonzero_size(s: &str) -> Result<usize, String> {
    match parse_size(s)? {
        0 => Err("must be at least 1 byte".into()),
        n => Ok(n),
    }
}

fn runs_help() -> String {
    format!("Runs per row [default: {DEFAULT_RUNS}; {QUICK_RUNS} with --quick]")
}

/// Each timed section's own run length, from the sections themselves.
fn duration_help() -> String {
    let per_section: Vec<String> = sections()
        .iter()
        .filter_map(|s| Some(format!("{} {}", s.id(), s.run_length()?.as_millis())))
        .collect();
    format!(
        "Length of one run in every timed section [default: per section: {}; {} with --quick]",
        per_section.join(", "),
        QUICK_RUN.as_millis()
    )
}

fn nfs_size_help() -> String {
    format!(
        "File size of the nfs section [default: {}; {} with --quick]",
        fmt_size(nfs::DEFAULT_SIZE),
        fmt_size(nfs::QUICK_SIZE)
    )
}

/// The list of sections under the options, from [`sections`].
fn sections_help() -> String {
    let mut out = String::from("Sections, in the order they run:\n");
    for s in sections() {
        out.push_str(&format!("  {:<8}{}\n", s.id(), s.title()));
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `msgsplice bench` alone, for parsing its options in tests.
    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(words: &[&str]) -> Result<Options, clap::Error> {
        let words = std::iter::once("bench").chain(words.iter().copied());
        Bench::try_parse_from(words).map(|b| b.args.into())
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert_eq!(
            o.sections,
            ["alloc", "memcpy", "tcp", "unix", "file", "udp", "nfs", "tls", "async", "uring"]
        );
        assert_eq!(o.nfs_size, None);
        assert!(!o.no_install);
        assert_eq!(o.runs, DEFAULT_RUNS);
        assert_eq!(o.sizes, DEFAULT_SIZES);
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
            "--no-install",
        ])
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
        assert!(o.no_install);
    }

    #[test]
    fn quick() {
        let o = parse(&["--quick"]).unwrap();
        assert_eq!(o.runs, QUICK_RUNS);
        assert_eq!(o.run_duration(Duration::from_secs(1)), QUICK_RUN);
        let o = parse(&["--quick", "--runs", "4"]).unwrap();
        assert_eq!(o.runs, 4);
    }

    #[test]
    fn mistakes() {
        let e = parse(&["--sections", "alloc,nope"]).unwrap_err();
        assert!(e.to_string().contains("unknown section \"nope\""), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["--runs", "x"]).is_err());
        assert!(parse(&["--runs", "0"]).is_err());
        assert!(parse(&["--nfs-size", "0"]).is_err());
        assert!(parse(&["--quick=yes"]).is_err());
        assert!(parse(&["--", "--quick"]).is_err());
        assert_eq!(
            parse(&["--help"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
        assert_eq!(
            parse(&["--sections", "all"]).unwrap().sections.len(),
            sections().len()
        );
    }

    /// The crate README's option table names every option there is.
    #[test]
    fn readme_lists_every_option() {
        use clap::CommandFactory;
        let readme = include_str!("../../README.md");
        let mut checked = 0;
        for arg in Bench::command().get_arguments() {
            if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                checked += 1;
                assert!(
                    readme.contains(&format!("| `--{long}")),
                    "README.md has no row for --{long}"
                );
            }
        }
        assert_eq!(checked, 9, "every option of msgsplice bench");
    }

    #[test]
    fn help_states_the_defaults_in_force() {
        assert_eq!(parse_sizes(DEFAULT_SIZES_ARG).unwrap().0, DEFAULT_SIZES);
        let help = duration_help();
        for s in sections() {
            if let Some(d) = s.run_length() {
                assert!(
                    help.contains(&format!("{} {}", s.id(), d.as_millis())),
                    "{help}"
                );
            }
        }
        assert!(nfs_size_help().contains("256 MiB"));
        assert!(runs_help().contains(&format!("default: {DEFAULT_RUNS}")));
    }
}
