//! The `msgsplice` binary end to end: `bench --quick` on the allocator
//! section prints the expected table, writes JSON that parses back into a
//! report, and an SVG with the labels; mistakes on the command line exit
//! with status 2. Shapes only, never speeds.

use std::path::PathBuf;
use std::process::Command;

use msgsplice_cli::bench::report::{Outcome, Report};

fn msgsplice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_msgsplice"))
}

/// A fresh directory for one test (tests run in parallel), removed when
/// the test ends, failed or not.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(test: &str) -> Scratch {
    let dir =
        std::env::temp_dir().join(format!("msgsplice-cli-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

const CONTENDERS: [&str; 6] = [
    "FragCache",
    "FragCache per-CPU",
    "Bytes",
    "Vec<u8>",
    "Box<[u8]>",
    "Arc<[u8]>",
];

#[test]
fn quick_alloc_bench_prints_one_table_of_the_expected_shape() {
    let dir = scratch("alloc");
    let json = dir.join("alloc.json");
    let svg = dir.join("alloc.svg");
    let out = msgsplice()
        .args(["bench", "--quick", "--sections", "alloc", "--json"])
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");

    // One section, the allocator's.
    let titles: Vec<&str> = stdout.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(titles.len(), 1, "{stdout}");
    assert!(titles[0].starts_with("== alloc: "));

    // Twelve groups (3 modes x 4 operations), each a heading with the
    // columns and six rows ending in a ratio; Bytes is the baseline.
    let lines: Vec<&str> = stdout.lines().collect();
    let heads: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("ns/op") && lines[i].trim_end().ends_with("vs Bytes"))
        .collect();
    assert_eq!(heads.len(), 12, "{stdout}");
    for &h in &heads {
        assert!(lines[h].contains("min..max"));
        let rows = &lines[h + 1..h + 7];
        for (row, name) in rows.iter().zip(CONTENDERS) {
            let cells: Vec<&str> = row.split_whitespace().collect();
            assert!(row.trim_start().starts_with(name), "{row}");
            let ratio = if name == "Bytes" {
                assert_eq!(cells.last(), Some(&"baseline"), "{row}");
                cells[cells.len() - 2]
            } else {
                cells[cells.len() - 1]
            };
            let r: f64 = ratio.strip_suffix('x').unwrap().parse().unwrap();
            assert!(r > 0.0);
            if name == "Bytes" {
                assert_eq!(ratio, "1.00x");
            }
        }
        // A blank line or the end of the table follows the six rows.
        assert!(
            lines.get(h + 7).is_none_or(|l| l.trim().is_empty()),
            "{stdout}"
        );
    }
    assert!(stdout.contains("single thread, memdup 256 B"));
    assert!(stdout.contains("cross-thread, singly, memdup 256 B"));
    assert!(stdout.contains("cross-thread, batches of 64, alloc 4 KiB"));

    // The JSON holds the same results.
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report.sections.len(), 1);
    assert!(report.settings.quick);
    let Outcome::Ran(t) = &report.sections[0].outcome else {
        panic!("the allocator section ran")
    };
    assert_eq!(t.groups.len(), 12);
    for g in &t.groups {
        assert_eq!(g.rows.len(), 6);
        assert_eq!(g.rows.iter().filter(|r| r.baseline).count(), 1);
        for r in &g.rows {
            assert_eq!(r.value.samples.len(), report.settings.runs);
            assert!(r.ratio.is_some());
        }
    }

    // The chart names the section, the groups and the contenders.
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<?xml") && chart.trim_end().ends_with("</svg>"));
    assert!(chart.contains("single thread, memdup 256 B"));
    assert!(chart.contains("Box&lt;[u8]&gt;"));
    assert!(chart.contains(">1x<"));
}

#[test]
fn mistakes_exit_with_status_2_and_say_what_is_wrong() {
    let out = msgsplice()
        .args(["bench", "--sections", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown section \"nope\""), "{err}");
    assert!(err.contains("--help"), "{err}");
    assert!(out.stdout.is_empty(), "no table for a mistake");

    for words in [
        &["bench", "--runs", "0"][..],
        &["bench", "--quick=yes"],
        &["bench", "--sizes", "1G"],
        &["bench", "--", "--quick"],
        &["bench", "stray"],
    ] {
        let out = msgsplice().args(words).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{words:?}");
        assert!(out.stdout.is_empty(), "{words:?}");
    }

    let out = msgsplice().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));

    let out = msgsplice().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_lists_the_options_with_their_defaults() {
    let out = msgsplice().args(["bench", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--sections",
        "--runs",
        "[default: 5; 2 with --quick]",
        "--duration-ms",
        "tcp 150",
        "--sizes",
        "[default: 1K,16K,256K]",
        "--nfs-size",
        "[default: 256 MiB; 8 MiB with --quick]",
        "--json",
        "--svg",
        "--quick",
    ] {
        assert!(help.contains(want), "no {want:?} in:\n{help}");
    }
    for id in [
        "alloc", "memcpy", "tcp", "unix", "file", "udp", "nfs", "tls", "async", "uring",
    ] {
        assert!(
            help.contains(&format!("\n  {id} ")),
            "no section {id}:\n{help}"
        );
    }

    let out = msgsplice().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("msgsplice "));
}

#[test]
fn quick_run_of_every_section_verifies_and_reports() {
    let dir = scratch("all");
    let json = dir.join("all.json");
    let out = msgsplice()
        .args([
            "bench",
            "--quick",
            "--sizes",
            "1K,70K",
            "--duration-ms",
            "3",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("FAILED"), "{stdout}");
    for id in [
        "alloc", "memcpy", "tcp", "unix", "file", "udp", "async", "uring",
    ] {
        assert!(
            stdout.contains(&format!("\n== {id}: ")),
            "no {id} section:\n{stdout}"
        );
    }
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for s in &report.sections {
        let Outcome::Ran(t) = &s.outcome else {
            panic!("{} did not run: {:?}", s.id, s.outcome)
        };
        if ["tcp", "unix", "file"].contains(&s.id.as_str()) {
            let sized: Vec<_> = t
                .groups
                .iter()
                .filter(|g| g.name.starts_with("N = "))
                .collect();
            assert_eq!(sized.len(), 2, "{}", s.id);
            for g in sized {
                assert!(g.rows[0].baseline);
                for r in &g.rows {
                    for col in ["msgs/s", "syscalls/msg", "allocs/msg"] {
                        assert!(r.extras.contains_key(col), "{} {} {col}", s.id, r.name);
                    }
                    // The binary installs the counting allocator: the
                    // fresh-Vec strategy allocates once per message.
                    let allocs = r.extras["allocs/msg"].median;
                    let want = if r.name == "copy into a new Vec + write" {
                        1.0
                    } else {
                        0.0
                    };
                    assert_eq!(allocs, want, "{} {}", s.id, r.name);
                }
            }
        }
    }
}

#[test]
fn a_missing_peer_tool_is_named_in_place() {
    let empty = scratch("empty-path");
    let out = msgsplice()
        .args([
            "bench",
            "--quick",
            "--sections",
            "tcp",
            "--sizes",
            "1K",
            "--no-install",
        ])
        .env("PATH", &*empty)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stdout}");
    // In the table, and once on stderr before the timed parts; both say
    // which package and how to install it.
    for text in [&stdout, &stderr] {
        assert!(
            text.contains("iperf3 (Debian package iperf3) is missing"),
            "{text}"
        );
        assert!(
            text.contains("apt-get install -y --no-install-recommends iperf3"),
            "{text}"
        );
    }
}
