//! The portmapper against real tools: `rpcinfo` queries our server, and
//! our client registers with a real `rpcbind` (Debian package `rpcbind`).
//!
//! Tests that need port 111 take [`PORT_111`] so they do not meet each
//! other, and skip (loudly) when something else holds the port.

mod rpcbind;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};

use msgsplice::FragCache;
use msgsplice_rpc::portmap::{
    nfs_v3_over_tcp, probe, register_with, uaddr::format_uaddr, unregister_with, PortmapProgram,
    Registration, Registrations, PMAP_PORT, PMAP_PROGRAM,
};
use msgsplice_rpc::server::{Dispatcher, RpcServer, ServerConfig, ServerHandle};

const NFS: u32 = 100003;
const MOUNT: u32 = 100005;

static PORT_111: Mutex<()> = Mutex::new(());

fn lock_111() -> MutexGuard<'static, ()> {
    PORT_111.lock().unwrap_or_else(|e| e.into_inner())
}

/// Says why a test cannot run. Never a quiet pass: the test kit counts
/// it, and in CI as root it fails.
fn skip(test: &str, reason: &str) {
    msgsplice_testkit::skip(test, reason);
}

/// Runs `tool args`; `None` if the tool is not installed.
fn run(tool: &str, args: &[&str]) -> Option<Output> {
    match Command::new(tool).args(args).stdin(Stdio::null()).output() {
        Ok(o) => Some(o),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running {tool}: {e}"),
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The registrations a deployed export would make: NFS and MOUNT v3 on TCP.
fn ours() -> Vec<Registration> {
    let mut v = nfs_v3_over_tcp(sa("127.0.0.1:20490"), sa("127.0.0.1:20048")).to_vec();
    v.push(Registration::tcp(MOUNT, 3, sa("[::1]:20048")).with_owner("msgsplice"));
    v
}

/// Our portmapper serving `table` at `addr`.
fn serve(addr: SocketAddr, program: PortmapProgram) -> std::io::Result<ServerHandle> {
    let dispatcher = Dispatcher::new(vec![Arc::new(program)], FragCache::new());
    RpcServer::bind(&[addr], dispatcher, ServerConfig::default())?.spawn()
}

fn table_of(regs: &[Registration]) -> Arc<Mutex<Registrations>> {
    let mut t = Registrations::new();
    for r in regs {
        assert!(t.insert(r.clone()));
    }
    Arc::new(Mutex::new(t))
}

/// `rpcinfo -p` rows as (program, version, proto, port).
fn rpcinfo_p_rows(out: &str) -> Vec<(u32, u32, String, u16)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                f.get(1)?.parse().ok()?,
                f.get(2)?.to_string(),
                f.get(3)?.parse().ok()?,
            ))
        })
        .collect()
}

fn has_row(rows: &[(u32, u32, String, u16)], prog: u32, vers: u32, proto: &str, port: u16) -> bool {
    rows.iter()
        .any(|r| r.0 == prog && r.1 == vers && r.2 == proto && r.3 == port)
}

#[test]
fn rpcinfo_pings_every_version_of_our_portmapper() {
    const T: &str = "rpcinfo_pings_every_version_of_our_portmapper";
    let server = serve(
        sa("127.0.0.1:0"),
        PortmapProgram::read_only(table_of(&ours())),
    )
    .unwrap();
    let addr = server.local_addrs()[0];
    assert!(probe(addr).unwrap(), "probe of our portmapper");

    // `-a` takes the server's universal address, so rpcinfo asks nothing
    // of port 111 (`-n PORT` would still look the program up there first).
    let uaddr = format_uaddr(addr);
    let Some(o) = run("rpcinfo", &["-a", &uaddr, "-T", "tcp", "100000", "2"]) else {
        return skip(T, "rpcinfo is not installed (Debian package rpcbind)");
    };
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("program 100000 version 2 ready and waiting"),
        "{}",
        text(&o)
    );

    // Without a version, rpcinfo learns the range from PROG_MISMATCH and
    // pings each version in it.
    let o = run("rpcinfo", &["-a", &uaddr, "-T", "tcp", "100000"]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for v in 2..=4 {
        let want = format!("program 100000 version {v} ready and waiting");
        assert!(text(&o).contains(&want), "{}", text(&o));
    }
    let o = run("rpcinfo", &["-a", &uaddr, "-T", "tcp", "100000", "5"]).unwrap();
    assert!(
        !o.status.success(),
        "version 5 must not answer: {}",
        text(&o)
    );
    assert!(text(&o).contains("is not available"), "{}", text(&o));
    server.shutdown().unwrap();
}

#[test]
fn probe_says_no_where_nothing_listens() {
    // A port that is bound but not listening, and stays bound while the
    // probe runs: the local end of a connected stream. (A port freed by
    // dropping a listener could be taken by another test's server before
    // the probe reaches it.)
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let addr = held.local_addr().unwrap();
    assert!(!probe(addr).unwrap());
    drop(held);
}

/// Binds our portmapper on 127.0.0.1:111 (skipping if the port is taken),
/// registers through it with our client, and reads it back with
/// `rpcinfo -p` (version 2 DUMP), `rpcinfo -s` (version 4 DUMP) and
/// `rpcinfo -T tcp` (version 4 GETADDR, then NULL at that address).
#[test]
fn rpcinfo_lists_what_our_client_registered_with_our_portmapper() {
    const T: &str = "rpcinfo_lists_what_our_client_registered_with_our_portmapper";
    let _port = lock_111();
    let here = sa("127.0.0.1:111");
    let table = table_of(&[Registration::tcp(PMAP_PROGRAM, 4, here)]);
    let server = match serve(here, PortmapProgram::new(table.clone())) {
        Ok(s) => s,
        Err(e) => return skip(T, &format!("cannot bind 127.0.0.1:111: {e}")),
    };
    register_with(here, &ours()).unwrap();
    assert_eq!(table.lock().unwrap().len(), 4);
    // Registering again replaces rather than fails.
    register_with(here, &ours()).unwrap();
    assert_eq!(table.lock().unwrap().len(), 4);

    let Some(o) = run("rpcinfo", &["-p", "127.0.0.1"]) else {
        return skip(T, "rpcinfo is not installed (Debian package rpcbind)");
    };
    assert!(o.status.success(), "{}", text(&o));
    let rows = rpcinfo_p_rows(&text(&o));
    assert!(has_row(&rows, NFS, 3, "tcp", 20490), "{}", text(&o));
    assert!(has_row(&rows, MOUNT, 3, "tcp", 20048), "{}", text(&o));
    assert!(has_row(&rows, PMAP_PROGRAM, 4, "tcp", 111), "{}", text(&o));
    // Version 2 cannot show the IPv6 row.
    assert_eq!(rows.len(), 3, "{}", text(&o));

    let o = run("rpcinfo", &["-s", "127.0.0.1"]).unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let s = text(&o);
    let mount = s
        .lines()
        .find(|l| l.trim_start().starts_with("100005"))
        .unwrap_or("");
    assert!(
        mount.contains("tcp") && mount.contains("tcp6") && mount.contains("msgsplice"),
        "{s}"
    );

    let o = run("rpcinfo", &["-T", "tcp", "127.0.0.1", "100000", "4"]).unwrap();
    assert!(
        text(&o).contains("program 100000 version 4 ready and waiting"),
        "{}",
        text(&o)
    );

    // GETADDRLIST: the IPv4 caller gets the IPv4 address only.
    let o = run("rpcinfo", &["-l", "127.0.0.1", "100005", "3"]).unwrap();
    let s = text(&o);
    assert!(o.status.success(), "{s}");
    assert!(
        s.contains("127.0.0.1.78.80") && s.contains("inet/tcp"),
        "{s}"
    );
    assert!(!s.contains("::1"), "{s}");

    assert_eq!(unregister_with(here, &ours()).unwrap(), 3);
    assert_eq!(unregister_with(here, &ours()).unwrap(), 0);
    let o = run("rpcinfo", &["-p", "127.0.0.1"]).unwrap();
    let rows = rpcinfo_p_rows(&text(&o));
    assert_eq!(rows.len(), 1, "{}", text(&o));
    server.shutdown().unwrap();
}

fn is_root() -> bool {
    run("id", &["-u"]).is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn our_client_registers_with_a_real_rpcbind() {
    const T: &str = "our_client_registers_with_a_real_rpcbind";
    let _port = lock_111();
    let here = sa("127.0.0.1:111");
    if !is_root() {
        return skip(T, "rpcbind must run as root");
    }
    match TcpListener::bind("0.0.0.0:111") {
        Ok(l) => drop(l),
        Err(e) => {
            return skip(
                T,
                &format!("port 111 is taken ({e}); is rpcbind running already?"),
            )
        }
    }
    let child = match rpcbind::start(here) {
        Ok(c) => c,
        Err(why) => return skip(T, &why),
    };

    register_with(here, &ours()).unwrap();
    let o = run("rpcinfo", &["-p", "127.0.0.1"]).expect("rpcinfo comes with rpcbind");
    let rows = rpcinfo_p_rows(&text(&o));
    assert!(has_row(&rows, NFS, 3, "tcp", 20490), "{}", text(&o));
    assert!(has_row(&rows, MOUNT, 3, "tcp", 20048), "{}", text(&o));
    let o = run("rpcinfo", &["-s", "127.0.0.1"]).unwrap();
    let s = text(&o);
    let mount = s
        .lines()
        .find(|l| l.trim_start().starts_with("100005"))
        .unwrap_or("");
    assert!(mount.contains("tcp6"), "{s}");

    assert_eq!(unregister_with(here, &ours()).unwrap(), 3);
    let o = run("rpcinfo", &["-p", "127.0.0.1"]).unwrap();
    let rows = rpcinfo_p_rows(&text(&o));
    assert!(
        !rows.iter().any(|r| r.0 == NFS || r.0 == MOUNT),
        "{}",
        text(&o)
    );
    assert!(
        has_row(&rows, PMAP_PROGRAM, 2, "tcp", PMAP_PORT),
        "{}",
        text(&o)
    );
    drop(child);
}

#[test]
fn the_client_reports_refusals_and_bad_servers() {
    use msgsplice_rpc::portmap::PortmapError;
    use msgsplice_rpc::rpc::{AcceptStat, ReplyHeader};

    // A read-only portmapper answers SET with FALSE.
    let ro = serve(sa("127.0.0.1:0"), PortmapProgram::read_only(table_of(&[]))).unwrap();
    let err = register_with(ro.local_addrs()[0], &ours()).unwrap_err();
    assert!(
        matches!(
            err,
            PortmapError::Refused {
                program: NFS,
                version: 3,
                ..
            }
        ),
        "{err}"
    );
    ro.shutdown().unwrap();

    // An RPC server without the portmapper: version 4, then version 2,
    // are unavailable.
    let dispatcher = Dispatcher::new(Vec::new(), FragCache::new());
    let other = RpcServer::bind(&[sa("127.0.0.1:0")], dispatcher, ServerConfig::default())
        .unwrap()
        .spawn()
        .unwrap();
    let at = other.local_addrs()[0];
    let err = register_with(at, &ours()).unwrap_err();
    assert!(
        matches!(
            err,
            PortmapError::NotRun(ReplyHeader::Accepted(AcceptStat::ProgUnavail))
        ),
        "{err}"
    );
    assert!(!probe(at).unwrap());
    other.shutdown().unwrap();

    // A peer that hangs up after the call, and one that answers with a
    // marker for a 2 GiB record.
    for (bytes, closed) in [(&b""[..], true), (&b"\xff\xff\xff\xff"[..], false)] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = l.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            // Read the call first: closing with unread bytes would send a
            // reset instead of an orderly end.
            let _ = std::io::Read::read(&mut s, &mut [0; 512]).unwrap();
            s.write_all(bytes).unwrap();
        });
        let err = register_with(at, &ours()).unwrap_err();
        peer.join().unwrap();
        if closed {
            assert!(matches!(err, PortmapError::Closed(_)), "{err}");
        } else {
            assert!(matches!(err, PortmapError::Record(_)), "{err}");
        }
    }
}
