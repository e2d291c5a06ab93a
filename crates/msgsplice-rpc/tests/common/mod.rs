//! Test parts shared by the integration tests: a server on a temporary
//! tree, a small blocking RPC client built from the crate's own codecs,
//! and the libnfs-utils runner.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BufMut;
use msgsplice_rpc::nfs::{NfsConfig, NfsServer, NFS_PROGRAM};
use msgsplice_rpc::record::RecordAssembler;
use msgsplice_rpc::rpc::{decode_reply, put_call, AcceptStat, AuthSys, Credential, ReplyHeader};
use msgsplice_rpc::server::{ServerConfig, ServerEvent};
use msgsplice_rpc::xdr::{XdrDecoder, XdrPut};
use msgsplice_rpc::{ServerHandle, StatsSnapshot};

pub const MOUNT_PROGRAM: u32 = 100005;

#[allow(unused_imports)]
pub use msgsplice_testkit::payload::pattern;

/// A running server over a temporary directory; both are gone on drop.
pub struct TestServer {
    pub dir: tempfile::TempDir,
    pub nfs: SocketAddr,
    pub mount: SocketAddr,
    pub url: String,
    pub events: Arc<Mutex<Vec<String>>>,
    server: Option<NfsServer>,
    handle: Option<ServerHandle>,
}

impl TestServer {
    /// A server over a new, empty temporary directory; `fill` populates
    /// it before serving starts.
    pub fn start(fill: impl FnOnce(&Path)) -> TestServer {
        TestServer::start_with(fill, |_| {})
    }

    pub fn start_with(fill: impl FnOnce(&Path), tune: impl FnOnce(&mut NfsConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        fill(&root);
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut config = NfsConfig {
            server: ServerConfig {
                events: Arc::new(move |ev: &ServerEvent<'_>| {
                    sink.lock().unwrap().push(format!("{ev:?}"));
                }),
                ..ServerConfig::default()
            },
            ..NfsConfig::default()
        };
        tune(&mut config);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = NfsServer::bind_with(&root, any, any, config).expect("bind");
        let (nfs, mount, url) = (server.nfs_addr(), mount_addr(&server), server.url());
        let handle = server.spawn().expect("spawn");
        TestServer {
            dir,
            nfs,
            mount,
            url,
            events,
            server: None,
            handle: Some(handle),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The URL of a path inside the export.
    pub fn url_for(&self, path: &str) -> String {
        let (base, query) = self.url.split_once('?').unwrap();
        format!("{base}/{}?{query}", path.trim_start_matches('/'))
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.handle.as_ref().expect("running").stats()
    }

    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

fn mount_addr(s: &NfsServer) -> SocketAddr {
    SocketAddr::new(s.nfs_addr().ip(), s.mount_port())
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().expect("server shut down cleanly");
        }
        drop(self.server.take());
    }
}

/// A blocking RPC client over TCP.
pub struct RpcClient {
    pub stream: TcpStream,
    xid: u32,
    asm: RecordAssembler,
    pending: Vec<u8>,
    pub uid: u32,
}

impl RpcClient {
    pub fn connect(addr: SocketAddr) -> RpcClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        RpcClient {
            stream,
            xid: 0x1000,
            asm: RecordAssembler::new(8 << 20),
            pending: Vec::new(),
            uid: 0,
        }
    }

    /// Sends raw bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends one record (a single last fragment).
    pub fn send_record(&mut self, body: &[u8]) {
        let mut v = ((body.len() as u32) | 0x8000_0000).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        self.send_raw(&v);
    }

    /// The next reply record, or `None` if the server closed the connection.
    pub fn recv_record(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            if !self.pending.is_empty() {
                let mut input = &self.pending[..];
                let before = input.len();
                let rec = self
                    .asm
                    .push(&mut input)
                    .expect("reply framing")
                    .map(|r| r.to_vec());
                let used = before - input.len();
                self.pending.drain(..used);
                if rec.is_some() {
                    return rec;
                }
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                // A thread that made an io_uring (the engine's probe, in
                // this process) is woken to run its task work, and a read
                // with a timeout then fails with EINTR: a retry.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => panic!("receive: {e}"),
            }
        }
    }

    pub fn call_bytes(&mut self, prog: u32, vers: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
        self.xid += 1;
        let sys = AuthSys::new(b"test", self.uid, self.uid, &[]).unwrap();
        let mut v = Vec::new();
        put_call(
            &mut v,
            self.xid,
            prog,
            vers,
            proc_num,
            &Credential::Sys(sys),
        );
        v.put_slice(args);
        self.send_record(&v);
        let rec = self.recv_record().expect("server closed the connection");
        let (xid, _, _) = decode_reply(&rec).expect("reply decodes");
        assert_eq!(xid, self.xid, "reply to the call just made");
        rec
    }

    /// Makes a call; returns the reply header and the result bytes.
    pub fn call(
        &mut self,
        prog: u32,
        vers: u32,
        proc_num: u32,
        args: &[u8],
    ) -> (ReplyHeader, Vec<u8>) {
        let rec = self.call_bytes(prog, vers, proc_num, args);
        let (_, hdr, rest) = decode_reply(&rec).unwrap();
        (hdr, rest.to_vec())
    }

    /// A successful call's results.
    pub fn ok(&mut self, prog: u32, proc_num: u32, args: &[u8]) -> Vec<u8> {
        let (hdr, res) = self.call(prog, 3, proc_num, args);
        assert_eq!(hdr, ReplyHeader::Accepted(AcceptStat::Success));
        res
    }

    /// MOUNT MNT: the handle, or the mount status.
    pub fn mnt(&mut self, path: &str) -> Result<Vec<u8>, u32> {
        let mut a = Vec::new();
        a.put_xdr_opaque(path.as_bytes());
        let res = self.ok(MOUNT_PROGRAM, 1, &a);
        let mut d = XdrDecoder::new(&res);
        match d.u32().unwrap() {
            0 => Ok(d.opaque(64).unwrap().to_vec()),
            s => Err(s),
        }
    }

    /// NFS LOOKUP: the handle, or the status.
    pub fn lookup(&mut self, dir: &[u8], name: &[u8]) -> Result<Vec<u8>, u32> {
        let mut a = Vec::new();
        a.put_xdr_opaque(dir);
        a.put_xdr_opaque(name);
        let res = self.ok(NFS_PROGRAM, 3, &a);
        let mut d = XdrDecoder::new(&res);
        match d.u32().unwrap() {
            0 => Ok(d.opaque(64).unwrap().to_vec()),
            s => Err(s),
        }
    }

    /// NFS READ: (status, data, eof).
    pub fn read(&mut self, fh: &[u8], offset: u64, count: u32) -> (u32, Vec<u8>, bool) {
        let mut a = Vec::new();
        a.put_xdr_opaque(fh);
        a.put_u64(offset);
        a.put_u32(count);
        let res = self.ok(NFS_PROGRAM, 6, &a);
        let mut d = XdrDecoder::new(&res);
        let status = d.u32().unwrap();
        skip_post_op_attr(&mut d);
        if status != 0 {
            return (status, Vec::new(), false);
        }
        let n = d.u32().unwrap();
        let eof = d.bool().unwrap();
        let data = d.opaque(u32::MAX).unwrap().to_vec();
        assert_eq!(n as usize, data.len(), "count matches the data length");
        d.finish().expect("nothing after the data");
        (status, data, eof)
    }

    /// NFS status of a procedure taking just a handle.
    pub fn status_of(&mut self, proc_num: u32, fh: &[u8]) -> u32 {
        let mut a = Vec::new();
        a.put_xdr_opaque(fh);
        let res = self.ok(NFS_PROGRAM, proc_num, &a);
        XdrDecoder::new(&res).u32().unwrap()
    }
}

pub fn skip_post_op_attr(d: &mut XdrDecoder<'_>) {
    if d.bool().unwrap() {
        d.fixed_opaque(84).unwrap();
    }
}

/// Runs a libnfs-utils tool with a time limit. Fails the test, saying how
/// to install the tools, if they are missing: these tests never pass
/// silently without a real client.
pub fn nfs_tool(tool: &str, args: &[&str]) -> Output {
    let out = Command::new("timeout")
        .arg("120")
        .arg(tool)
        .args(args)
        .output()
        .expect("run `timeout` (coreutils)");
    if out.status.code() == Some(127) {
        panic!(
            "{tool} not found: these tests need a real NFS client. \
             Install libnfs-utils (`apt-get install -y libnfs-utils`); CI does."
        );
    }
    out
}

/// Runs a tool and requires success.
pub fn nfs_ok(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = nfs_tool(tool, args);
    assert!(
        out.status.success(),
        "{tool} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A SipHash-2-4-128 digest of a file, read in chunks.
pub fn checksum(path: &Path) -> (u64, u128) {
    use siphasher::sip128::{Hasher128, SipHasher24};
    use std::hash::Hasher;
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = SipHasher24::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.write(&buf[..n]);
        len += n as u64;
    }
    (len, h.finish128().as_u128())
}
