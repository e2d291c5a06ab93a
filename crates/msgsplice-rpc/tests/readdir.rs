//! READDIR cookie verifiers follow the directory's state, and FSINFO
//! says what a read-only export supports.

// The shared helpers re-export more than this file uses.
#[allow(unused_imports)]
mod common;

use bytes::BufMut;
use common::{skip_post_op_attr, RpcClient, TestServer};
use msgsplice_rpc::nfs::NFS_PROGRAM;
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};

const READDIR: u32 = 16;
const FSINFO: u32 = 19;
const BAD_COOKIE: u32 = 10003;

/// READDIR of `dir` from (`cookie`, `verf`) with `count` bytes: the
/// status, and on success the verifier and the last cookie.
fn readdir(c: &mut RpcClient, dir: &[u8], cookie: u64, verf: u64, count: u32) -> (u32, u64, u64) {
    let mut a = Vec::new();
    a.put_xdr_opaque(dir);
    a.put_u64(cookie);
    a.put_u64(verf);
    a.put_u32(count);
    let res = c.ok(NFS_PROGRAM, READDIR, &a);
    let mut d = XdrDecoder::new(&res);
    let status = d.u32().unwrap();
    skip_post_op_attr(&mut d);
    if status != 0 {
        return (status, 0, 0);
    }
    let verf = d.u64().unwrap();
    let mut last = 0;
    while d.bool().unwrap() {
        d.u64().unwrap();
        d.string(255).unwrap();
        last = d.u64().unwrap();
    }
    (status, verf, last)
}

#[test]
fn a_stale_cookie_verifier_is_a_bad_cookie() {
    let s = TestServer::start(|root| {
        for i in 0..40 {
            std::fs::write(root.join(format!("file-{i:02}")), b"x").unwrap();
        }
        // An old mtime, so that the change below shows whatever the
        // clock's granularity.
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        std::fs::File::open(root)
            .unwrap()
            .set_modified(old)
            .unwrap();
    });
    let mut c = RpcClient::connect(s.mount);
    let root = c.mnt("/export").unwrap();
    let (st, verf, cookie) = readdir(&mut c, &root, 0, 0, 512);
    assert_eq!(st, 0);
    assert_ne!(cookie, 0, "a partial listing");
    // Going on with the verifier given: fine. With another: refused.
    assert_eq!(readdir(&mut c, &root, cookie, verf, 512).0, 0);
    assert_eq!(readdir(&mut c, &root, cookie, verf ^ 1, 512).0, BAD_COOKIE);
    // Cookie 0 starts over whatever the verifier.
    assert_eq!(readdir(&mut c, &root, 0, 12345, 512).0, 0);
    // The directory changes: the old verifier is stale.
    std::fs::write(s.root().join("new"), b"n").unwrap();
    assert_eq!(readdir(&mut c, &root, cookie, verf, 512).0, BAD_COOKIE);
    let (st, verf2, _) = readdir(&mut c, &root, 0, 0, 512);
    assert_eq!(st, 0);
    assert_ne!(verf2, verf);
}

#[test]
fn fsinfo_does_not_offer_to_set_times() {
    let s = TestServer::start(|_| {});
    let mut c = RpcClient::connect(s.mount);
    let root = c.mnt("/export").unwrap();
    let mut a = Vec::new();
    a.put_xdr_opaque(&root);
    let res = c.ok(NFS_PROGRAM, FSINFO, &a);
    let mut d = XdrDecoder::new(&res);
    assert_eq!(d.u32().unwrap(), 0);
    skip_post_op_attr(&mut d);
    for _ in 0..7 {
        d.u32().unwrap(); // rtmax .. dtpref
    }
    d.u64().unwrap(); // maxfilesize
    d.u64().unwrap(); // time_delta
    let properties = d.u32().unwrap();
    assert_eq!(properties & 0x10, 0, "FSF3_CANSETTIME");
    assert_eq!(properties & 0x1, 0x1, "FSF3_LINK");
}
