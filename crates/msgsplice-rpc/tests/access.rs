//! Who may use which export, and as whom: `clients=`, squashing and the
//! mode bits of files owned by other users, checked over the wire with
//! AUTH_SYS credentials of several uids.
//!
//! The tree is made by root and chown'ed to other users, so these tests
//! need root; without it they say so and do nothing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use bytes::BufMut;
use msgsplice_rpc::exports::Exports;
use msgsplice_rpc::nfs::{NfsConfig, NfsServer, NFS_PROGRAM};
use msgsplice_rpc::record::RecordAssembler;
use msgsplice_rpc::rpc::{decode_reply, put_call, AcceptStat, AuthSys, Credential, ReplyHeader};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};
use msgsplice_rpc::ServerHandle;
use msgsplice_testkit::skip::skip;

const MOUNT: u32 = 100005;
const LOOKUP: u32 = 3;
const ACCESS: u32 = 4;
const READLINK: u32 = 5;
const READ: u32 = 6;
const READDIR: u32 = 16;
const READDIRPLUS: u32 = 17;
const GETATTR: u32 = 1;
const OK: u32 = 0;
const ACCES: u32 = 13;
const MNT3ERR_ACCES: u32 = 13;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Who a call claims to be.
#[derive(Clone, Copy)]
enum As {
    Sys(u32, u32, &'static [u32]),
    Nobody,
}

/// A blocking RPC client from a chosen local address.
struct Client {
    stream: TcpStream,
    asm: RecordAssembler,
    pending: Vec<u8>,
    xid: u32,
}

impl Client {
    /// Connects to `to` from `from` (any port), so tests can be another
    /// client address on the loopback network.
    fn connect(from: &str, to: SocketAddr) -> Client {
        let from: SocketAddr = format!("{from}:0").parse().unwrap();
        let sock = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(&sock, &from).unwrap();
        rustix::net::connect(&sock, &to).unwrap();
        let stream = TcpStream::from(sock);
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            asm: RecordAssembler::new(4 << 20),
            pending: Vec::new(),
            xid: 1,
        }
    }

    /// Calls `prog` version 3 `proc_num` as `who`; the accepted results.
    fn call(&mut self, who: As, prog: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
        self.xid += 1;
        let mut body = Vec::new();
        match who {
            As::Sys(uid, gid, gids) => {
                let sys = AuthSys::new(b"client", uid, gid, gids).unwrap();
                put_call(
                    &mut body,
                    self.xid,
                    prog,
                    3,
                    proc_num,
                    &Credential::Sys(sys),
                );
            }
            As::Nobody => put_call(&mut body, self.xid, prog, 3, proc_num, &Credential::None),
        }
        body.put_slice(args);
        let mut rec = ((body.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
        rec.extend_from_slice(&body);
        self.stream.write_all(&rec).unwrap();
        let reply = self.recv();
        let (xid, hdr, res) = decode_reply(&reply).unwrap();
        assert_eq!(xid, self.xid);
        assert_eq!(hdr, ReplyHeader::Accepted(AcceptStat::Success));
        res.to_vec()
    }

    fn recv(&mut self) -> Vec<u8> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let mut input = &self.pending[..];
            let before = input.len();
            let rec = self.asm.push(&mut input).unwrap().map(|r| r.to_vec());
            let used = before - input.len();
            self.pending.drain(..used);
            if let Some(r) = rec {
                return r;
            }
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "server closed the connection");
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// MNT: the root handle, or the status.
    fn mnt(&mut self, path: &str) -> Result<Vec<u8>, u32> {
        let mut a = Vec::new();
        a.put_xdr_opaque(path.as_bytes());
        let res = self.call(As::Sys(0, 0, &[]), MOUNT, 1, &a);
        let mut d = XdrDecoder::new(&res);
        match d.u32().unwrap() {
            0 => Ok(d.opaque(64).unwrap().to_vec()),
            s => Err(s),
        }
    }

    /// An NFS procedure on `fh` (then `rest`): its status.
    fn status(&mut self, who: As, proc_num: u32, fh: &[u8], rest: &[u8]) -> u32 {
        let mut a = Vec::new();
        a.put_xdr_opaque(fh);
        a.put_slice(rest);
        let res = self.call(who, NFS_PROGRAM, proc_num, &a);
        u32::from_be_bytes(res[..4].try_into().unwrap())
    }

    /// LOOKUP: the handle, or the status.
    fn lookup(&mut self, who: As, dir: &[u8], name: &str) -> Result<Vec<u8>, u32> {
        let mut a = Vec::new();
        a.put_xdr_opaque(dir);
        a.put_xdr_opaque(name.as_bytes());
        let res = self.call(who, NFS_PROGRAM, LOOKUP, &a);
        let mut d = XdrDecoder::new(&res);
        match d.u32().unwrap() {
            0 => Ok(d.opaque(64).unwrap().to_vec()),
            s => Err(s),
        }
    }

    /// READ of one byte at 0: its status.
    fn read(&mut self, who: As, fh: &[u8]) -> u32 {
        let mut rest = Vec::new();
        rest.put_u64(0);
        rest.put_u32(1);
        self.status(who, READ, fh, &rest)
    }

    /// READDIR (or READDIRPLUS) from the start: its status.
    fn readdir(&mut self, who: As, fh: &[u8], plus: bool) -> u32 {
        let mut rest = Vec::new();
        rest.put_u64(0);
        rest.put_u64(0);
        rest.put_u32(4096);
        if plus {
            rest.put_u32(8192);
            return self.status(who, READDIRPLUS, fh, &rest);
        }
        self.status(who, READDIR, fh, &rest)
    }

    /// ACCESS asking for everything: the granted bits.
    fn access(&mut self, who: As, fh: &[u8]) -> u32 {
        let mut a = Vec::new();
        a.put_xdr_opaque(fh);
        a.put_u32(0x3f);
        let res = self.call(who, NFS_PROGRAM, ACCESS, &a);
        let mut d = XdrDecoder::new(&res);
        assert_eq!(d.u32().unwrap(), OK);
        assert!(d.bool().unwrap(), "attributes");
        d.fixed_opaque(84).unwrap();
        d.u32().unwrap()
    }
}

/// Makes `path` (a file with `data`, or a directory if `data` is `None`)
/// owned by `uid`:`gid` with `mode`.
fn make(path: &Path, data: Option<&[u8]>, uid: u32, gid: u32, mode: u32) {
    match data {
        Some(d) => std::fs::write(path, d).unwrap(),
        None => std::fs::create_dir(path).unwrap(),
    }
    chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The tree: users 1000 (group 2000) and 1001 (groups 1001, 2000), and
/// uid 1002 who is no one in particular.
///
/// ```text
/// f600          0600 1000:1000
/// f640          0640 1000:2000
/// x100          0100 1000:1000   owner may execute, not read
/// link          -> f600
/// d711/         0711 1000:1000   searchable, not listable, by others
/// d711/inner    0644 1000:1000
/// d700/         0700 1000:1000
/// d700/inner    0644 1000:1000
/// ```
fn tree(root: &Path) {
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    make(&root.join("f600"), Some(b"six"), 1000, 1000, 0o600);
    make(&root.join("f640"), Some(b"six-four"), 1000, 2000, 0o640);
    make(&root.join("x100"), Some(b"x"), 1000, 1000, 0o100);
    std::os::unix::fs::symlink("f600", root.join("link")).unwrap();
    make(&root.join("d711"), None, 1000, 1000, 0o711);
    make(&root.join("d711/inner"), Some(b"in"), 1000, 1000, 0o644);
    make(&root.join("d700"), None, 1000, 1000, 0o700);
    make(&root.join("d700/inner"), Some(b"in"), 1000, 1000, 0o644);
}

/// A server of `exports` (lines of an exports file, `DIR` replaced by the
/// test's tree) on 127.0.0.1.
struct Served {
    _dir: tempfile::TempDir,
    nfs: SocketAddr,
    stats: std::sync::Arc<msgsplice_rpc::nfs::NfsStats>,
    _handle: ServerHandle,
}

fn serve(lines: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("t");
    std::fs::create_dir(&root).unwrap();
    tree(&root);
    let text = lines.replace("DIR", root.to_str().unwrap());
    let exports = Exports::parse(&text).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = NfsServer::bind_exports(&exports, any, any, NfsConfig::default()).unwrap();
    let nfs = server.nfs_addr();
    Served {
        _dir: dir,
        nfs,
        stats: server.nfs_stats(),
        _handle: server.spawn().unwrap(),
    }
}

const U1000: As = As::Sys(1000, 1000, &[]);
const U1001: As = As::Sys(1001, 1001, &[2000]);
const U1002: As = As::Sys(1002, 1002, &[]);
const ROOT: As = As::Sys(0, 0, &[]);

#[test]
fn mode_bits_decide_for_each_user() {
    const T: &str = "mode_bits_decide_for_each_user";
    if !is_root() {
        return skip(T, "needs root to chown the tree to other users");
    }
    let s = serve("data=DIR\n");
    let mut c = Client::connect("127.0.0.1", s.nfs);
    let root = c.mnt("/data").unwrap();
    let fh = |c: &mut Client, name: &str| c.lookup(U1000, &root, name).unwrap();
    let (f600, f640, x100) = (fh(&mut c, "f600"), fh(&mut c, "f640"), fh(&mut c, "x100"));
    let (d711, d700, link) = (fh(&mut c, "d711"), fh(&mut c, "d700"), fh(&mut c, "link"));

    // READ: the owner's bits, then the group's (primary or supplementary),
    // then the others'.
    assert_eq!(c.read(U1000, &f600), OK);
    assert_eq!(c.read(U1001, &f600), ACCES);
    assert_eq!(c.read(U1001, &f640), OK, "group 2000 is supplementary");
    assert_eq!(c.read(As::Sys(1002, 2000, &[]), &f640), OK, "primary group");
    assert_eq!(c.read(U1002, &f640), ACCES);
    assert_eq!(c.read(U1000, &x100), ACCES, "execute is not read");
    // Root is squashed to 65534, which is "others" everywhere here.
    assert_eq!(c.read(ROOT, &f600), ACCES);
    assert_eq!(c.read(As::Nobody, &f600), ACCES);

    // LOOKUP needs search (x) on the directory; READDIR and READDIRPLUS
    // need read.
    assert!(c.lookup(U1002, &d711, "inner").is_ok());
    assert_eq!(c.lookup(U1002, &d700, "inner"), Err(ACCES));
    assert!(c.lookup(U1000, &d700, "inner").is_ok());
    for plus in [false, true] {
        assert_eq!(c.readdir(U1000, &d711, plus), OK);
        assert_eq!(c.readdir(U1002, &d711, plus), ACCES);
        assert_eq!(c.readdir(U1002, &d700, plus), ACCES);
        assert_eq!(c.readdir(U1002, &root, plus), OK);
    }

    // READLINK: a link's own bits (always rwx on Linux) let anyone.
    assert_eq!(c.status(U1002, READLINK, &link, &[]), OK);

    // ACCESS: READ 0x01, LOOKUP 0x02, EXECUTE 0x20; never a write bit.
    assert_eq!(c.access(U1000, &f600), 0x01);
    assert_eq!(c.access(U1002, &f600), 0);
    assert_eq!(c.access(U1001, &f640), 0x01);
    assert_eq!(c.access(U1000, &x100), 0x20);
    assert_eq!(c.access(U1002, &d711), 0x02);
    assert_eq!(c.access(U1000, &d711), 0x03);
    assert_eq!(c.access(ROOT, &d700), 0);
}

#[test]
fn squash_options_choose_the_identity() {
    const T: &str = "squash_options_choose_the_identity";
    if !is_root() {
        return skip(T, "needs root to chown the tree to other users");
    }
    let s = serve(
        "open=DIR,no_root_squash\n\
         anon=DIR,all_squash,anonuid=1000,anongid=1000\n\
         rootmap=DIR,anonuid=1001,anongid=2000\n",
    );
    let mut c = Client::connect("127.0.0.1", s.nfs);

    // no_root_squash: root reads anything, lists any directory.
    let open = c.mnt("/open").unwrap();
    let f600 = c.lookup(ROOT, &open, "f600").unwrap();
    assert_eq!(c.read(ROOT, &f600), OK);
    let d700 = c.lookup(ROOT, &open, "d700").unwrap();
    assert_eq!(c.readdir(ROOT, &d700, false), OK);
    assert_eq!(c.read(U1002, &f600), ACCES, "others are still others");

    // all_squash to 1000: every caller, AUTH_NONE too, is the owner.
    let anon = c.mnt("/anon").unwrap();
    let f600 = c.lookup(U1002, &anon, "f600").unwrap();
    for who in [U1002, ROOT, As::Nobody] {
        assert_eq!(c.read(who, &f600), OK);
    }

    // root_squash (the default) to 1001:2000: root reads the group's
    // file, but not the owner's; other users keep their own identity.
    let rootmap = c.mnt("/rootmap").unwrap();
    let f640 = c.lookup(U1000, &rootmap, "f640").unwrap();
    let f600 = c.lookup(U1000, &rootmap, "f600").unwrap();
    assert_eq!(c.read(ROOT, &f640), OK);
    assert_eq!(c.read(ROOT, &f600), ACCES);
    assert_eq!(c.read(U1000, &f600), OK);
}

#[test]
fn clients_outside_an_export_are_refused_everywhere() {
    const T: &str = "clients_outside_an_export_are_refused_everywhere";
    if !is_root() {
        return skip(T, "needs root to chown the tree to other users");
    }
    let s = serve("pub=DIR\nlim=DIR,clients=127.0.0.2;10.0.0.0/8\n");
    let mut one = Client::connect("127.0.0.1", s.nfs);
    let mut two = Client::connect("127.0.0.2", s.nfs);

    assert_eq!(one.mnt("/lim"), Err(MNT3ERR_ACCES));
    assert_eq!(one.mnt("/lim/d711"), Err(MNT3ERR_ACCES));
    assert!(one.mnt("/pub").is_ok());
    let lim = two.mnt("/lim").unwrap();
    let f640 = two.lookup(U1000, &lim, "f640").unwrap();
    assert_eq!(two.read(U1000, &f640), OK);

    // A handle of the export taken elsewhere does not help: every
    // procedure refuses it to a client outside the list.
    assert_eq!(one.status(U1000, GETATTR, &lim, &[]), ACCES);
    assert_eq!(one.lookup(U1000, &lim, "f640"), Err(ACCES));
    assert_eq!(one.read(U1000, &f640), ACCES);
    assert_eq!(one.readdir(U1000, &lim, true), ACCES);
    let mut a = Vec::new();
    a.put_u32(0x3f);
    assert_eq!(one.status(U1000, ACCESS, &f640, &a), ACCES);
    // The open export is still open to it.
    let pubroot = one.mnt("/pub").unwrap();
    assert!(one.lookup(U1000, &pubroot, "f640").is_ok());
    // And a handle of one export cannot be passed off as the other's.
    let mut moved = f640.clone();
    moved[7] = 0;
    assert_eq!(one.status(U1000, GETATTR, &moved, &[]), 70, "STALE");

    // The counters saw it all: 2 MNTs refused, 5 NFS calls refused and
    // one stale, one byte read.
    let snap = s.stats.snapshot();
    assert_eq!(snap.mount_calls[1], 5, "MNT");
    assert_eq!(snap.nfs_calls[READ as usize], 2);
    assert_eq!(snap.errors, 2 + 5 + 1);
    assert_eq!(snap.read_bytes, 1);
}

/// EXPORT lists each export with its clients; a mount without a name
/// prefix match is NOENT.
#[test]
fn export_lists_every_export_and_its_clients() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "a={0}\nb={0},clients=127.0.0.2;192.0.2.0/24\n",
        dir.path().display()
    );
    let exports = Exports::parse(&text).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = NfsServer::bind_exports(&exports, any, any, NfsConfig::default()).unwrap();
    let at = server.nfs_addr();
    let _h = server.spawn().unwrap();
    let mut c = Client::connect("127.0.0.1", at);
    let res = c.call(ROOT, MOUNT, 5, &[]);
    let mut d = XdrDecoder::new(&res);
    let mut got = Vec::new();
    while d.bool().unwrap() {
        let name = String::from_utf8(d.string(1024).unwrap().to_vec()).unwrap();
        let mut groups = Vec::new();
        while d.bool().unwrap() {
            groups.push(String::from_utf8(d.string(1024).unwrap().to_vec()).unwrap());
        }
        got.push((name, groups));
    }
    d.finish().unwrap();
    assert_eq!(
        got,
        [
            ("/a".to_owned(), vec!["*".to_owned()]),
            (
                "/b".to_owned(),
                vec!["127.0.0.2/32".to_owned(), "192.0.2.0/24".to_owned()]
            ),
        ]
    );
    assert_eq!(c.mnt("/c"), Err(2));
    assert_eq!(c.mnt("/ab"), Err(2));
}
