//! Found by standard tools: with the built-in portmapper and with a real
//! `rpcbind`, `rpcinfo -p` lists NFS and MOUNT, `showmount -e` lists the
//! exports and their clients, and `nfs-cat` reads a file given no ports.
//!
//! Tools: Debian packages `rpcbind` (rpcinfo, rpcbind), `nfs-common`
//! (showmount) and `libnfs-utils` (nfs-cat).
//!
//! Port 111 is one per host: the tests here take [`PORT_111`] in turn.
//! What each does with a portmapper it finds already running:
//!
//! - the built-in test needs port 111 free, and skips (loudly) if a
//!   system rpcbind holds it;
//! - the rpcbind test starts its own `rpcbind -f` when the port is free
//!   and always kills it after; when a system rpcbind already answers it
//!   uses that one instead (registering and unregistering only our own
//!   mappings) and never stops it.
//!
//! In CI nothing holds port 111 (scripts install rpcbind without starting
//! it), so both run, each with a portmapper of its own making.

mod rpcbind;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

use msgsplice_rpc::exports::Exports;
use msgsplice_rpc::nfs::{NfsConfig, NfsServer};
use msgsplice_rpc::portmap::{probe, PortmapMode, PortmapOutcome, Portmapper};
use msgsplice_testkit::skip::skip;

static PORT_111: Mutex<()> = Mutex::new(());

fn lock_111() -> MutexGuard<'static, ()> {
    PORT_111.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `tool args` with a time limit; `None` if the tool is missing.
fn run(tool: &str, args: &[&str]) -> Option<Output> {
    if Command::new("which").arg(tool).output().ok()?.status.code() != Some(0) {
        return None;
    }
    let o = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {tool}: {e}"));
    Some(o)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn port_111_free() -> bool {
    TcpListener::bind("0.0.0.0:111").is_ok()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An export server of two exports, one of them limited to a network.
fn server(dir: &std::path::Path) -> NfsServer {
    std::fs::write(dir.join("hello.txt"), b"hello over nfs\n").unwrap();
    let text = format!(
        "data={0}\nlimited={0},clients=192.0.2.0/24\n",
        dir.display()
    );
    let exports = Exports::parse(&text).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    NfsServer::bind_exports(&exports, any, any, NfsConfig::default()).unwrap()
}

/// What every client tool must see of the server at `nfs_port`.
fn tools_find_the_export(test: &str, nfs_port: u16, mount_port: u16) {
    let Some(o) = run("rpcinfo", &["-p", "127.0.0.1"]) else {
        return skip(test, "rpcinfo is not installed (Debian package rpcbind)");
    };
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let row = |prog: &str, port: u16, name: &str| {
        out.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5
                && f[0] == prog
                && f[1] == "3"
                && f[2] == "tcp"
                && f[3] == port.to_string()
                && f[4] == name
        })
    };
    assert!(
        row("100003", nfs_port, "nfs"),
        "nfs 3 tcp {nfs_port}:\n{out}"
    );
    let mountd = row("100005", mount_port, "mountd");
    assert!(mountd, "mountd 3 tcp {mount_port}:\n{out}");

    let Some(o) = run("showmount", &["-e", "127.0.0.1"]) else {
        return skip(
            test,
            "showmount is not installed (Debian package nfs-common)",
        );
    };
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    let line = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} in:\n{out}"))
            .to_owned()
    };
    assert!(line("/data").ends_with('*'), "{out}");
    assert!(line("/limited").ends_with("192.0.2.0/24"), "{out}");

    let Some(o) = run("nfs-cat", &["nfs://127.0.0.1/data/hello.txt"]) else {
        return skip(
            test,
            "nfs-cat is not installed (Debian package libnfs-utils)",
        );
    };
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(o.stdout, b"hello over nfs\n");
}

#[test]
fn tools_find_the_export_through_the_builtin_portmapper() {
    const T: &str = "tools_find_the_export_through_the_builtin_portmapper";
    let _port = lock_111();
    if !is_root() {
        return skip(T, "port 111 needs root");
    }
    if !port_111_free() {
        return skip(
            T,
            "port 111 is taken (a system rpcbind?); the builtin mode needs it",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (nfs, mount) = (server.nfs_addr(), server.mount_addr());
    let handle = server.spawn().unwrap();
    let pm = Portmapper::start(PortmapMode::Auto, nfs, mount).unwrap();
    assert_eq!(
        pm.outcome(),
        &PortmapOutcome::BuiltIn("127.0.0.1:111".parse().unwrap())
    );
    tools_find_the_export(T, nfs.port(), mount.port());
    pm.stop().unwrap();
    assert!(!probe("127.0.0.1:111".parse().unwrap()).unwrap(), "stopped");
    handle.shutdown().unwrap();
}

#[test]
fn tools_find_the_export_through_rpcbind() {
    const T: &str = "tools_find_the_export_through_rpcbind";
    let _port = lock_111();
    let here: SocketAddr = "127.0.0.1:111".parse().unwrap();
    // Start our own rpcbind if none runs; use a running one otherwise.
    let _ours = if probe(here).unwrap_or(false) {
        None
    } else {
        if !is_root() {
            return skip(T, "rpcbind must run as root");
        }
        if !port_111_free() {
            return skip(T, "port 111 is taken by something that is not a portmapper");
        }
        let child = match rpcbind::start(here) {
            Ok(c) => c,
            Err(why) => return skip(T, &why),
        };
        Some(child)
    };
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path());
    let (nfs, mount) = (server.nfs_addr(), server.mount_addr());
    let handle = server.spawn().unwrap();
    let pm = Portmapper::start(PortmapMode::Auto, nfs, mount).unwrap();
    assert_eq!(pm.outcome(), &PortmapOutcome::System(here));
    tools_find_the_export(T, nfs.port(), mount.port());
    pm.stop().unwrap();
    // Our mappings are gone; rpcbind itself is still there.
    let o = run("rpcinfo", &["-p", "127.0.0.1"]).unwrap();
    let out = text(&o);
    let ours = format!(" {} ", nfs.port());
    assert!(!out.lines().any(|l| l.contains(&ours)), "{out}");
    assert!(probe(here).unwrap());
    handle.shutdown().unwrap();
}

#[test]
fn insisting_modes_fail_rather_than_fall_back() {
    let _port = lock_111();
    let here: SocketAddr = "127.0.0.1:111".parse().unwrap();
    let nfs: SocketAddr = "127.0.0.1:2049".parse().unwrap();
    let off = Portmapper::start(PortmapMode::Off, nfs, nfs).unwrap();
    assert_eq!(off.outcome(), &PortmapOutcome::Off);
    if !probe(here).unwrap_or(false) {
        assert!(Portmapper::start(PortmapMode::System, nfs, nfs).is_err());
    }
    // Something that is not a portmapper holds port 111 of another
    // loopback address: the builtin mode cannot bind it and says so.
    let Ok(_blocker) = TcpListener::bind("127.0.0.3:111") else {
        return skip(
            "insisting_modes_fail_rather_than_fall_back",
            "cannot bind 127.0.0.3:111",
        );
    };
    let at3: SocketAddr = "127.0.0.3:2049".parse().unwrap();
    let err = Portmapper::start(PortmapMode::BuiltIn, at3, at3).unwrap_err();
    assert!(err.to_string().contains("127.0.0.3:111"), "{err}");
}
