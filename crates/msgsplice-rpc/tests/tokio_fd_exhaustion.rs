//! The process out of file descriptors: the tokio driver's `accept` fails
//! with EMFILE, and it evicts an idle connection instead of spinning, so a
//! fresh client is still answered. One test in this binary: it lowers the
//! process's descriptor limit for good.

mod common;
mod evented;

use std::fs::File;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::RpcClient;
use evented::TokioTestServer;
use msgsplice_rpc::nfs::NFS_PROGRAM;

const LIMIT: u64 = 512;

#[test]
fn out_of_descriptors_a_fresh_client_is_still_served() {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let lim = Rlimit {
        current: Some(LIMIT),
        maximum: Some(LIMIT),
    };
    setrlimit(Resource::Nofile, lim).expect("lower RLIMIT_NOFILE");
    let s = TokioTestServer::start(
        |root| std::fs::write(root.join("f"), b"x").unwrap(),
        |c| c.worker_threads = Some(1),
    );
    assert!(RpcClient::connect(s.nfs).ok(NFS_PROGRAM, 0, &[]).is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.handle().connections() > 0 {
        assert!(
            Instant::now() < deadline,
            "the first client's connection lingers"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Use up every descriptor, then give back room for 20 idle clients
    // (two descriptors each: the client's and the server's socket).
    let mut filler: Vec<File> = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
    }
    filler.truncate(filler.len() - 40);
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(s.nfs).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    // (One may already have been evicted for a descriptor the process
    // took elsewhere.)
    while s.handle().connections() < 19 {
        assert!(
            Instant::now() < deadline,
            "{} accepted",
            s.handle().connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Take whatever the server gave back meanwhile.
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
    }
    // Room for the fresh client's socket only: the server must evict to
    // accept it, and once more for its send engine's epoll instance.
    filler.truncate(filler.len() - 1);
    let mut fresh = RpcClient::connect(s.nfs);
    fresh
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(fresh.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let evicted = s.events().iter().filter(|e| e.contains("evicted")).count();
    assert!(
        evicted >= 1,
        "an idle connection was evicted: {:?}",
        s.events()
    );
    eprintln!("{evicted} idle connections evicted for descriptors");
    drop(idle);
    drop(filler);
}
