//! `msgsplice nfs serve` as deployed: several exports from flags and a
//! file, a state directory, JSON log lines, counters on SIGUSR1 and at a
//! clean SIGTERM shutdown.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use msgsplice_testkit::skip::skip;
use rustix::process::{kill_process, Pid, Signal};

/// Starts the server with `args`, returns it and the URL it printed.
fn start(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_msgsplice"))
        .args(["nfs", "serve"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start msgsplice nfs serve");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).expect("a URL");
    (child, url.trim().to_owned())
}

fn signal(child: &Child, sig: Signal) {
    let pid = Pid::from_raw(child.id() as i32).expect("a child pid");
    kill_process(pid, sig).expect("signal the server");
}

/// Runs `nfs-cat URL`; the bytes it printed.
fn nfs_cat(url: &str) -> Vec<u8> {
    let out = Command::new("timeout")
        .args(["60", "nfs-cat", url])
        .output()
        .expect("timeout(1) runs");
    assert!(
        out.status.success(),
        "nfs-cat {url} (Debian package libnfs-utils): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn several_exports_logged_as_json_with_counters() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::write(a.join("one.txt"), b"one\n").unwrap();
    std::fs::write(b.join("two.txt"), b"two\n").unwrap();
    let file = d.path().join("exports");
    std::fs::write(
        &file,
        format!("# from a file\nbee={},all_squash\n", b.display()),
    )
    .unwrap();
    let state = d.path().join("state");
    let export_a = format!("ay={},clients=127.0.0.0/8", a.display());
    let (mut child, url) = start(&[
        "--export",
        &export_a,
        "--exports",
        file.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--portmap",
        "off",
        "--log-format",
        "json",
    ]);
    assert!(url.starts_with("nfs://127.0.0.1/ay?"), "{url}");
    let query = url.split_once('?').unwrap().1;
    assert_eq!(
        nfs_cat(&format!("nfs://127.0.0.1/ay/one.txt?{query}")),
        b"one\n"
    );
    assert_eq!(
        nfs_cat(&format!("nfs://127.0.0.1/bee/two.txt?{query}")),
        b"two\n"
    );

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("handle-key")), 0o600);

    signal(&child, Signal::USR1);
    // SIGUSR1 must not stop it: it still serves.
    assert_eq!(
        nfs_cat(&format!("nfs://127.0.0.1/ay/one.txt?{query}")),
        b"one\n"
    );
    signal(&child, Signal::TERM);
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(status.success(), "a clean stop: {status}\n{log}");

    assert!(
        log.contains("serving") && log.contains("as /bee to everyone"),
        "{log}"
    );
    let mounts = log
        .lines()
        .filter(|l| l.starts_with(r#"{"event":"mount","peer":"127.0.0.1:"#))
        .count();
    assert!(mounts >= 3, "one JSON line per mount:\n{log}");
    assert!(log.contains(r#""path":"/bee"}"#), "{log}");
    assert!(log.contains(r#"{"event":"connect""#), "{log}");
    assert!(!log.contains("no state directory"), "{log}");
    let counters: Vec<&str> = log.lines().filter(|l| l.contains("counters:")).collect();
    assert_eq!(counters.len(), 2, "on SIGUSR1 and at exit:\n{log}");
    assert!(counters[1].contains(" READ=3"), "{log}");
    assert!(counters[1].contains("read_bytes=12"), "{log}");
}

#[test]
fn a_bad_export_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_msgsplice"))
        .args(["nfs", "serve", "--export", "x=/tmp,rw", "--portmap", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--export x=/tmp,rw: unknown option \"rw\""),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// Runs `tool args` under a time limit; `None` if the tool is missing.
fn tool(name: &str, args: &[&str]) -> Option<std::process::Output> {
    let found = Command::new("which")
        .arg(name)
        .output()
        .ok()?
        .status
        .success();
    found.then(|| {
        Command::new("timeout")
            .arg("60")
            .arg(name)
            .args(args)
            .output()
            .expect("timeout(1) runs")
    })
}

/// A running `rpcbind` this test started, killed when dropped.
struct Rpcbind(Child);

impl Drop for Rpcbind {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rpcinfo_lists_nfs() -> bool {
    let o = tool("rpcinfo", &["-p", "127.0.0.1"]).expect("rpcinfo (Debian package rpcbind)");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .any(|l| l.contains("100003") && l.contains("nfs"))
}

/// With a portmapper (the built-in one, then a real rpcbind this test
/// starts), `showmount` and `nfs-cat` need no ports; SIGTERM stops the
/// server and takes its mappings away.
#[test]
fn found_through_a_portmapper_and_gone_after_sigterm() {
    const T: &str = "found_through_a_portmapper_and_gone_after_sigterm";
    if !rustix::process::geteuid().is_root() {
        return skip(T, "port 111 and rpcbind need root");
    }
    if std::net::TcpListener::bind("0.0.0.0:111").is_err() {
        return skip(
            T,
            "port 111 is taken (a system rpcbind?); this test runs its own",
        );
    }
    if tool("showmount", &["-h"]).is_none() || tool("rpcbind", &["-h"]).is_none() {
        return skip(T, "needs Debian packages rpcbind and nfs-common");
    }
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("f.txt"), b"found\n").unwrap();
    let export = format!("pub={}", d.path().display());
    for mode in ["builtin", "system"] {
        let _rpcbind = (mode == "system").then(|| {
            // -f: the child is the daemon; no -w: no state of earlier runs.
            let child = Command::new("rpcbind").arg("-f").spawn().expect("rpcbind");
            let guard = Rpcbind(child);
            let start = std::time::Instant::now();
            while tool("rpcinfo", &["-p", "127.0.0.1"]).is_none_or(|o| !o.status.success()) {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "rpcbind never answered"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            guard
        });
        let (mut child, _url) = start(&["--export", &export, "--portmap", mode]);
        let o = tool("showmount", &["-e", "127.0.0.1"]).unwrap();
        let listed = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            listed.lines().any(|l| l.starts_with("/pub ")),
            "{mode}: {listed}"
        );
        assert_eq!(nfs_cat("nfs://127.0.0.1/pub/f.txt"), b"found\n", "{mode}");
        signal(&child, Signal::TERM);
        let status = child.wait().unwrap();
        let mut log = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        assert!(status.success(), "{mode}: {log}");
        let said = match mode {
            "builtin" => "serving the built-in portmapper at 127.0.0.1:111",
            _ => "registered NFS and MOUNT with the system rpcbind",
        };
        assert!(log.contains(said), "{mode}: {log}");
        if mode == "system" {
            assert!(!rpcinfo_lists_nfs(), "unregistered at SIGTERM");
        } else {
            assert!(
                std::net::TcpListener::bind("127.0.0.1:111").is_ok(),
                "the built-in portmapper is gone"
            );
        }
    }
}
