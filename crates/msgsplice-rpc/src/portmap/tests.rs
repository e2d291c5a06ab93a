//! Calls built with the crate's encoders, answers checked byte for byte.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::BufMut;
use msgsplice::FragCache;

use super::client::{decode_bool_reply, decode_success, put_null_call, put_set_call};
use super::*;
use crate::rpc::{decode_call, put_accepted, put_call, AcceptStat, Credential, ReplyHeader};
use crate::server::{Dispatcher, Handled};
use crate::xdr::{XdrError, XdrPut};

const NFS: u32 = 100003;
const MOUNT: u32 = 100005;

fn local() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn remote() -> IpAddr {
    "192.0.2.7".parse().unwrap()
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn mapping(prog: u32, vers: u32, prot: u32, port: u32) -> Vec<u8> {
    let mut v = Vec::new();
    Mapping {
        prog,
        vers,
        prot,
        port,
    }
    .put(&mut v);
    v
}

fn rpcb(prog: u32, vers: u32, netid: &str, addr: &str, owner: &str) -> Vec<u8> {
    let mut v = Vec::new();
    Rpcb {
        prog,
        vers,
        netid: netid.as_bytes(),
        addr: addr.as_bytes(),
        owner: owner.as_bytes(),
    }
    .put(&mut v);
    v
}

/// Decodes and answers one call; the result bytes.
fn ask(t: &mut Registrations, vers: u32, proc_num: u32, args: &[u8], caller: IpAddr) -> Vec<u8> {
    let call = PortmapCall::decode(vers, proc_num, args).expect("valid call");
    let mut out = Vec::new();
    t.answer(&call, caller, &mut out);
    out
}

const TRUE: [u8; 4] = [0, 0, 0, 1];
const FALSE: [u8; 4] = [0, 0, 0, 0];

#[test]
fn v2_set_getport_unset() {
    let mut t = Registrations::new();
    let m = mapping(NFS, 3, IPPROTO_TCP, 2049);
    assert_eq!(ask(&mut t, 2, procs::SET, &m, local()), TRUE);
    // The same triple again is refused; another protocol is not.
    assert_eq!(ask(&mut t, 2, procs::SET, &m, local()), FALSE);
    let u = mapping(NFS, 3, IPPROTO_UDP, 2049);
    assert_eq!(ask(&mut t, 2, procs::SET, &u, local()), TRUE);
    let r = t.find(NFS, 3, Netid::Tcp).unwrap();
    assert_eq!(r.addr(), sa("0.0.0.0:2049"));
    assert_eq!(r.owner(), DEFAULT_OWNER);

    let q = mapping(NFS, 3, IPPROTO_TCP, 0);
    assert_eq!(ask(&mut t, 2, procs::GETPORT, &q, remote()), [0, 0, 8, 1]);
    // Another version answers with the port of the one there is.
    let q = mapping(NFS, 4, IPPROTO_TCP, 0);
    assert_eq!(ask(&mut t, 2, procs::GETPORT, &q, remote()), [0, 0, 8, 1]);
    let q = mapping(MOUNT, 3, IPPROTO_TCP, 0);
    assert_eq!(ask(&mut t, 2, procs::GETPORT, &q, remote()), FALSE);
    let q = mapping(NFS, 3, 99, 0);
    assert_eq!(ask(&mut t, 2, procs::GETPORT, &q, remote()), FALSE);

    // UNSET ignores protocol and port: both rows go.
    let gone = mapping(NFS, 3, 0, 0);
    assert_eq!(ask(&mut t, 2, procs::UNSET, &gone, local()), TRUE);
    assert!(t.is_empty());
    assert_eq!(ask(&mut t, 2, procs::UNSET, &gone, local()), FALSE);
}

#[test]
fn v2_set_refuses_bad_protocols_and_ports() {
    let mut t = Registrations::new();
    for m in [
        mapping(NFS, 3, 1, 2049),
        mapping(NFS, 3, IPPROTO_TCP, 65536),
    ] {
        assert_eq!(ask(&mut t, 2, procs::SET, &m, local()), FALSE);
    }
    assert!(t.is_empty());
}

#[test]
fn only_loopback_callers_change_the_table() {
    let mut t = Registrations::new();
    let m = mapping(NFS, 3, IPPROTO_TCP, 2049);
    for caller in ["192.0.2.7", "::2", "::ffff:192.0.2.7", "0.0.0.0"] {
        let caller: IpAddr = caller.parse().unwrap();
        assert_eq!(ask(&mut t, 2, procs::SET, &m, caller), FALSE, "{caller}");
        let b = rpcb(NFS, 3, "tcp", "127.0.0.1.8.1", "x");
        assert_eq!(ask(&mut t, 4, procs::SET, &b, caller), FALSE, "{caller}");
    }
    assert!(t.is_empty());
    for caller in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
        let caller: IpAddr = caller.parse().unwrap();
        assert_eq!(ask(&mut t, 2, procs::SET, &m, caller), TRUE, "{caller}");
        // Nor may a remote caller remove it.
        let gone = mapping(NFS, 3, 0, 0);
        assert_eq!(ask(&mut t, 2, procs::UNSET, &gone, remote()), FALSE);
        assert_eq!(ask(&mut t, 2, procs::UNSET, &gone, caller), TRUE);
    }
}

#[test]
fn v2_dump_is_a_linked_list_of_ipv4_rows() {
    let mut t = Registrations::new();
    assert_eq!(ask(&mut t, 2, procs::DUMP, &[], remote()), FALSE);
    t.insert(Registration::tcp(NFS, 3, sa("10.0.0.1:2049")));
    t.insert(Registration::tcp(NFS, 3, sa("[::1]:2049")));
    t.insert(Registration::new(MOUNT, 3, Netid::Udp, sa("10.0.0.1:635")).unwrap());
    let mut want = Vec::new();
    want.put_xdr_bool(true);
    want.extend(mapping(NFS, 3, 6, 2049));
    want.put_xdr_bool(true);
    want.extend(mapping(MOUNT, 3, 17, 635));
    want.put_xdr_bool(false);
    assert_eq!(ask(&mut t, 2, procs::DUMP, &[], remote()), want);
}

#[test]
fn v4_set_getaddr_dump_unset() {
    let mut t = Registrations::new();
    let set = rpcb(NFS, 3, "tcp6", "::1.8.1", "nfs");
    assert_eq!(ask(&mut t, 4, procs::SET, &set, local()), TRUE);
    assert_eq!(ask(&mut t, 3, procs::SET, &set, local()), FALSE);
    let set4 = rpcb(NFS, 3, "tcp", "127.0.0.1.8.1", "");
    assert_eq!(ask(&mut t, 3, procs::SET, &set4, local()), TRUE);
    assert_eq!(t.find(NFS, 3, Netid::Tcp6).unwrap().owner(), "nfs");
    assert_eq!(t.find(NFS, 3, Netid::Tcp).unwrap().owner(), DEFAULT_OWNER);

    let mut addr = Vec::new();
    addr.put_xdr_opaque(b"::1.8.1");
    let q = rpcb(NFS, 3, "tcp6", "", "");
    assert_eq!(ask(&mut t, 4, procs::GETADDR, &q, remote()), addr);
    // An empty netid means the caller's transport: tcp6 for an IPv6 caller,
    // tcp for an IPv4 one (also when IPv4-mapped).
    let q = rpcb(NFS, 3, "", "", "");
    assert_eq!(
        ask(&mut t, 4, procs::GETADDR, &q, "::2".parse().unwrap()),
        addr
    );
    let mut addr4 = Vec::new();
    addr4.put_xdr_opaque(b"127.0.0.1.8.1");
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    assert_eq!(ask(&mut t, 4, procs::GETADDR, &q, mapped), addr4);

    // Another version: GETADDR answers with any version of the program,
    // GETVERSADDR only with that version.
    let q = rpcb(NFS, 4, "tcp", "", "");
    assert_eq!(ask(&mut t, 3, procs::GETADDR, &q, remote()), addr4);
    let mut empty = Vec::new();
    empty.put_xdr_opaque(b"");
    assert_eq!(ask(&mut t, 4, procs::GETVERSADDR, &q, remote()), empty);
    let q = rpcb(MOUNT, 3, "tcp", "", "");
    assert_eq!(ask(&mut t, 4, procs::GETADDR, &q, remote()), empty);
    let q = rpcb(NFS, 3, "unix", "", "");
    assert_eq!(ask(&mut t, 4, procs::GETADDR, &q, remote()), empty);

    let mut want = Vec::new();
    want.put_xdr_bool(true);
    want.extend(rpcb(NFS, 3, "tcp6", "::1.8.1", "nfs"));
    want.put_xdr_bool(true);
    want.extend(rpcb(NFS, 3, "tcp", "127.0.0.1.8.1", DEFAULT_OWNER));
    want.put_xdr_bool(false);
    assert_eq!(ask(&mut t, 4, procs::DUMP, &[], remote()), want);

    // UNSET with a netid removes that row only; with none, every row.
    let u = rpcb(NFS, 3, "tcp6", "", "");
    assert_eq!(ask(&mut t, 4, procs::UNSET, &u, local()), TRUE);
    assert_eq!(t.len(), 1);
    assert_eq!(ask(&mut t, 4, procs::UNSET, &u, local()), FALSE);
    t.insert(Registration::tcp(NFS, 3, sa("[::1]:1")));
    let u = rpcb(NFS, 3, "", "", "");
    assert_eq!(ask(&mut t, 4, procs::UNSET, &u, local()), TRUE);
    assert!(t.is_empty());
}

#[test]
fn v4_set_refuses_what_it_cannot_map() {
    let mut t = Registrations::new();
    for (netid, addr) in [
        ("unix", "/run/x.sock"),
        ("tcp", "::1.8.1"),
        ("tcp6", "127.0.0.1.8.1"),
        ("tcp", "127.0.0.1.8"),
        ("tcp", "127.0.0.1.8.256"),
        ("tcp", ""),
    ] {
        let b = rpcb(NFS, 3, netid, addr, "");
        assert_eq!(
            ask(&mut t, 4, procs::SET, &b, local()),
            FALSE,
            "{netid} {addr}"
        );
    }
    let mut bad_utf8 = Vec::new();
    bad_utf8.put_u32(NFS);
    bad_utf8.put_u32(3);
    bad_utf8.put_xdr_opaque(b"tcp");
    bad_utf8.put_xdr_opaque(b"127.0.0.1.8.\xff");
    bad_utf8.put_xdr_opaque(b"");
    assert_eq!(ask(&mut t, 4, procs::SET, &bad_utf8, local()), FALSE);
    assert!(t.is_empty());
}

#[test]
fn the_table_is_bounded() {
    let mut t = Registrations::new();
    for p in 0..MAX_REGISTRATIONS as u32 {
        assert!(t.insert(Registration::tcp(p, 1, sa("127.0.0.1:1"))));
    }
    let b = rpcb(NFS, 3, "tcp", "127.0.0.1.8.1", "");
    assert_eq!(ask(&mut t, 4, procs::SET, &b, local()), FALSE);
    assert_eq!(t.len(), MAX_REGISTRATIONS);
}

#[test]
fn malformed_arguments_are_garbage() {
    let garbage = |vers, p, args: &[u8]| match PortmapCall::decode(vers, p, args) {
        Err(e @ PortmapCallError::Garbage(_)) => {
            assert_eq!(e.accept_stat(), AcceptStat::GarbageArgs)
        }
        other => panic!("v{vers} proc {p}: {other:?}"),
    };
    let m = mapping(NFS, 3, 6, 2049);
    garbage(2, procs::SET, &m[..15]);
    garbage(2, procs::GETPORT, &[]);
    let mut long = m.clone();
    long.put_u32(0);
    garbage(2, procs::UNSET, &long);
    garbage(2, procs::DUMP, &[0, 0, 0, 0]);
    garbage(2, procs::NULL, &[0, 0, 0, 0]);
    let b = rpcb(NFS, 3, "tcp", "127.0.0.1.8.1", "me");
    garbage(4, procs::SET, &b[..b.len() - 1]);
    garbage(3, procs::GETADDR, &b[..8]);
    // Strings over their bounds, refused before they are read.
    let netid = "n".repeat(MAX_NETID as usize + 1);
    garbage(4, procs::SET, &rpcb(NFS, 3, &netid, "", ""));
    let addr = "1".repeat(MAX_UADDR as usize + 1);
    garbage(4, procs::UNSET, &rpcb(NFS, 3, "tcp", &addr, ""));
    let owner = "o".repeat(MAX_OWNER as usize + 1);
    garbage(4, procs::GETVERSADDR, &rpcb(NFS, 3, "tcp", "", &owner));
    let mut huge = Vec::new();
    huge.put_u32(NFS);
    huge.put_u32(3);
    huge.put_u32(u32::MAX);
    assert_eq!(
        PortmapCall::decode(4, procs::SET, &huge),
        Err(PortmapCallError::Garbage(XdrError::TooLong {
            len: u32::MAX,
            max: MAX_NETID
        }))
    );
}

#[test]
fn v4_getaddrlist_lists_the_callers_family() {
    let mut t = Registrations::new();
    t.insert(Registration::tcp(NFS, 3, sa("127.0.0.1:2049")));
    t.insert(Registration::new(NFS, 3, Netid::Udp, sa("127.0.0.1:2049")).unwrap());
    t.insert(Registration::tcp(NFS, 3, sa("[::1]:2049")));
    t.insert(Registration::tcp(NFS, 4, sa("127.0.0.1:2049")));
    let q = rpcb(NFS, 3, "", "", "");
    let entry = |out: &mut Vec<u8>, addr: &str, netid: &str, sem: u32, fam: &str, proto: &str| {
        out.put_xdr_bool(true);
        out.put_xdr_opaque(addr.as_bytes());
        out.put_xdr_opaque(netid.as_bytes());
        out.put_u32(sem);
        out.put_xdr_opaque(fam.as_bytes());
        out.put_xdr_opaque(proto.as_bytes());
    };
    let mut want = Vec::new();
    entry(&mut want, "127.0.0.1.8.1", "tcp", 3, "inet", "tcp");
    entry(&mut want, "127.0.0.1.8.1", "udp", 1, "inet", "udp");
    want.put_xdr_bool(false);
    assert_eq!(ask(&mut t, 4, procs::GETADDRLIST, &q, remote()), want);
    let mut want = Vec::new();
    entry(&mut want, "::1.8.1", "tcp6", 3, "inet6", "tcp");
    want.put_xdr_bool(false);
    assert_eq!(
        ask(&mut t, 4, procs::GETADDRLIST, &q, "::2".parse().unwrap()),
        want
    );
    let q = rpcb(MOUNT, 3, "", "", "");
    assert_eq!(ask(&mut t, 4, procs::GETADDRLIST, &q, remote()), FALSE);
}

proptest::proptest! {
    /// Whatever the bytes, a call decodes or fails with a typed error, and
    /// answering what decodes never panics.
    #[test]
    fn garbage_never_panics(vers in 0u32..6, proc_num in 0u32..14,
                            args in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
        let mut t = Registrations::new();
        t.insert(Registration::tcp(NFS, 3, sa("127.0.0.1:2049")));
        if let Ok(call) = PortmapCall::decode(vers, proc_num, &args) {
            let mut out = Vec::new();
            t.answer(&call, local(), &mut out);
            proptest::prop_assert_eq!(out.len() % 4, 0);
        }
    }
}

#[test]
fn procedures_not_served_are_unavailable() {
    for (vers, p) in [
        (2, procs::CALLIT),
        (4, procs::CALLIT),
        (3, procs::GETVERSADDR),
        (2, 6),
        (4, 6),
        (3, procs::GETADDRLIST),
        (4, 10),
        (4, 12),
        (2, 99),
        (5, 0),
        (1, 0),
    ] {
        let e = PortmapCall::decode(vers, p, &[]).unwrap_err();
        assert_eq!(e, PortmapCallError::Unavailable { vers, proc_num: p });
        assert_eq!(e.accept_stat(), AcceptStat::ProcUnavail);
    }
}

#[test]
fn client_calls_decode_as_the_server_expects() {
    let r = Registration::tcp(NFS, 3, sa("127.0.0.1:2049")).with_owner("msgsplice");
    for (vers, unset) in [(2, false), (2, true), (4, false), (4, true), (3, false)] {
        let mut buf = Vec::new();
        put_set_call(&mut buf, 77, vers, unset, &r).unwrap();
        let call = decode_call(&buf).unwrap();
        let h = call.header;
        assert_eq!((h.xid, h.prog, h.vers), (77, PMAP_PROGRAM, vers));
        assert_eq!(h.proc_num, if unset { procs::UNSET } else { procs::SET });
        let got = PortmapCall::decode(h.vers, h.proc_num, call.args).unwrap();
        let want = match (vers, unset) {
            (2, false) => PortmapCall::SetV2(Mapping {
                prog: NFS,
                vers: 3,
                prot: 6,
                port: 2049,
            }),
            (2, true) => PortmapCall::UnsetV2(Mapping {
                prog: NFS,
                vers: 3,
                prot: 6,
                port: 2049,
            }),
            (_, false) => PortmapCall::Set(Rpcb {
                prog: NFS,
                vers: 3,
                netid: b"tcp",
                addr: b"127.0.0.1.8.1",
                owner: b"msgsplice",
            }),
            (_, true) => PortmapCall::Unset(Rpcb {
                prog: NFS,
                vers: 3,
                netid: b"tcp",
                addr: b"",
                owner: b"msgsplice",
            }),
        };
        assert_eq!(got, want);
    }
    let mut buf = Vec::new();
    let six = Registration::tcp(NFS, 3, sa("[::1]:2049"));
    assert!(matches!(
        put_set_call(&mut buf, 1, 2, false, &six),
        Err(PortmapError::NeedsRpcbind(Netid::Tcp6))
    ));
    let mut buf = Vec::new();
    put_null_call(&mut buf, 5, 2);
    let call = decode_call(&buf).unwrap();
    assert_eq!(call.args, b"");
    assert_eq!(
        PortmapCall::decode(2, call.header.proc_num, call.args),
        Ok(PortmapCall::Null)
    );
}

fn reply(xid: u32, stat: AcceptStat, results: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put_accepted(&mut v, xid, stat);
    v.put_slice(results);
    v
}

#[test]
fn client_checks_replies() {
    assert!(decode_bool_reply(&reply(9, AcceptStat::Success, &TRUE), 9).unwrap());
    assert!(!decode_bool_reply(&reply(9, AcceptStat::Success, &FALSE), 9).unwrap());
    assert!(matches!(
        decode_bool_reply(&reply(8, AcceptStat::Success, &TRUE), 9),
        Err(PortmapError::Xid { want: 9, got: 8 })
    ));
    assert!(matches!(
        decode_bool_reply(&reply(9, AcceptStat::Success, &[0, 0, 0, 2]), 9),
        Err(PortmapError::Malformed(XdrError::BadBool(2)))
    ));
    assert!(matches!(
        decode_bool_reply(&reply(9, AcceptStat::Success, &[0, 0, 0, 1, 0]), 9),
        Err(PortmapError::Malformed(XdrError::Trailing(1)))
    ));
    assert!(matches!(
        decode_bool_reply(&reply(9, AcceptStat::Success, &[]), 9),
        Err(PortmapError::Malformed(XdrError::Truncated { .. }))
    ));
    assert!(matches!(
        decode_success(&reply(9, AcceptStat::ProcUnavail, &[]), 9),
        Err(PortmapError::NotRun(ReplyHeader::Accepted(
            AcceptStat::ProcUnavail
        )))
    ));
}

/// Runs `record` through a dispatcher serving `program`; the reply record
/// without its marker.
fn dispatch(program: PortmapProgram, record: &[u8]) -> Vec<u8> {
    dispatch_from(program, record, sa("127.0.0.1:700"))
}

fn dispatch_from(program: PortmapProgram, record: &[u8], peer: SocketAddr) -> Vec<u8> {
    let d = Dispatcher::new(vec![Arc::new(program)], FragCache::new());
    match d.handle(record, peer).unwrap() {
        Handled::Reply(r) => {
            assert!(r.data().is_empty() && r.tail().is_empty());
            r.head()[4..].to_vec()
        }
        Handled::Dropped(e) => panic!("dropped: {e}"),
    }
}

fn call_record(vers: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put_call(&mut v, 42, PMAP_PROGRAM, vers, proc_num, &Credential::None);
    v.put_slice(args);
    v
}

#[test]
fn the_program_answers_through_the_dispatcher() {
    let table = Arc::new(Mutex::new(Registrations::new()));
    table
        .lock()
        .unwrap()
        .insert(Registration::tcp(NFS, 3, sa("127.0.0.1:2049")));
    let ro = PortmapProgram::read_only(table.clone());
    let q = mapping(NFS, 3, 6, 0);
    let got = dispatch(ro.clone(), &call_record(2, procs::GETPORT, &q));
    assert_eq!(got, reply(42, AcceptStat::Success, &[0, 0, 8, 1]));
    assert_eq!(
        dispatch(ro.clone(), &call_record(4, 0, &[])),
        reply(42, AcceptStat::Success, &[])
    );

    let set = mapping(MOUNT, 3, 6, 635);
    let got = dispatch(ro.clone(), &call_record(2, procs::SET, &set));
    assert_eq!(got, reply(42, AcceptStat::Success, &FALSE));
    // The caller's address decides: a remote caller may not SET, a
    // loopback one may.
    let rw = PortmapProgram::new(table.clone());
    let got = dispatch_from(
        rw.clone(),
        &call_record(2, procs::SET, &set),
        sa("192.0.2.7:700"),
    );
    assert_eq!(got, reply(42, AcceptStat::Success, &FALSE));
    assert_eq!(table.lock().unwrap().len(), 1);
    let got = dispatch_from(rw, &call_record(2, procs::SET, &set), sa("[::1]:700"));
    assert_eq!(got, reply(42, AcceptStat::Success, &TRUE));
    assert_eq!(table.lock().unwrap().len(), 2);

    let got = dispatch(ro.clone(), &call_record(2, procs::GETPORT, &q[..12]));
    assert_eq!(got, reply(42, AcceptStat::GarbageArgs, &[]));
    let got = dispatch(ro.clone(), &call_record(2, procs::CALLIT, &q));
    assert_eq!(got, reply(42, AcceptStat::ProcUnavail, &[]));
    let got = dispatch(ro, &call_record(5, 0, &[]));
    assert_eq!(
        got,
        reply(42, AcceptStat::ProgMismatch { low: 2, high: 4 }, &[])
    );
}
