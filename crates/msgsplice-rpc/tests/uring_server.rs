//! The export with the io_uring send engine (`SendEngine::Uring`): the same
//! answers as with the Splicer, byte for byte, in order, with bad clients
//! closed alone; and the fallback when io_uring cannot be used, which is
//! reported and still serves.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::{checksum, nfs_ok, pattern, RpcClient, TestServer, MOUNT_PROGRAM};
use msgsplice::uring::Capability;
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::rpc::{decode_reply, put_call, AuthSys, Credential};
use msgsplice_rpc::transport::{uring_settings, SendEngine, UringTransport};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};

const GETATTR: u32 = 1;
const READ: u32 = 6;
/// Not a multiple of 4, so the last READ reply has XDR padding after its
/// file range.
const BIG: usize = (6 << 20) + 4093;

fn fill(root: &std::path::Path) {
    std::fs::write(root.join("big.bin"), pattern(BIG, 11)).unwrap();
    std::fs::write(root.join("small.txt"), b"hello, ring\n").unwrap();
}

/// True if this kernel lets the engine run; otherwise records the skip of
/// `test` (with the probe's reason) and returns false.
fn uring_here(test: &str) -> bool {
    let (a, _b) = UnixStream::pair().unwrap();
    match UringTransport::new(a) {
        Ok(_) => true,
        Err(e) => {
            msgsplice_testkit::skip::skip_unsupported(test, e);
            false
        }
    }
}

/// A server over `fill` whose replies go through io_uring; fails the test
/// if the server fell back (the probe above said it would not).
fn uring_server() -> TestServer {
    let s = TestServer::start_with(fill, |c| c.server.engine = SendEngine::uring());
    // The probe runs when the accept thread starts: a call answered means
    // it has run.
    assert!(RpcClient::connect(s.nfs).ok(NFS_PROGRAM, 0, &[]).is_empty());
    let events = s.events().join("\n");
    assert!(!events.contains("io_uring"), "fell back: {events}");
    s
}

fn connect(s: &TestServer) -> (RpcClient, Vec<u8>) {
    let mut m = RpcClient::connect(s.mount);
    let root = m.mnt("/export").expect("MNT /export");
    (RpcClient::connect(s.nfs), root)
}

/// Reads `fh` whole in 1 MiB READs.
fn read_all(c: &mut RpcClient, fh: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let (status, data, eof) = c.read(fh, out.len() as u64, 1 << 20);
        assert_eq!(status, 0);
        out.extend_from_slice(&data);
        if eof {
            return out;
        }
        assert!(!data.is_empty(), "no progress at {}", out.len());
    }
}

#[test]
fn null_getattr_and_read_are_answered() {
    if !uring_here("null_getattr_and_read_are_answered") {
        return;
    }
    let s = uring_server();
    let (mut c, root) = connect(&s);
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    assert!(c.ok(MOUNT_PROGRAM, 0, &[]).is_empty());
    assert_eq!(c.status_of(GETATTR, &root), 0);
    let fh = c.lookup(&root, b"small.txt").unwrap();
    let mut a = Vec::new();
    a.put_xdr_opaque(&fh);
    let res = c.ok(NFS_PROGRAM, GETATTR, &a);
    let mut d = XdrDecoder::new(&res);
    assert_eq!(d.u32().unwrap(), 0, "GETATTR status");
    assert_eq!(d.u32().unwrap(), 1, "a regular file");
    d.fixed_opaque(16).unwrap(); // mode, nlink, uid, gid
    assert_eq!(d.u64().unwrap(), 12, "size");
    assert_eq!(c.read(&fh, 0, 100), (0, b"hello, ring\n".to_vec(), true));
    assert_eq!(c.read(&fh, 7, 3), (0, b"rin".to_vec(), false));
}

#[test]
fn a_multi_mib_read_returns_the_exact_bytes() {
    if !uring_here("a_multi_mib_read_returns_the_exact_bytes") {
        return;
    }
    let s = uring_server();
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"big.bin").unwrap();
    let got = read_all(&mut c, &fh);
    assert!(got == pattern(BIG, 11), "{} bytes, not the file", got.len());
    // A real client too: libnfs's nfs-cat, through the same engine.
    let out = nfs_ok("nfs-cat", &[&s.url_for("big.bin")]);
    let copy = s.dir.path().join("copy.bin");
    std::fs::write(&copy, &out).unwrap();
    assert_eq!(checksum(&copy), checksum(&s.root().join("big.bin")));
    let r = s.stats();
    assert!(r.bulk_replies >= (BIG >> 20) as u64, "{r:?}");
}

#[test]
fn pipelined_calls_are_answered_in_order() {
    if !uring_here("pipelined_calls_are_answered_in_order") {
        return;
    }
    let s = uring_server();
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"big.bin").unwrap();
    let data = pattern(BIG, 11);
    // NULLs and READs of many sizes (padded and not, copied and spliced),
    // all sent before the first reply is read.
    let reads: Vec<(u64, u32)> = (0..40u64)
        .map(|i| {
            (
                i * 150_001 % BIG as u64,
                [1, 3, 4096, 70_001, 1 << 20][i as usize % 5],
            )
        })
        .collect();
    let mut all = Vec::new();
    let sys = AuthSys::new(b"test", 0, 0, &[]).unwrap();
    for (i, &(offset, count)) in reads.iter().enumerate() {
        let mut v = Vec::new();
        let xid = 100 + i as u32;
        let proc_num = if i % 4 == 3 { 0 } else { READ };
        put_call(&mut v, xid, NFS_PROGRAM, 3, proc_num, &Credential::Sys(sys));
        if proc_num == READ {
            v.put_xdr_opaque(&fh);
            v.put_u64(offset);
            v.put_u32(count);
        }
        all.put_u32(0x8000_0000 | v.len() as u32);
        all.extend_from_slice(&v);
    }
    c.send_raw(&all);
    for (i, &(offset, count)) in reads.iter().enumerate() {
        let rec = c.recv_record().expect("a reply");
        let (xid, _, res) = decode_reply(&rec).unwrap();
        assert_eq!(xid, 100 + i as u32, "reply {i} in order");
        if i % 4 == 3 {
            assert!(res.is_empty());
            continue;
        }
        let mut d = XdrDecoder::new(res);
        assert_eq!(d.u32().unwrap(), 0);
        common::skip_post_op_attr(&mut d);
        let n = d.u32().unwrap() as usize;
        let _eof = d.bool().unwrap();
        let got = d.opaque(u32::MAX).unwrap();
        let end = (offset as usize + count as usize).min(BIG);
        assert_eq!(n, end - offset as usize, "READ {i}: count");
        assert!(got == &data[offset as usize..end], "READ {i}: data");
        d.finish().unwrap();
    }
}

#[test]
fn a_malformed_record_closes_only_its_connection() {
    if !uring_here("a_malformed_record_closes_only_its_connection") {
        return;
    }
    let s = uring_server();
    let (mut good, root) = connect(&s);
    let fh = good.lookup(&root, b"big.bin").unwrap();
    let mut bad = RpcClient::connect(s.nfs);
    assert!(bad.ok(NFS_PROGRAM, 0, &[]).is_empty(), "served before");
    // A record marker claiming 2 GiB.
    bad.send_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(bad.recv_record().is_none(), "connection closed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !s.events().iter().any(|e| e.contains("TooLarge")) {
        assert!(
            Instant::now() < deadline,
            "no close event: {:?}",
            s.events()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The other connection, opened before, goes on.
    assert_eq!(good.read(&fh, 5, 1000).1, pattern(BIG, 11)[5..1005]);
    assert!(good.ok(NFS_PROGRAM, 0, &[]).is_empty());
}

#[test]
fn without_io_uring_the_server_says_why_and_still_serves() {
    let missing = uring_settings().pretend_missing(Capability::Ring);
    let s = TestServer::start_with(fill, |c| c.server.engine = SendEngine::Uring(missing));
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"big.bin").unwrap();
    assert_eq!(
        c.read(&fh, 1 << 20, 4099).1,
        pattern(BIG, 11)[1 << 20..(1 << 20) + 4099]
    );
    let warnings: Vec<String> = s
        .events()
        .into_iter()
        .filter(|e| e.contains("Warning") && e.contains("io_uring"))
        .collect();
    assert_eq!(warnings.len(), 1, "reported once: {warnings:?}");
    assert!(warnings[0].contains("pretended missing"), "{warnings:?}");
    assert!(warnings[0].contains("sendmsg"), "{warnings:?}");
    // Two more connections: no more warnings.
    let (mut c2, _) = connect(&s);
    assert!(c2.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let again = s.events().iter().filter(|e| e.contains("io_uring")).count();
    assert_eq!(again, 1);
}

/// The tokio driver has no io_uring engine: an export configured with one
/// and handed to it says so instead of ignoring it quietly.
#[cfg(feature = "tokio")]
#[test]
fn the_tokio_driver_says_it_does_not_use_the_uring_engine() {
    use msgsplice_rpc::nfs::{NfsConfig, NfsServer};
    use msgsplice_rpc::server::{ServerEvent, TokioConfig};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let mut config = NfsConfig::default();
    config.server.events = Arc::new(|_: &ServerEvent<'_>| {});
    config.server.engine = SendEngine::uring();
    let any = "127.0.0.1:0".parse().unwrap();
    let server = NfsServer::bind_with(dir.path(), any, any, config).unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    let tokio = TokioConfig {
        events: Arc::new(move |ev: &ServerEvent<'_>| {
            if let ServerEvent::Warning { message } = ev {
                sink.lock().unwrap().push(message.to_string());
            }
        }),
        ..TokioConfig::default()
    };
    drop(server.into_tokio(tokio));
    let heard = heard.lock().unwrap();
    assert_eq!(heard.len(), 1, "{heard:?}");
    assert!(heard[0].contains("uring engine") && heard[0].contains("threads driver"));
}
