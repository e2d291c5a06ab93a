//! `msgsplice nfs serve` end to end: run the binary, read the URL it prints,
//! read files through it with libnfs-utils' `nfs-cat` and `nfs-ls`, then
//! kill the server by its PID.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `msgsplice nfs serve`; killed (by PID) and reaped on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_msgsplice"))
            .args(["nfs", "serve"])
            .arg(dir)
            // Never a portmapper: a killed server would leave mappings in
            // a system rpcbind (tests/nfs_deploy.rs covers the portmapper).
            .args(["--portmap", "off"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start msgsplice nfs serve");
        // The URL is the first line on stdout; wait for it with a limit.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = Server {
            child,
            url: String::new(),
        };
        server.url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints its URL")
            .trim()
            .to_string();
        server
    }

    /// The URL of `path` in the export.
    fn url_for(&self, path: &str) -> String {
        let (base, query) = self.url.split_once('?').expect("a URL with a query");
        format!("{base}/{path}?{query}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Child::kill signals this child's PID, nothing else.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a libnfs-utils tool with a time limit; fails the test, saying how
/// to install it, if it is missing.
fn nfs_tool(tool: &str, url: &str) -> Output {
    let out = Command::new("timeout")
        .args(["60", tool, url])
        .output()
        .expect("run `timeout` (coreutils)");
    assert_ne!(
        out.status.code(),
        Some(127),
        "{tool} not found: install libnfs-utils (apt-get install -y libnfs-utils)"
    );
    assert!(
        out.status.success(),
        "{tool} {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 4093) as u8).collect()
}

#[test]
fn nfs_serve_prints_a_url_that_nfs_cat_reads() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello, nfs\n").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let big = content((3 << 20) + 4093);
    std::fs::write(dir.path().join("sub/big.bin"), &big).unwrap();

    let s = Server::start(dir.path(), &[]);
    assert!(
        s.url.starts_with("nfs://127.0.0.1/export?nfsport=") && s.url.ends_with("&version=3"),
        "{}",
        s.url
    );
    let pid = s.child.id();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    assert_eq!(
        nfs_tool("nfs-cat", &s.url_for("hello.txt")).stdout,
        b"hello, nfs\n"
    );
    let got = nfs_tool("nfs-cat", &s.url_for("sub/big.bin")).stdout;
    assert_eq!(got.len(), big.len());
    assert!(got == big, "nfs-cat of sub/big.bin: wrong bytes");
    let ls = String::from_utf8(nfs_tool("nfs-ls", &s.url).stdout).unwrap();
    assert!(ls.lines().any(|l| l.ends_with(" hello.txt")), "{ls}");
    assert!(ls.lines().any(|l| l.ends_with(" sub")), "{ls}");

    drop(s);
    // Killed and reaped: the PID names no process of ours any more (or a
    // new, unrelated one; either way not a zombie of this test).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains(") Z "), "{stat}");
}

#[test]
fn nfs_serve_on_one_given_port() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"a\n").unwrap();
    // A free port: bound, read and released (another program could take it
    // in between; then this test fails loudly rather than silently).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let s = Server::start(dir.path(), &["--port", &port, "--mount-port", &port]);
    assert!(
        s.url
            .contains(&format!("?nfsport={port}&mountport={port}&")),
        "{}",
        s.url
    );
    assert_eq!(nfs_tool("nfs-cat", &s.url_for("a.txt")).stdout, b"a\n");
}

#[test]
fn nfs_serve_refuses_what_it_cannot_serve() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_msgsplice"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["nfs", "serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<DIR>"));

    let out = run(&["nfs", "serve", "/nonexistent/msgsplice-test-dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot export"));
    assert!(out.stdout.is_empty(), "no URL for a failed start");

    let out = run(&["nfs", "serve", ".", "--port", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a port number"));

    let out = run(&["nfs", "serve", "/a", "/b"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "no URL for a mistake");

    for help in [&["nfs", "--help"][..], &["nfs", "serve", "--help"]] {
        let out = run(help);
        assert!(out.status.success(), "{help:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("--mount-port"),
            "{help:?}"
        );
    }
}

/// `msgsplice bench --quick --sections nfs`: one table with the five rows
/// (nfs-ganesha's where it can run), nfsserve as the baseline, and the per-READ costs of msgsplice's export
/// (two system calls to send, no heap allocation). Shapes, never speeds.
#[test]
fn bench_nfs_section_runs_every_contender() {
    use msgsplice_cli::bench::report::{Outcome, Report};
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("nfs.json");
    let child = Command::new(env!("CARGO_BIN_EXE_msgsplice"))
        .args(["bench", "--quick", "--sections", "nfs", "--json"])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The bench names its scratch directory after its PID.
    let scratch = std::env::temp_dir().join(format!("msgsplice-bench-nfs-{}", child.id()));
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("== nfs: "), "{stdout}");

    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let Outcome::Ran(t) = &report.sections[0].outcome else {
        panic!(
            "the nfs section did not run (it needs libnfs-utils: apt-get install -y \
             libnfs-utils): {:?}",
            report.sections[0].outcome
        );
    };
    let names: Vec<&str> = t.groups[0].rows.iter().map(|r| r.name.as_str()).collect();
    let mut want = vec![
        "nfsserve 0.11 (tokio)",
        "msgsplice nfs serve",
        "msgsplice nfs serve --engine uring",
        "nfs-ganesha (VFS)",
        "sendfile to a plain reader",
        "sendfile per 1 MiB request",
    ];
    if let Some(why) = t
        .notes
        .iter()
        .find(|n| n.contains("--engine uring rows missing"))
    {
        // Only where the kernel does not allow io_uring.
        msgsplice_testkit::skip::skip_unsupported(
            "bench_nfs_section_runs_every_contender (--engine uring rows)",
            why,
        );
        want.retain(|n| *n != "msgsplice nfs serve --engine uring");
    } else {
        let seq = t
            .groups
            .iter()
            .find(|g| g.name.starts_with("sequential 1 MiB"));
        let in_load = seq.map(|g| g.rows.iter().any(|r| r.name.ends_with("--engine uring")));
        assert_eq!(in_load, Some(true), "{stdout}");
        assert!(
            t.notes.iter().any(|n| n.starts_with("--engine uring vs")),
            "{stdout}"
        );
    }
    if !names.contains(&"nfs-ganesha (VFS)") {
        // It runs as root with its packages (scripts/test.sh installs
        // them, and so does the bench); the note says why it did not.
        let why = t
            .notes
            .iter()
            .find(|n| n.contains("nfs-ganesha rows missing"));
        msgsplice_testkit::skip(
            "bench_nfs_section_runs_every_contender (nfs-ganesha rows)",
            why.map_or("no note says why", |n| n.as_str()),
        );
        want.retain(|n| *n != "nfs-ganesha (VFS)");
    } else {
        // Every row of the section has it, with its CPU time, and the
        // notes give its targets.
        for g in &t.groups {
            let row = g.rows.iter().find(|r| r.name == "nfs-ganesha (VFS)");
            let row = row.unwrap_or_else(|| panic!("no nfs-ganesha row in {}", g.name));
            // CPU time may read 0 in a quick run (10 ms ticks); the
            // column is there and the READs came back.
            assert!(row.extras.contains_key("server CPU-s/GiB"), "{stdout}");
            assert!(row.value.median > 0.0, "{stdout}");
        }
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("msgsplice vs nfs-ganesha") && n.contains("target <= 0.15x")),
            "{stdout}"
        );
    }
    assert_eq!(names, want, "{stdout}");
    assert!(t.groups[0].rows[0].baseline);
    for r in &t.groups[0].rows {
        assert!(r.value.median > 0.0, "{r:?}");
        assert!(r.extras["server CPU-s/GiB"].median > 0.0, "{r:?}");
    }
    let ours = &t.groups[0].rows[1];
    assert_eq!(ours.extras["syscalls/READ"].median, 2.0, "{stdout}");
    assert_eq!(ours.extras["allocs/READ"].max, 0.0, "{stdout}");
    assert!(
        t.notes.iter().any(|n| n.contains("target >= 1.4x")),
        "{stdout}"
    );
    // The scratch directory is gone.
    assert!(!scratch.exists(), "{} left behind", scratch.display());
}

/// The default driver (tokio) exits cleanly on SIGTERM and on SIGINT;
/// `--driver threads` serves the same export.
#[test]
fn nfs_serve_drivers_and_graceful_stop() {
    use rustix::process::{kill_process, Pid, Signal};
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"a\n").unwrap();
    for (extra, signal) in [
        (&[][..], Signal::TERM),
        (&["--driver", "tokio"][..], Signal::INT),
    ] {
        let mut s = Server::start(dir.path(), extra);
        assert_eq!(nfs_tool("nfs-cat", &s.url_for("a.txt")).stdout, b"a\n");
        let pid = Pid::from_child(&s.child);
        kill_process(pid, signal).expect("signal the server");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = s.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after {signal:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit after {signal:?}: {status}");
    }
    let s = Server::start(dir.path(), &["--driver", "threads"]);
    assert_eq!(nfs_tool("nfs-cat", &s.url_for("a.txt")).stdout, b"a\n");
    // The io_uring engine (the threads driver by itself; sendmsg, with a
    // warning, where the kernel does not allow io_uring).
    let s = Server::start(dir.path(), &["--engine", "uring"]);
    assert_eq!(nfs_tool("nfs-cat", &s.url_for("a.txt")).stdout, b"a\n");
}

/// `--engine uring` with `--driver tokio` is refused before anything is
/// bound, saying what to do.
#[test]
fn nfs_serve_refuses_uring_on_the_tokio_driver() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_msgsplice"))
        .args(["nfs", "serve", "--portmap", "off", "--engine", "uring"])
        .args(["--driver", "tokio"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no URL for a refused start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--engine uring needs --driver threads"),
        "{err}"
    );
}
