//! The server through its own wire protocol: reads at odd offsets, and
//! every kind of bad input, each answered with the right RPC or NFS error
//! or a closed connection, while other connections keep being served.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::BufMut;
use common::{pattern, skip_post_op_attr, RpcClient, TestServer, MOUNT_PROGRAM};
use msgsplice::send::Builder;
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::rpc::{put_call, AcceptStat, AuthStat, Credential, Rejection, ReplyHeader};
use msgsplice_rpc::transport;
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};

const NFS3ERR_NOENT: u32 = 2;
const NFS3ERR_ACCES: u32 = 13;
const NFS3ERR_NOTDIR: u32 = 20;
const NFS3ERR_ISDIR: u32 = 21;
const NFS3ERR_INVAL: u32 = 22;
const NFS3ERR_ROFS: u32 = 30;
const NFS3ERR_NAMETOOLONG: u32 = 63;
const NFS3ERR_STALE: u32 = 70;
const NFS3ERR_BADHANDLE: u32 = 10001;
const NFS3ERR_TOOSMALL: u32 = 10005;

const ODD: usize = 3 * 4096 + 123;

fn fill(root: &std::path::Path) {
    std::fs::write(root.join("odd.bin"), pattern(ODD, 7)).unwrap();
    std::fs::create_dir(root.join("dir")).unwrap();
    std::fs::write(root.join("dir/inner.txt"), b"inner").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
    std::os::unix::fs::symlink("/", root.join("root-link")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("dir/up-link")).unwrap();
    std::fs::write(root.join("secret"), b"s").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn connect(s: &TestServer) -> (RpcClient, Vec<u8>) {
    let mut c = RpcClient::connect(s.mount);
    let root = c.mnt("/export").expect("MNT /export");
    let c = RpcClient::connect(s.nfs);
    (c, root)
}

/// The kernel's first-page-offset bug (clients read zeroes) must not
/// happen with any transport: the default Splicer, the Splicer with SPLICE
/// off, and plain writev/sendfile.
#[test]
fn reads_at_odd_offsets_and_around_eof() {
    odd_reads(&TestServer::start(fill));
    odd_reads(&TestServer::start_with(fill, |c| {
        c.server.transport = transport::splicer_factory(Builder::new().splice(false));
    }));
    odd_reads(&TestServer::start_with(fill, |c| {
        c.server.transport = transport::socket_factory();
    }));
}

fn odd_reads(s: &TestServer) {
    let (mut c, root) = connect(s);
    let fh = c.lookup(&root, b"odd.bin").unwrap();
    let data = pattern(ODD, 7);
    let offsets = [
        0,
        1,
        2,
        3,
        4095,
        4096,
        4097,
        8191,
        12345,
        ODD - 1,
        ODD,
        ODD + 10,
    ];
    let counts = [0, 1, 3, 5, 4096, 5000, ODD, (1 << 20) + 10];
    for &off in &offsets {
        for &count in &counts {
            let (st, got, eof) = c.read(&fh, off as u64, count as u32);
            assert_eq!(st, 0);
            let end = (off + count).min(ODD).max(off.min(ODD));
            let want = &data[off.min(ODD)..end];
            assert!(got == want, "read at {off} of {count}: wrong bytes");
            assert_eq!(eof, off + got.len() >= ODD, "eof at {off}+{count}");
        }
    }
}

#[test]
fn read_clips_to_the_1mib_maximum() {
    let s = TestServer::start(|root| {
        std::fs::write(root.join("two.bin"), pattern(2 << 20, 3)).unwrap();
    });
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"two.bin").unwrap();
    let (_, got, eof) = c.read(&fh, 5, u32::MAX);
    assert_eq!(got.len(), 1 << 20);
    assert!(!eof);
    assert!(got == pattern(2 << 20, 3)[5..5 + (1 << 20)]);
}

/// The counters behind the benchmark's "system calls per READ reply".
#[test]
fn the_server_counts_read_replies_and_their_system_calls() {
    let s = TestServer::start(|root| {
        std::fs::write(root.join("three.bin"), pattern(3 << 20, 5)).unwrap();
    });
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"three.bin").unwrap();
    // A connection counts a reply once it is sent, so the client may see
    // it first; a NULL call after it makes sure it was counted.
    c.ok(NFS_PROGRAM, 0, &[]);
    let before = s.stats();
    for i in 0..3u64 {
        let (_, got, _) = c.read(&fh, i << 20, 1 << 20);
        assert_eq!(got.len(), 1 << 20);
    }
    c.ok(NFS_PROGRAM, 0, &[]);
    let after = s.stats();
    assert_eq!(after.bulk_replies - before.bulk_replies, 3);
    // The three READs, plus each NULL that was counted by the time its
    // snapshot was taken: the client can see a reply before the server
    // counts it, at either end.
    assert!((3..=5).contains(&(after.replies - before.replies)));
    // Each READ reply: sendmsg(MSG_MORE) of the head, one sendfile (a full
    // socket buffer may make it take more than one).
    let per_read = (after.bulk_syscalls - before.bulk_syscalls) as f64 / 3.0;
    assert!(
        (2.0..5.0).contains(&per_read),
        "{per_read} syscalls per READ"
    );
    assert!(after.bulk_bytes - before.bulk_bytes > 3 << 20);
    assert!(after.connections >= 2, "{after:?}");
}

#[test]
fn read_of_non_files_is_refused() {
    let s = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    assert_eq!(c.read(&root, 0, 10).0, NFS3ERR_ISDIR);
    let link = c.lookup(&root, b"abs-link").unwrap();
    assert_eq!(c.read(&link, 0, 10).0, NFS3ERR_INVAL);
}

#[test]
fn permissions_follow_the_callers_credential() {
    let s = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    let fh = c.lookup(&root, b"secret").unwrap();
    // Root is squashed to nobody by default: a 0600 root file is closed.
    assert_eq!(c.read(&fh, 0, 1).0, NFS3ERR_ACCES);
    c.uid = 1000;
    assert_eq!(c.read(&fh, 0, 1).0, NFS3ERR_ACCES);
    let mut a = Vec::new();
    a.put_xdr_opaque(&fh);
    a.put_u32(0x3f);
    let res = c.ok(NFS_PROGRAM, 4, &a);
    let mut d = XdrDecoder::new(&res);
    assert_eq!(d.u32().unwrap(), 0);
    skip_post_op_attr(&mut d);
    assert_eq!(
        d.u32().unwrap(),
        0,
        "uid 1000 may do nothing with a 0600 root file"
    );
}

#[test]
fn traversal_names_stay_inside_the_export() {
    let s = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    // `..` of the root is the root.
    assert_eq!(c.lookup(&root, b"..").unwrap(), root);
    let dir = c.lookup(&root, b"dir").unwrap();
    assert_eq!(c.lookup(&dir, b"..").unwrap(), root);
    assert_eq!(c.lookup(&dir, b".").unwrap(), dir);
    // Names with a slash are never passed on.
    assert_eq!(c.lookup(&root, b"../etc"), Err(NFS3ERR_ACCES));
    assert_eq!(c.lookup(&root, b"dir/inner.txt"), Err(NFS3ERR_ACCES));
    assert_eq!(c.lookup(&root, b"/etc"), Err(NFS3ERR_ACCES));
    assert_eq!(c.lookup(&root, b"a\0b"), Err(NFS3ERR_ACCES));
    assert_eq!(c.lookup(&root, &[b'n'; 256]), Err(NFS3ERR_NAMETOOLONG));
    assert_eq!(c.lookup(&root, b"missing"), Err(NFS3ERR_NOENT));
    // Symbolic links are objects, never followed by the server.
    let link = c.lookup(&root, b"root-link").unwrap();
    assert_eq!(c.lookup(&link, b"etc"), Err(NFS3ERR_NOTDIR));
    let up = c.lookup(&dir, b"up-link").unwrap();
    assert_eq!(c.lookup(&up, b"etc"), Err(NFS3ERR_NOTDIR));
    // READLINK shows the target as stored.
    let mut a = Vec::new();
    a.put_xdr_opaque(&link);
    let res = c.ok(NFS_PROGRAM, 5, &a);
    let mut d = XdrDecoder::new(&res);
    assert_eq!(d.u32().unwrap(), 0);
    skip_post_op_attr(&mut d);
    assert_eq!(d.opaque(4096).unwrap(), b"/");
    // MOUNT paths are walked the same way.
    let mut m = RpcClient::connect(s.mount);
    assert_eq!(m.mnt("/export/../../etc"), Err(NFS3ERR_NOENT));
    assert_eq!(m.mnt("/export/root-link"), Err(NFS3ERR_NOTDIR));
    assert_eq!(m.mnt("/export/dir/up-link/etc"), Err(NFS3ERR_NOTDIR));
    assert_eq!(m.mnt("/etc"), Err(NFS3ERR_NOENT));
    assert_eq!(m.mnt("/exportx"), Err(NFS3ERR_NOENT));
    assert_eq!(m.mnt("/export/.."), Ok(root.clone()));
    assert_eq!(m.mnt("/export/dir/"), Ok(dir));
}

#[test]
fn forged_and_foreign_handles_are_refused() {
    let s = TestServer::start(fill);
    let other = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    let (_, foreign) = connect(&other);
    // GETATTR (1): a handle of another server instance, with the same layout.
    assert_eq!(c.status_of(1, &foreign), NFS3ERR_STALE);
    // Every bit of a valid handle matters.
    for i in 0..root.len() {
        let mut h = root.clone();
        h[i] ^= 0x20;
        let st = c.status_of(1, &h);
        assert!(
            st == NFS3ERR_STALE || st == NFS3ERR_BADHANDLE,
            "byte {i}: {st}"
        );
    }
    assert_eq!(c.status_of(1, &[]), NFS3ERR_BADHANDLE);
    assert_eq!(c.status_of(1, &[0; 64]), NFS3ERR_BADHANDLE);
    assert_eq!(c.status_of(1, &root[..20]), NFS3ERR_BADHANDLE);
    // The real handle still works.
    assert_eq!(c.status_of(1, &root), 0);
    // More than 64 bytes is not an nfs_fh3 at all.
    let mut a = Vec::new();
    a.put_xdr_opaque(&[1; 65]);
    assert_eq!(
        c.call(NFS_PROGRAM, 3, 1, &a).0,
        ReplyHeader::Accepted(AcceptStat::GarbageArgs)
    );
}

#[test]
fn write_procedures_answer_rofs_with_well_formed_bodies() {
    let s = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    // (procedure, zero words after the status)
    let procs = [
        (2, 2),
        (7, 2),
        (8, 2),
        (9, 2),
        (10, 2),
        (11, 2),
        (12, 2),
        (13, 2),
        (14, 4),
        (15, 3),
        (21, 2),
    ];
    for (p, words) in procs {
        let mut a = Vec::new();
        a.put_xdr_opaque(&root);
        let res = c.ok(NFS_PROGRAM, p, &a);
        let mut d = XdrDecoder::new(&res);
        assert_eq!(d.u32().unwrap(), NFS3ERR_ROFS, "procedure {p}");
        for _ in 0..words {
            assert_eq!(d.u32().unwrap(), 0);
        }
        d.finish().unwrap();
    }
}

#[test]
fn mount_export_and_dump_are_well_formed() {
    let s = TestServer::start(fill);
    let mut m = RpcClient::connect(s.mount);
    let res = m.ok(MOUNT_PROGRAM, 5, &[]);
    let mut d = XdrDecoder::new(&res);
    assert!(d.bool().unwrap(), "one export");
    assert_eq!(d.string(1024).unwrap(), b"/export");
    assert!(d.bool().unwrap(), "one group");
    assert_eq!(d.string(1024).unwrap(), b"*", "open to everyone");
    assert!(!d.bool().unwrap(), "no more groups");
    assert!(!d.bool().unwrap(), "no more exports");
    d.finish().unwrap();
    let res = m.ok(MOUNT_PROGRAM, 2, &[]);
    assert_eq!(res, [0, 0, 0, 0], "nothing mounted yet");
    assert!(m.ok(MOUNT_PROGRAM, 0, &[]).is_empty());

    // A mount is recorded (once, however often), listed by DUMP, and
    // forgotten by UMNT.
    m.mnt("/export").unwrap();
    m.mnt("/export").unwrap();
    m.mnt("/export/dir").unwrap();
    let res = m.ok(MOUNT_PROGRAM, 2, &[]);
    let mut d = XdrDecoder::new(&res);
    for path in [&b"/export"[..], b"/export/dir"] {
        assert!(d.bool().unwrap(), "a mount");
        assert_eq!(d.string(255).unwrap(), b"127.0.0.1");
        assert_eq!(d.string(1024).unwrap(), path);
    }
    assert!(!d.bool().unwrap(), "two mounts");
    d.finish().unwrap();
    let mut a = Vec::new();
    a.put_xdr_opaque(b"/export");
    assert!(m.ok(MOUNT_PROGRAM, 3, &a).is_empty());
    let res = m.ok(MOUNT_PROGRAM, 2, &[]);
    let mut d = XdrDecoder::new(&res);
    assert!(d.bool().unwrap());
    assert_eq!(d.string(255).unwrap(), b"127.0.0.1");
    assert_eq!(d.string(1024).unwrap(), b"/export/dir");
    assert!(!d.bool().unwrap());
    // UMNTALL forgets the rest.
    assert!(m.ok(MOUNT_PROGRAM, 4, &[]).is_empty());
    assert_eq!(m.ok(MOUNT_PROGRAM, 2, &[]), [0, 0, 0, 0]);
    let events = s.events().join("\n");
    assert!(events.contains("Mounted"), "{events}");
    assert!(events.contains("Unmounted"), "{events}");
}

#[test]
fn unknown_program_version_and_procedure() {
    let s = TestServer::start(fill);
    let mut c = RpcClient::connect(s.nfs);
    assert_eq!(
        c.call(200_000, 1, 0, &[]).0,
        ReplyHeader::Accepted(AcceptStat::ProgUnavail)
    );
    for v in [2, 4] {
        assert_eq!(
            c.call(NFS_PROGRAM, v, 0, &[]).0,
            ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })
        );
    }
    assert_eq!(
        c.call(MOUNT_PROGRAM, 1, 1, &[]).0,
        ReplyHeader::Accepted(AcceptStat::ProgMismatch { low: 3, high: 3 })
    );
    assert_eq!(
        c.call(NFS_PROGRAM, 3, 99, &[]).0,
        ReplyHeader::Accepted(AcceptStat::ProcUnavail)
    );
    assert_eq!(
        c.call(MOUNT_PROGRAM, 3, 6, &[]).0,
        ReplyHeader::Accepted(AcceptStat::ProcUnavail)
    );
    // NULL works on both ports.
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    assert!(c.ok(MOUNT_PROGRAM, 0, &[]).is_empty());
}

#[test]
fn malformed_arguments_are_garbage_args() {
    let s = TestServer::start(fill);
    let (mut c, root) = connect(&s);
    let garbage = ReplyHeader::Accepted(AcceptStat::GarbageArgs);
    // GETATTR with nothing, with a truncated handle.
    assert_eq!(c.call(NFS_PROGRAM, 3, 1, &[]).0, garbage);
    assert_eq!(c.call(NFS_PROGRAM, 3, 1, &[0, 0, 0, 28, 1, 2]).0, garbage);
    // LOOKUP whose name claims 4 GiB.
    let mut a = Vec::new();
    a.put_xdr_opaque(&root);
    a.put_u32(u32::MAX);
    assert_eq!(c.call(NFS_PROGRAM, 3, 3, &a).0, garbage);
    // READ without a count.
    let mut a = Vec::new();
    a.put_xdr_opaque(&root);
    a.put_u64(0);
    assert_eq!(c.call(NFS_PROGRAM, 3, 6, &a).0, garbage);
    // MNT without a path.
    assert_eq!(c.call(MOUNT_PROGRAM, 3, 1, &[0, 0]).0, garbage);
    // READDIR with a count too small for anything.
    let mut a = Vec::new();
    a.put_xdr_opaque(&root);
    a.put_u64(0);
    a.put_u64(0);
    a.put_u32(16);
    let res = c.ok(NFS_PROGRAM, 16, &a);
    assert_eq!(XdrDecoder::new(&res).u32().unwrap(), NFS3ERR_TOOSMALL);
}

#[test]
fn bad_rpc_headers_are_denied_or_dropped() {
    let s = TestServer::start(fill);
    let mut c = RpcClient::connect(s.nfs);
    // RPC version 3: denied with the supported range.
    let mut v = Vec::new();
    for w in [77u32, 0, 3, NFS_PROGRAM, 3, 0, 0, 0, 0, 0] {
        v.put_u32(w);
    }
    c.send_record(&v);
    let rec = c.recv_record().unwrap();
    let (xid, hdr, _) = msgsplice_rpc::rpc::decode_reply(&rec).unwrap();
    assert_eq!(xid, 77);
    assert_eq!(
        hdr,
        ReplyHeader::Denied(Rejection::RpcMismatch { low: 2, high: 2 })
    );
    // An unknown credential flavor (RPCSEC_GSS): AUTH_ERROR / BADCRED.
    let mut v = Vec::new();
    for w in [78u32, 0, 2, NFS_PROGRAM, 3, 0, 6, 0, 0, 0] {
        v.put_u32(w);
    }
    c.send_record(&v);
    let rec = c.recv_record().unwrap();
    assert_eq!(
        msgsplice_rpc::rpc::decode_reply(&rec).unwrap().1,
        ReplyHeader::Denied(Rejection::AuthError(AuthStat::BadCred))
    );
    // A reply sent to the server, and a 3-byte record: dropped, and the
    // connection goes on.
    let mut v = Vec::new();
    v.put_u32(79);
    v.put_u32(1);
    c.send_record(&v);
    c.send_record(&[1, 2, 3]);
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    assert!(s.events().iter().any(|e| e.contains("NotACall")));
}

#[test]
fn pipelined_calls_are_answered_in_order() {
    let s = TestServer::start(fill);
    let mut c = RpcClient::connect(s.nfs);
    let mut all = Vec::new();
    for xid in 1..=50u32 {
        let mut v = Vec::new();
        put_call(&mut v, xid, NFS_PROGRAM, 3, 0, &Credential::None);
        all.put_u32(0x8000_0000 | v.len() as u32);
        all.extend_from_slice(&v);
    }
    c.send_raw(&all);
    for xid in 1..=50u32 {
        let rec = c.recv_record().unwrap();
        assert_eq!(msgsplice_rpc::rpc::decode_reply(&rec).unwrap().0, xid);
    }
}

#[test]
fn multi_fragment_calls_are_reassembled() {
    let s = TestServer::start(fill);
    let mut c = RpcClient::connect(s.nfs);
    let mut v = Vec::new();
    put_call(&mut v, 5, NFS_PROGRAM, 3, 0, &Credential::None);
    let mut raw = Vec::new();
    for (i, chunk) in v.chunks(7).enumerate() {
        let last = (i + 1) * 7 >= v.len();
        raw.put_u32(chunk.len() as u32 | if last { 0x8000_0000 } else { 0 });
        raw.extend_from_slice(chunk);
    }
    // One byte at a time, to exercise every split.
    for b in raw {
        c.send_raw(&[b]);
    }
    let rec = c.recv_record().unwrap();
    assert_eq!(msgsplice_rpc::rpc::decode_reply(&rec).unwrap().0, 5);
}

fn still_serving(s: &TestServer) {
    let mut c = RpcClient::connect(s.nfs);
    assert!(c.ok(NFS_PROGRAM, 0, &[]).is_empty());
    let (mut c, root) = connect(s);
    let fh = c.lookup(&root, b"odd.bin").unwrap();
    assert_eq!(c.read(&fh, 1, 3).1, pattern(ODD, 7)[1..4]);
}

fn wait_for_event(s: &TestServer, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if s.events().iter().any(|e| e.contains(what)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no {what} event in {:?}", s.events());
}

#[test]
fn oversize_record_marker_closes_the_connection() {
    let s = TestServer::start(fill);
    let mut bad = RpcClient::connect(s.nfs);
    bad.send_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    assert!(bad.recv_record().is_none(), "connection closed");
    wait_for_event(&s, "TooLarge");
    // Just over the configured limit, across fragments, closes it too.
    let mut bad = RpcClient::connect(s.nfs);
    let limit = msgsplice_rpc::record::DEFAULT_MAX_RECORD as u32;
    bad.send_raw(&(limit / 2).to_be_bytes());
    bad.send_raw(&vec![0; (limit / 2) as usize]);
    bad.send_raw(&(0x8000_0000 | (limit / 2 + 1)).to_be_bytes());
    assert!(bad.recv_record().is_none(), "connection closed");
    still_serving(&s);
}

#[test]
fn truncated_record_and_silent_clients_do_not_stall_others() {
    let s = TestServer::start(fill);
    // Half a record, then hang up.
    let mut t = RpcClient::connect(s.nfs);
    t.send_raw(&[0x80, 0, 0, 100, 1, 2, 3]);
    t.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(t.recv_record().is_none());
    wait_for_event(&s, "Truncated");
    // Clients that send half a record and then wait: the others go on.
    let mut stuck = Vec::new();
    for _ in 0..8 {
        let mut w = std::net::TcpStream::connect(s.nfs).unwrap();
        w.write_all(&[0x80, 0, 0, 100, 1]).unwrap();
        stuck.push(w);
    }
    still_serving(&s);
    drop(stuck);
}

#[test]
fn many_concurrent_clients() {
    let s = TestServer::start(fill);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (nfs, mount) = (s.nfs, s.mount);
            std::thread::spawn(move || {
                let mut m = RpcClient::connect(mount);
                let root = m.mnt("/export").unwrap();
                let mut c = RpcClient::connect(nfs);
                let fh = c.lookup(&root, b"odd.bin").unwrap();
                let data = pattern(ODD, 7);
                for k in 0..50 {
                    let off = (i * 131 + k * 17) % ODD;
                    let (_, got, _) = c.read(&fh, off as u64, 700);
                    assert!(got == data[off..(off + 700).min(ODD)]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn connection_limit_refuses_extra_clients() {
    let s = TestServer::start_with(fill, |c| c.server.max_connections = 2);
    let _a = RpcClient::connect(s.nfs);
    let _b = RpcClient::connect(s.nfs);
    std::thread::sleep(Duration::from_millis(100));
    let mut c = RpcClient::connect(s.nfs);
    c.send_record(&[0; 40]);
    assert!(c.recv_record().is_none());
    wait_for_event(&s, "Refused");
}
