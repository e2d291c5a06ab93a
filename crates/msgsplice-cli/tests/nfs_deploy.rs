//! `msgsplice nfs serve` as deployed: several exports from flags and a
//! file, a state directory, JSON log lines, counters on SIGUSR1 and at a
//! clean SIGTERM shutdown.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
