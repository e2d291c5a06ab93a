//! The client's encoding and decoding, and its typed errors.

use super::*;
use bytes::BufMut;
use msgsplice_rpc::rpc::{decode_call, put_accepted, put_rejected, Rejection};

#[test]
fn urls_of_both_servers() {
    let t =
        Target::from_url("nfs://127.0.0.1/export?nfsport=2049&mountport=20048&version=3").unwrap();
    assert_eq!(t.nfs, "127.0.0.1:2049".parse().unwrap());
    assert_eq!(t.mount, "127.0.0.1:20048".parse().unwrap());
    assert_eq!(t.export, "/export");
    let t = Target::from_url(
        "nfs://127.0.0.1/export?nfsport=7&mountport=7&version=3&auto-traverse-mounts=0",
    )
    .unwrap();
    assert_eq!((t.nfs.port(), t.mount.port()), (7, 7));
    let t = Target::from_url("nfs://[::1]/a/b/?nfsport=1&mountport=2").unwrap();
    assert_eq!(
        (t.nfs.ip().to_string(), t.export.as_str()),
        ("::1".into(), "/a/b")
    );
    for bad in [
        "http://127.0.0.1/export?nfsport=1&mountport=2",
        "nfs://127.0.0.1/export",
        "nfs://127.0.0.1/export?nfsport=1",
        "nfs://127.0.0.1?nfsport=1&mountport=2",
        "nfs://localhost/export?nfsport=1&mountport=2",
        "nfs://127.0.0.1/export?nfsport=x&mountport=2",
    ] {
        assert!(
            matches!(Target::from_url(bad), Err(ClientError::Url { .. })),
            "{bad}"
        );
    }
}

#[test]
fn read_call_decodes_as_the_server_sees_it() {
    let mut out = Vec::new();
    begin_call(&mut out, 77, NFS_PROGRAM, NFS_V3, READ);
    put_read_args(&mut out, &[9; 28], 1 << 33, 4096);
    finish_record(&mut out);
    let marker = u32::from_be_bytes(out[..4].try_into().unwrap());
    assert_eq!(marker, LAST_FRAGMENT | (out.len() - 4) as u32);
    let call = decode_call(&out[4..]).unwrap();
    assert_eq!(call.header.xid, 77);
    assert_eq!(
        (call.header.prog, call.header.vers, call.header.proc_num),
        (NFS_PROGRAM, NFS_V3, READ)
    );
    let Credential::Sys(sys) = call.header.cred else {
        panic!("AUTH_SYS expected");
    };
    assert_eq!((sys.uid, sys.gid), (0, 0));
    let mut d = XdrDecoder::new(call.args);
    assert_eq!(d.opaque(FH_MAX).unwrap(), &[9; 28]);
    assert_eq!((d.u64().unwrap(), d.u32().unwrap()), (1 << 33, 4096));
    assert!(d.finish().is_ok());
}

/// A READ reply's results: status, attributes (present or not),
/// count, eof, data.
fn read_res(status: u32, attrs: bool, count: u32, eof: bool, data: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    r.put_u32(status);
    r.put_xdr_bool(attrs);
    if attrs {
        r.put_slice(&[0; FATTR3_LEN]);
    }
    if status == 0 {
        r.put_u32(count);
        r.put_xdr_bool(eof);
        r.put_xdr_opaque(data);
    }
    r
}

#[test]
fn read_results() {
    for attrs in [false, true] {
        let r = read_res(0, attrs, 3, true, b"abc");
        let ok = decode_read(&r).unwrap();
        assert_eq!((ok.count, ok.eof, ok.data), (3, true, &b"abc"[..]));
    }
    let r = read_res(13, true, 0, false, b"");
    assert!(matches!(
        decode_read(&r),
        Err(ClientError::Status { status: 13, .. })
    ));
    // Cut anywhere, a reply is malformed, never a wrong success.
    let r = read_res(0, true, 5, false, b"hello");
    for cut in 0..r.len() - 1 {
        assert!(
            matches!(decode_read(&r[..cut]), Err(ClientError::Malformed { .. })),
            "cut at {cut}"
        );
    }
}

#[test]
fn mount_and_lookup_results() {
    let mut r = Vec::new();
    r.put_u32(0);
    r.put_xdr_opaque(&[1, 2, 3, 4]);
    r.put_u32(1);
    r.put_u32(1);
    assert_eq!(decode_mnt(&r).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(decode_lookup(&r[..12]).unwrap(), vec![1, 2, 3, 4]);
    let mut r = Vec::new();
    r.put_u32(2);
    assert!(matches!(
        decode_mnt(&r),
        Err(ClientError::Status { status: 2, .. })
    ));
    let mut r = Vec::new();
    r.put_u32(0);
    r.put_u32(65);
    r.put_slice(&[0; 68]);
    assert!(matches!(
        decode_lookup(&r),
        Err(ClientError::Malformed { .. })
    ));
}

#[test]
fn reply_headers() {
    let mut r = Vec::new();
    put_accepted(&mut r, 5, AcceptStat::Success);
    r.put_u32(42);
    let (xid, res) = results(&r, "READ").unwrap();
    assert_eq!((xid, res), (5, &42u32.to_be_bytes()[..]));
    let mut r = Vec::new();
    put_accepted(&mut r, 5, AcceptStat::GarbageArgs);
    assert!(matches!(results(&r, "READ"), Err(ClientError::Rpc { .. })));
    let mut r = Vec::new();
    put_rejected(&mut r, 5, Rejection::RpcMismatch { low: 2, high: 2 });
    assert!(matches!(results(&r, "READ"), Err(ClientError::Rpc { .. })));
}

#[test]
fn io_errors_are_typed() {
    let t = Duration::from_secs(1);
    let e = |k| ClientError::from_io(io::Error::from(k), t);
    assert!(matches!(
        e(io::ErrorKind::WouldBlock),
        ClientError::Timeout(_)
    ));
    assert!(matches!(
        e(io::ErrorKind::UnexpectedEof),
        ClientError::Reset(_)
    ));
    assert!(matches!(
        e(io::ErrorKind::ConnectionReset),
        ClientError::Reset(_)
    ));
    assert!(matches!(
        e(io::ErrorKind::PermissionDenied),
        ClientError::Io(_)
    ));
}

#[test]
fn fragments_are_joined_and_limits_hold() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let writer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // One record in two fragments, then one over the limit.
        s.write_all(&3u32.to_be_bytes()).unwrap();
        s.write_all(b"abc").unwrap();
        s.write_all(&(LAST_FRAGMENT | 2).to_be_bytes()).unwrap();
        s.write_all(b"de").unwrap();
        s.write_all(&(LAST_FRAGMENT | 100_000).to_be_bytes())
            .unwrap();
    });
    let mut c = Connection::connect(addr, 0, Duration::from_secs(5)).unwrap();
    assert_eq!(c.receive().unwrap(), b"abcde");
    assert!(matches!(
        c.receive(),
        Err(ClientError::TooLarge { size: 100_000, .. })
    ));
    writer.join().unwrap();
}

#[test]
fn a_closed_connection_is_a_reset_and_silence_a_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        // The first connection ends inside a record; the second gets
        // nothing until the client gives up.
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&(LAST_FRAGMENT | 8).to_be_bytes()).unwrap();
        s.write_all(b"abc").unwrap();
        drop(s);
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1];
        let _ = s.read(&mut buf);
    });
    let mut c = Connection::connect(addr, 0, Duration::from_secs(10)).unwrap();
    let err = c.receive().unwrap_err();
    assert!(matches!(err, ClientError::Reset(_)), "{err}");
    let mut c = Connection::connect(addr, 0, Duration::from_millis(100)).unwrap();
    let err = c.receive().unwrap_err();
    assert!(matches!(err, ClientError::Timeout(_)), "{err}");
    drop(c);
    server.join().unwrap();
}

#[test]
fn a_reply_to_another_call_is_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut r = vec![0u8; 4];
        put_accepted(&mut r, 99, AcceptStat::Success);
        finish_record(&mut r);
        s.write_all(&r).unwrap();
    });
    let mut c = Connection::connect(addr, 0, Duration::from_secs(10)).unwrap();
    let err = c.call(1, READ_CALL, "READ", |_| {}).unwrap_err();
    assert!(matches!(err, ClientError::UnknownXid(99)), "{err}");
    server.join().unwrap();
}
