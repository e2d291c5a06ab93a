//! Unit and property tests of the RPC message codecs.
use super::*;
use proptest::prelude::*;

fn call_bytes(cred: &Credential<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    put_call(&mut v, 0x1234, 100003, 3, 1, cred);
    v.put_slice(b"ARGS");
    v
}

#[test]
fn auth_none_call_decodes() {
    let v = call_bytes(&Credential::None);
    let call = decode_call(&v).unwrap();
    assert_eq!(call.header.xid, 0x1234);
    assert_eq!(call.header.prog, 100003);
    assert_eq!(call.header.vers, 3);
    assert_eq!(call.header.proc_num, 1);
    assert_eq!(call.header.cred, Credential::None);
    assert_eq!(call.args, b"ARGS");
}

#[test]
fn auth_sys_call_decodes() {
    let sys = AuthSys::new(b"host", 1000, 100, &[4, 24, 27]).unwrap();
    let v = call_bytes(&Credential::Sys(sys));
    let call = decode_call(&v).unwrap();
    match call.header.cred {
        Credential::Sys(s) => {
            assert_eq!(s.machine_name, b"host");
            assert_eq!((s.uid, s.gid), (1000, 100));
            assert_eq!(s.gids.as_slice(), &[4, 24, 27]);
        }
        other => panic!("wrong credential {other:?}"),
    }
    assert_eq!(call.args, b"ARGS");
}

/// Builds a call whose AUTH_SYS body is `body`, raw.
fn call_with_sys_body(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [7, CALL, 2, 100003, 3, 0, flavor::AUTH_SYS] {
        v.put_u32(w);
    }
    v.put_xdr_opaque(body);
    v.put_u32(0);
    v.put_u32(0);
    v
}

#[test]
fn auth_sys_limits_are_enforced() {
    let bad = |v: &[u8]| {
        assert_eq!(
            decode_call(v),
            Err(CallError::Auth {
                xid: 7,
                stat: AuthStat::BadCred
            })
        )
    };
    // 17 groups.
    let mut body = Vec::new();
    body.put_u32(0);
    body.put_xdr_opaque(b"h");
    body.put_u32(0);
    body.put_u32(0);
    body.put_u32(17);
    for g in 0..17 {
        body.put_u32(g);
    }
    bad(&call_with_sys_body(&body));
    // Machine name of 256 bytes.
    let mut body = Vec::new();
    body.put_u32(0);
    body.put_xdr_opaque(&[b'x'; 256]);
    body.put_u32(0);
    body.put_u32(0);
    body.put_u32(0);
    bad(&call_with_sys_body(&body));
    // Trailing garbage inside the credential body.
    let mut body = Vec::new();
    body.put_u32(0);
    body.put_xdr_opaque(b"h");
    body.put_u32(0);
    body.put_u32(0);
    body.put_u32(0);
    body.put_u32(99);
    bad(&call_with_sys_body(&body));
    // Truncated body.
    bad(&call_with_sys_body(&[0, 0, 0, 0, 0, 0, 0, 9]));
    // Credential body longer than 400 bytes.
    bad(&call_with_sys_body(&[0; 404]));
}

#[test]
fn unknown_flavor_and_bad_verifier_are_denied() {
    let mut v = Vec::new();
    for w in [9, CALL, 2, 1, 1, 0, 6, 0, 0, 0] {
        v.put_u32(w);
    }
    let err = decode_call(&v).unwrap_err();
    assert_eq!(
        err.rejection(),
        Some((9, Rejection::AuthError(AuthStat::BadCred)))
    );
    let mut v = Vec::new();
    for w in [9, CALL, 2, 1, 1, 0, 0, 0, 1, 0] {
        v.put_u32(w);
    }
    assert_eq!(
        decode_call(&v),
        Err(CallError::Auth {
            xid: 9,
            stat: AuthStat::BadVerf
        })
    );
}

#[test]
fn wrong_rpc_version_gets_mismatch() {
    let mut v = Vec::new();
    for w in [5, CALL, 3, 1, 1, 0, 0, 0, 0, 0] {
        v.put_u32(w);
    }
    let err = decode_call(&v).unwrap_err();
    assert_eq!(
        err.rejection(),
        Some((5, Rejection::RpcMismatch { low: 2, high: 2 }))
    );
}

#[test]
fn replies_and_short_records_are_dropped() {
    let mut v = Vec::new();
    v.put_u32(5);
    v.put_u32(REPLY);
    assert_eq!(
        decode_call(&v),
        Err(CallError::NotACall {
            xid: 5,
            msg_type: 1
        })
    );
    assert_eq!(decode_call(&v).unwrap_err().rejection(), None);
    assert!(matches!(decode_call(&[1, 2]), Err(CallError::Malformed(_))));
    // Header cut before the procedure number.
    assert!(matches!(decode_call(&v[..4]), Err(CallError::Malformed(_))));
}

#[test]
fn every_reply_form_round_trips() {
    let stats = [
        AcceptStat::Success,
        AcceptStat::ProgUnavail,
        AcceptStat::ProgMismatch { low: 3, high: 3 },
        AcceptStat::ProcUnavail,
        AcceptStat::GarbageArgs,
        AcceptStat::SystemErr,
    ];
    for stat in stats {
        let mut v = Vec::new();
        put_accepted(&mut v, 42, stat);
        assert!(v.len() <= MAX_ACCEPTED_HEADER);
        assert_eq!(
            decode_reply(&v).unwrap(),
            (42, ReplyHeader::Accepted(stat), &[][..])
        );
    }
    let denials = [
        Rejection::RpcMismatch { low: 2, high: 2 },
        Rejection::AuthError(AuthStat::BadCred),
        Rejection::AuthError(AuthStat::TooWeak),
    ];
    for why in denials {
        let mut v = Vec::new();
        put_rejected(&mut v, 43, why);
        assert!(v.len() <= MAX_DENIED_REPLY);
        assert_eq!(
            decode_reply(&v).unwrap(),
            (43, ReplyHeader::Denied(why), &[][..])
        );
    }
}

#[test]
fn accepted_success_wire_format() {
    let mut v = Vec::new();
    put_accepted(&mut v, 1, AcceptStat::Success);
    assert_eq!(
        v,
        [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

proptest! {
    #[test]
    fn decode_call_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_call(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn auth_sys_round_trips(name in proptest::collection::vec(any::<u8>(), 0..=255),
                            uid in any::<u32>(), gid in any::<u32>(),
                            groups in proptest::collection::vec(any::<u32>(), 0..=16)) {
        let sys = AuthSys::new(&name, uid, gid, &groups).unwrap();
        let v = call_bytes(&Credential::Sys(sys));
        let call = decode_call(&v).unwrap();
        prop_assert_eq!(call.header.cred, Credential::Sys(sys));
        prop_assert_eq!(call.args, b"ARGS");
    }
}
