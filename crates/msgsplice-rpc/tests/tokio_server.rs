//! The export through the tokio driver: the wire protocol, isolation of
//! slow and hostile clients, graceful shutdown, and a real client
//! (libnfs-utils `nfs-cat`).

mod common;
mod evented;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::{checksum, nfs_ok, pattern, RpcClient};
use evented::TokioTestServer;
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::rpc::{decode_reply, put_call, Credential};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};

const BIG: usize = (4 << 20) + 3;

fn fill(root: &std::path::Path) {
    std::fs::write(root.join("small.txt"), b"hello, tokio\n").unwrap();
    std::fs::write(root.join("big.bin"), pattern(BIG, 3)).unwrap();
}

/// A client on the NFS port and the root handle from MOUNT.
fn connect(s: &TokioTestServer) -> (RpcClient, Vec<u8>) {
    let mut m = RpcClient::connect(s.mount);
    let root = m.mnt("/export").expect("MNT /export");
    (RpcClient::connect(s.nfs), root)
}

/// A marked NULL call with this xid.
fn null_call(xid: u32) -> Vec<u8> {
    let mut v = Vec::new();
    put_call(&mut v, xid, NFS_PROGRAM, 3, 0, &Credential::None);
    let mut rec = Vec::new();
    rec.put_u32(0x8000_0000 | v.len() as u32);
    rec.extend_from_slice(&v);
    rec
}

/// A marked READ call.
fn read_call(xid: u32, fh: &[u8], offset: u64, count: u32) -> Vec<u8> {
    let mut v = Vec::new();
    put_call(&mut v, xid, NFS_PROGRAM, 3, 6, &Credential::None);
    v.put_xdr_opaque(fh);
    v.put_u64(offset);
    v.put_u32(count);
    let mut rec = Vec::new();
    rec.put_u32(0x8000_0000 | v.len() as u32);
    rec.extend_from_slice(&v);
    rec
}

/// The data of a READ reply record, after checking its xid.
fn read_data(rec: &[u8], xid: u32) -> Vec<u8> {
    let (got, _, res) = decode_reply(rec).expect("reply decodes");
    assert_eq!(got, xid, "replies in call order");
    let mut d = XdrDecoder::new(res);
    assert_eq!(d.u32().unwrap(), 0, "READ status");
    common::skip_post_op_attr(&mut d);
    let n = d.u32().unwrap();
    let _eof = d.bool().unwrap();
    let data = d.opaque(u32::MAX).unwrap().to_vec();
    assert_eq!(n as usize, data.len());
    data
}

fn still_serving(s: &TokioTestServer) {
    let (mut c, root) = connect(s);
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let fh = c.lookup(&root, b"small.txt").unwrap();
    assert_eq!(c.read(&fh, 7, 100).1, b"tokio\n");
}

#[test]
fn null_getattr_and_read() {
    let s = TokioTestServer::start(fill, |_| {});
    let (mut c, root) = connect(&s);
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let fh = c.lookup(&root, b"big.bin").unwrap();
    assert_eq!(c.status_of(1, &fh), 0, "GETATTR");
    let want = pattern(BIG, 3);
    for (offset, count) in [(0, 4096), (1, 3), (4093, 65537), (BIG as u64 - 5, 1 << 20)] {
        let (status, data, _) = c.read(&fh, offset, count);
        assert_eq!(status, 0);
        let end = (offset as usize + count as usize).min(BIG);
        assert!(data == want[offset as usize..end], "READ at {offset}");
    }
    // Counted once sent, which may be just after the client has it.
    wait_until(|| s.handle().stats().bulk_replies == 4);
}

#[test]
fn pipelined_calls_are_answered_in_order() {
    let s = TokioTestServer::start(fill, |_| {});
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"big.bin").unwrap();
    let want = pattern(BIG, 3);
    let mut all = Vec::new();
    for xid in 1..=40u32 {
        if xid % 2 == 0 {
            all.extend(read_call(xid, &fh, u64::from(xid) * 1000, 70_001));
        } else {
            all.extend(null_call(xid));
        }
    }
    c.send_raw(&all);
    for xid in 1..=40u32 {
        let rec = c.recv_record().expect("reply");
        if xid % 2 == 0 {
            let at = xid as usize * 1000;
            assert!(read_data(&rec, xid) == want[at..at + 70_001]);
        } else {
            assert_eq!(decode_reply(&rec).unwrap().0, xid);
        }
    }
}

#[test]
fn multi_fragment_records_cut_anywhere() {
    let s = TokioTestServer::start(fill, |_| {});
    let mut c = RpcClient::connect(s.nfs);
    let mut v = Vec::new();
    put_call(&mut v, 5, NFS_PROGRAM, 3, 0, &Credential::None);
    let mut raw = Vec::new();
    for (i, chunk) in v.chunks(7).enumerate() {
        let last = (i + 1) * 7 >= v.len();
        raw.put_u32(chunk.len() as u32 | if last { 0x8000_0000 } else { 0 });
        raw.extend_from_slice(chunk);
    }
    for b in raw {
        c.send_raw(&[b]);
    }
    let rec = c.recv_record().unwrap();
    assert_eq!(decode_reply(&rec).unwrap().0, 5);
}

#[test]
fn a_malformed_record_closes_that_connection_only() {
    let s = TokioTestServer::start(fill, |_| {});
    let mut good = RpcClient::connect(s.nfs);
    assert!(good.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let mut bad = RpcClient::connect(s.nfs);
    bad.send_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(bad.recv_record().is_none(), "connection closed");
    assert!(
        good.ok(NFS_PROGRAM, 0, &[]).is_empty(),
        "the other one stays"
    );
    still_serving(&s);
    assert!(
        s.events().iter().any(|e| e.contains("TooLarge")),
        "{:?}",
        s.events()
    );
}

/// A client that sends many READs and never reads the replies, and one
/// that trickles a record a byte at a time, stall only themselves.
#[test]
fn slow_and_non_reading_clients_do_not_delay_others() {
    let s = TokioTestServer::start(fill, |c| c.worker_threads = Some(1));
    let (mut hog, root) = connect(&s);
    let fh = hog.lookup(&root, b"big.bin").unwrap();
    let mut flood = Vec::new();
    for xid in 0..64 {
        flood.extend(read_call(1000 + xid, &fh, 0, 1 << 20));
    }
    hog.send_raw(&flood);
    let mut trickle = TcpStream::connect(s.nfs).unwrap();
    let rec = null_call(9);
    trickle.write_all(&rec[..3]).unwrap();
    // The others are served while the hog's socket is full.
    for _ in 0..20 {
        still_serving(&s);
    }
    trickle.write_all(&rec[3..]).unwrap();
    // The hog's replies are all there, whole and in order, once it reads.
    let want = pattern(BIG, 3);
    for xid in 0..64 {
        let rec = hog.recv_record().expect("reply");
        assert!(read_data(&rec, 1000 + xid) == want[..1 << 20]);
    }
}

/// Shutdown with replies in flight: every request that arrived before it
/// is answered, whole, before the connection closes.
#[test]
fn shutdown_loses_no_reply_in_flight() {
    let mut s = TokioTestServer::start(fill, |_| {});
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"big.bin").unwrap();
    const N: u32 = 48;
    let mut calls = Vec::new();
    for xid in 0..N {
        calls.extend(read_call(xid, &fh, u64::from(xid) * 4096, 256 * 1024));
    }
    c.send_raw(&calls);
    // The calls are in the server's socket; its replies fill ours, as
    // nothing reads them until the shutdown has begun.
    let mut reader = c;
    let replies = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        let mut got = 0;
        while let Some(rec) = reader.recv_record() {
            let at = got as usize * 4096;
            assert!(read_data(&rec, got) == pattern(BIG, 3)[at..at + 256 * 1024]);
            got += 1;
        }
        got
    });
    let report = s.shutdown();
    assert_eq!(report.aborted, 0, "every connection finished in time");
    assert_eq!(replies.join().unwrap(), N, "every reply arrived");
    assert!(TcpStream::connect(s.nfs).is_err(), "no longer accepting");
}

/// Shutdown the instant requests reach idle connections: each is answered,
/// though the reactor may not have reported them yet when the connection
/// is asked to stop.
#[test]
fn shutdown_answers_requests_that_just_arrived() {
    for round in 0..4 {
        let mut s = TokioTestServer::start(fill, |_| {});
        let clients: Vec<RpcClient> = (0..8)
            .map(|_| {
                let mut c = RpcClient::connect(s.nfs);
                assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
                c
            })
            .collect();
        let batch: Vec<u8> = (0..4).flat_map(null_call).collect();
        let readers: Vec<_> = clients
            .into_iter()
            .map(|mut c| {
                c.send_raw(&batch);
                std::thread::spawn(move || {
                    let mut got = 0;
                    while let Some(rec) = c.recv_record() {
                        assert_eq!(decode_reply(&rec).unwrap().0, got);
                        got += 1;
                    }
                    got
                })
            })
            .collect();
        assert_eq!(s.shutdown().aborted, 0);
        for r in readers {
            assert_eq!(r.join().unwrap(), 4, "round {round}: every reply arrived");
        }
    }
}

#[test]
fn eviction_makes_room_for_a_new_client() {
    let s = TokioTestServer::start(fill, |c| {
        c.max_connections = 20;
        c.first_request_grace = Duration::ZERO;
    });
    // One client that has made a request, then 19 that never do.
    let mut active = RpcClient::connect(s.nfs);
    assert!(active.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let idle: Vec<TcpStream> = (0..19)
        .map(|_| TcpStream::connect(s.nfs).unwrap())
        .collect();
    wait_until(|| s.handle().connections() == 20);
    // Each newcomer is served, and stays; the ones that never made a
    // request go first.
    let mut newcomers = Vec::new();
    for _ in 0..5 {
        let mut c = RpcClient::connect(s.nfs);
        assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
        newcomers.push(c);
    }
    assert!(
        active.ok(NFS_PROGRAM, 0, &[]).is_empty(),
        "the active client stays"
    );
    let closed = idle.iter().filter(|c| is_closed(c)).count();
    assert!(closed >= 5, "{closed} idle connections evicted");
    assert!(s.handle().connections() <= 20);
}

/// True if the server has closed `c` (end of stream or reset); false if
/// it is still open with nothing to read.
fn is_closed(c: &TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match (&*c).read(&mut [0u8; 1]) {
        Ok(0) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    }
}

fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let s = TokioTestServer::start(fill, |c| c.idle_timeout = Duration::from_millis(300));
    let quiet = TcpStream::connect(s.nfs).unwrap();
    let mut half = TcpStream::connect(s.nfs).unwrap();
    half.write_all(&null_call(1)[..6]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    wait_until(|| s.handle().connections() == 0);
    assert!(is_closed(&quiet) && is_closed(&half));
    still_serving(&s);
}

#[test]
fn nfs_cat_of_64mib_through_the_tokio_driver() {
    let size = (64 << 20) + 12345;
    let s = TokioTestServer::start(
        |root| {
            let mut f = std::fs::File::create(root.join("large.bin")).unwrap();
            let mut left = size;
            let mut seed = 1;
            while left > 0 {
                let n = left.min(8 << 20);
                f.write_all(&pattern(n, seed)).unwrap();
                left -= n;
                seed += 1;
            }
        },
        |_| {},
    );
    let out = nfs_ok("nfs-cat", &[&s.url_for("large.bin")]);
    let copy = s.dir.path().join("copy.bin");
    std::fs::write(&copy, &out).unwrap();
    assert_eq!(out.len(), size);
    assert_eq!(checksum(&copy), checksum(&s.root().join("large.bin")));
}

/// The dispatcher runs on the worker thread. This measures what that
/// costs a second client: NULL calls while a first client streams 1 MiB
/// READs, the tokio driver on one worker beside the threaded driver for
/// reference. The numbers are printed (`--nocapture`); the verdict is only
/// that every call is answered.
#[test]
fn null_calls_beside_a_bulk_reader_on_one_worker() {
    let s = TokioTestServer::start(fill, |c| c.worker_threads = Some(1));
    let tokio = null_latency_beside_reads(s.nfs, s.mount);
    drop(s);
    let s = common::TestServer::start(fill);
    let threads = null_latency_beside_reads(s.nfs, s.mount);
    eprintln!("NULL beside 1 MiB READs, tokio (one worker): {tokio}");
    eprintln!("NULL beside 1 MiB READs, one thread per connection: {threads}");
}

/// Latency percentiles of 300 NULL calls while another client reads.
fn null_latency_beside_reads(nfs: std::net::SocketAddr, mount: std::net::SocketAddr) -> String {
    let root = RpcClient::connect(mount).mnt("/export").unwrap();
    let mut bulk = RpcClient::connect(nfs);
    let fh = bulk.lookup(&root, b"big.bin").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let reader = std::thread::spawn(move || {
        let mut reads = 0u32;
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            // Four READs in flight at a time, as a client with read-ahead.
            let mut batch = Vec::new();
            for i in 0..4 {
                batch.extend(read_call(reads + i, &fh, u64::from(i) << 20, 1 << 20));
            }
            bulk.send_raw(&batch);
            for i in 0..4 {
                let rec = bulk.recv_record().expect("READ reply");
                assert_eq!(read_data(&rec, reads + i).len(), 1 << 20);
            }
            reads += 4;
        }
        reads
    });
    let mut c = RpcClient::connect(nfs);
    let mut lat: Vec<Duration> = (0..300)
        .map(|_| {
            let t = Instant::now();
            assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
            let d = t.elapsed();
            std::thread::sleep(Duration::from_millis(2));
            d
        })
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    lat.sort();
    format!(
        "p50 {:?} p99 {:?} max {:?} ({reads} READs meanwhile)",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1]
    )
}
