//! A flood of idle connections against the tokio driver: 5000 held open
//! cost no thread each and bounded memory, and a fresh client is still
//! answered. One test in this binary, so that the process's thread count
//! is the server's and this test's alone.

mod common;
mod evented;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::RpcClient;
use evented::TokioTestServer;
use msgsplice_rpc::nfs::NFS_PROGRAM;

const HELD: usize = 5000;
const WORKERS: usize = 2;

/// A field of /proc/self/status (`Threads`, `VmRSS` in kB).
fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("procfs");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Room for both ends of every connection in this one process.
fn raise_nofile(need: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let hard = lim.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= need,
        "this test needs {need} file descriptors; the hard limit is {hard} (raise it with ulimit -Hn)"
    );
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )
    .expect("raise RLIMIT_NOFILE");
}

#[test]
fn thousands_of_idle_connections_cost_no_thread_and_lock_no_one_out() {
    raise_nofile(2 * HELD as u64 + 512);
    let s = TokioTestServer::start(
        |root| std::fs::write(root.join("f"), b"x").unwrap(),
        |c| {
            c.worker_threads = Some(WORKERS);
            // Quiet: 5000 accepted events are of no interest here.
            c.events = std::sync::Arc::new(|_: &_| {});
        },
    );
    // Served once, so the runtime's threads are all up.
    assert!(RpcClient::connect(s.nfs).ok(NFS_PROGRAM, 0, &[]).is_empty());
    let threads_before = status("Threads");
    let rss_before = status("VmRSS");
    let held: Vec<TcpStream> = (0..HELD)
        .map(|i| TcpStream::connect(s.nfs).unwrap_or_else(|e| panic!("connection {i}: {e}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.handle().connections() < HELD {
        assert!(
            Instant::now() < deadline,
            "{} accepted",
            s.handle().connections()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let threads_after = status("Threads");
    let rss_after = status("VmRSS");
    eprintln!(
        "{HELD} idle connections: threads {threads_before} -> {threads_after}, \
         VmRSS {rss_before} kB -> {rss_after} kB ({} B per connection)",
        (rss_after.saturating_sub(rss_before) * 1024) / HELD as u64
    );
    assert!(
        threads_after <= threads_before + 2,
        "threads grew from {threads_before} to {threads_after}"
    );
    // Bounded: well under the 64 KiB read buffer each would hold if idle
    // connections kept one.
    let per_conn = (rss_after.saturating_sub(rss_before) * 1024) / HELD as u64;
    assert!(per_conn < 16 * 1024, "{per_conn} bytes per idle connection");
    // A fresh client is answered within a second.
    let mut fresh = RpcClient::connect(s.nfs);
    fresh
        .stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let start = Instant::now();
    assert!(fresh.ok(NFS_PROGRAM, 0, &[]).is_empty());
    eprintln!("fresh NULL call answered in {:?}", start.elapsed());
    drop(held);
}
