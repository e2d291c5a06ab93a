//! A flood of idle connections against the tokio driver: 5000 held open
//! cost no thread each and bounded memory, and a fresh client is still
//! answered. One test in this binary, so that the process's thread count
//! is the server's and this test's alone.

mod common;
mod evented;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::TcpStream;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use common::RpcClient;
use evented::TokioTestServer;
use msgsplice_rpc::nfs::NFS_PROGRAM;

/// Heap bytes live in the process: what the connections cost in memory,
/// without the allocator's own slack that VmRSS also shows.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Measuring;

// SAFETY: forwards to the system allocator unchanged; only adds up sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - layout.size() as isize, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Measuring = Measuring;

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
    let heap_before = LIVE.load(Relaxed);
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
    let heap = (LIVE.load(Relaxed) - heap_before).max(0) as usize;
    eprintln!(
        "{HELD} idle connections: threads {threads_before} -> {threads_after}, \
         VmRSS {rss_before} kB -> {rss_after} kB ({} B per connection), \
         live heap +{} kB ({} B per connection)",
        (rss_after.saturating_sub(rss_before) * 1024) / HELD as u64,
        heap / 1024,
        heap / HELD
    );
    assert!(
        threads_after <= threads_before + 2,
        "threads grew from {threads_before} to {threads_after}"
    );
    // Bounded: well under the 64 KiB read buffer each would hold if idle
    // connections kept one.
    let per_conn = (rss_after.saturating_sub(rss_before) * 1024) / HELD as u64;
    assert!(
        per_conn < 32 * 1024,
        "{per_conn} bytes of VmRSS per idle connection"
    );
    assert!(
        heap / HELD < 8 * 1024,
        "{} heap bytes per idle connection",
        heap / HELD
    );
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
