//! The io_uring engine is really what serves: each connection of an export
//! with `SendEngine::Uring` holds a ring of its own, and one with the
//! default engine holds none. Counted from this process's open files, so
//! this file has one test only (no other test's rings to count).

mod common;

use std::os::unix::net::UnixStream;

use common::{RpcClient, TestServer};
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::transport::{SendEngine, UringTransport};

/// The io_uring instances this process has open.
fn rings() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|l| l.to_string_lossy().contains("io_uring"))
        .count()
}

/// Opens three connections, each answered once, and counts the rings
/// while they are open.
fn rings_with_three_connections(engine: SendEngine) -> usize {
    let s = TestServer::start_with(|_| {}, |c| c.server.engine = engine);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = RpcClient::connect(s.nfs);
        assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
        open.push(c);
    }
    let n = rings();
    drop(open);
    n
}

#[test]
fn each_connection_has_a_ring_with_the_uring_engine_only() {
    const T: &str = "each_connection_has_a_ring_with_the_uring_engine_only";
    let (a, _b) = UnixStream::pair().unwrap();
    if let Err(e) = UringTransport::new(a) {
        return msgsplice_testkit::skip::skip_unsupported(T, e);
    }
    assert_eq!(rings(), 0, "no ring before any server");
    assert_eq!(rings_with_three_connections(SendEngine::Sendmsg), 0);
    let n = rings_with_three_connections(SendEngine::uring());
    assert!(n >= 3, "{n} rings for three connections");
}
