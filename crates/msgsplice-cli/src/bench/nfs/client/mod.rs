//! The bench's own NFSv3 READ client, wire part: where a server is (from
//! the `nfs://` URL it prints), MOUNT v3 MNT for the root handle, LOOKUP
//! for the file's handle, and the READ call and reply. [`super::load`]
//! drives many of these connections at once.
//!
//! Calls are encoded with msgsplice-rpc's `put_call` and XDR encoders, and
//! replies decoded with its `decode_reply` and [`XdrDecoder`]; only the
//! client-side arguments and results of MNT, LOOKUP and READ are written
//! here. Every call carries AUTH_SYS uid 0 gid 0, as libnfs sends.
//!
//! Replies are read with one buffered reader per connection: the record
//! marker and small replies come from its 64 KiB buffer (many 4 KiB READ
//! replies per `read`), and a large reply's body is read straight into
//! the connection's reply buffer, which is kept from reply to reply.

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use msgsplice_rpc::mount::{MOUNT_PROGRAM, MOUNT_V3};
use msgsplice_rpc::nfs::{NFS_PROGRAM, NFS_V3};
use msgsplice_rpc::record::LAST_FRAGMENT;
use msgsplice_rpc::rpc::{decode_reply, put_call, AcceptStat, AuthSys, Credential, ReplyHeader};
use msgsplice_rpc::xdr::{XdrDecoder, XdrError, XdrPut};

/// Longest NFSv3 file handle (`NFS3_FHSIZE`).
pub const FH_MAX: u32 = 64;
/// Bytes of an encoded `fattr3` (RFC 1813: a fixed-size structure).
const FATTR3_LEN: usize = 84;
/// Reply bytes beyond the data a READ reply may hold (RPC header with a
/// verifier, status, attributes, count, eof, length), with room to spare.
const READ_OVERHEAD: usize = 4096;
/// The buffered reader's size: many small replies per `read`.
const READ_BUFFER: usize = 64 << 10;

const MNT: u32 = 1;
const LOOKUP: u32 = 3;
const READ: u32 = 6;

/// What went wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not one this client understands.
    #[error("cannot use the URL {url}: {why} (expected nfs://HOST/EXPORT?nfsport=N&mountport=M)")]
    Url {
        /// The URL given.
        url: String,
        /// What is missing or wrong.
        why: &'static str,
    },
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source} (is the server running?)")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// The error.
        source: io::Error,
    },
    /// The server closed or reset the connection.
    #[error("the server closed or reset the connection: {0}")]
    Reset(io::Error),
    /// No reply came in time.
    #[error("no reply within {0:?}: the server is stuck or far too slow")]
    Timeout(Duration),
    /// Another error on the socket.
    #[error("socket error: {0}")]
    Io(io::Error),
    /// The RPC layer did not run the call (denied, or not accepted).
    #[error("the server did not run {what}: {header:?}")]
    Rpc {
        /// The procedure.
        what: &'static str,
        /// The reply header.
        header: ReplyHeader,
    },
    /// The procedure ran and failed.
    #[error("{what} failed with status {status} (nfsstat3/mountstat3)")]
    Status {
        /// The procedure.
        what: &'static str,
        /// Its status code.
        status: u32,
    },
    /// A reply that is too short or does not decode.
    #[error("malformed reply to {what}: {source}")]
    Malformed {
        /// The procedure.
        what: &'static str,
        /// Where decoding stopped.
        source: XdrError,
    },
    /// A record larger than any reply we asked for could be.
    #[error("a reply record of at least {size} bytes exceeds the {max} expected")]
    TooLarge {
        /// Bytes announced so far.
        size: usize,
        /// The most a reply may hold.
        max: usize,
    },
    /// A reply whose xid matches no call in flight.
    #[error("a reply with xid {0} matches no call in flight")]
    UnknownXid(u32),
    /// A READ that returned another count than asked for.
    #[error("READ of {want} bytes at {offset} returned {got}")]
    ShortRead {
        /// File offset.
        offset: u64,
        /// Bytes asked for.
        want: u32,
        /// The reply's count (or its data length, if they differ).
        got: u32,
    },
    /// A READ's eof flag that contradicts the file's size.
    #[error("READ at {offset} says eof = {eof}, but the file has {size} bytes")]
    BadEof {
        /// File offset.
        offset: u64,
        /// The flag.
        eof: bool,
        /// The file's size.
        size: u64,
    },
    /// A READ whose data differs from the file.
    #[error("READ at {offset}: wrong data from byte {at} of the reply on")]
    WrongData {
        /// File offset of the READ.
        offset: u64,
        /// First byte (within the reply's data) that differs.
        at: usize,
    },
    /// The load asked for cannot be run on this file.
    #[error("cannot run this load: {0}")]
    BadLoad(String),
    /// Reading the local copy of the file failed.
    #[error("cannot read the local file to check the data: {0}")]
    LocalFile(io::Error),
}

impl ClientError {
    fn from_io(e: io::Error, timeout: Duration) -> ClientError {
        use io::ErrorKind as K;
        match e.kind() {
            K::WouldBlock | K::TimedOut => ClientError::Timeout(timeout),
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                ClientError::Reset(e)
            }
            _ => ClientError::Io(e),
        }
    }
}

/// A server as its `nfs://` URL names it: the NFS and MOUNT addresses and
/// the export path (no portmapper is asked, the URL carries both ports).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The NFS address.
    pub nfs: SocketAddr,
    /// The MOUNT address.
    pub mount: SocketAddr,
    /// The export path, as MNT takes it (`/export`).
    pub export: String,
}

impl Target {
    /// Parses `nfs://HOST/EXPORT?nfsport=N&mountport=M[&...]`, the form
    /// both servers print (other query keys are ignored).
    pub fn from_url(url: &str) -> Result<Target, ClientError> {
        let bad = |why| ClientError::Url {
            url: url.to_string(),
            why,
        };
        let rest = url.strip_prefix("nfs://").ok_or(bad("not nfs://"))?;
        let (place, query) = rest.split_once('?').ok_or(bad("no ports given"))?;
        let slash = place.find('/').ok_or(bad("no export path"))?;
        let (host, export) = place.split_at(slash);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = host.parse().map_err(|_| bad("host is not an IP address"))?;
        let port = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .and_then(|v| v.parse::<u16>().ok())
        };
        let nfs = port("nfsport").ok_or(bad("no nfsport"))?;
        let mount = port("mountport").ok_or(bad("no mountport"))?;
        let export = export.trim_end_matches('/');
        if export.is_empty() {
            return Err(bad("no export path"));
        }
        Ok(Target {
            nfs: SocketAddr::new(ip, nfs),
            mount: SocketAddr::new(ip, mount),
            export: export.to_string(),
        })
    }
}

/// Starts a call record in `out` (cleared): four bytes for the record
/// marker, then the RPC call header. Arguments follow; then
/// [`finish_record`].
pub fn begin_call(out: &mut Vec<u8>, xid: u32, prog: u32, vers: u32, proc_num: u32) {
    out.clear();
    out.extend_from_slice(&[0; 4]);
    let cred = AuthSys::new(b"msgsplice-bench", 0, 0, &[0]).map(Credential::Sys);
    put_call(
        out,
        xid,
        prog,
        vers,
        proc_num,
        &cred.unwrap_or(Credential::None),
    );
}

/// Writes the record marker of the single-fragment record in `out`.
pub fn finish_record(out: &mut [u8]) {
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&(LAST_FRAGMENT | len).to_be_bytes());
}

/// MNT's argument: the path to mount.
pub fn put_mnt_args(out: &mut Vec<u8>, path: &str) {
    out.put_xdr_opaque(path.as_bytes());
}

/// LOOKUP's arguments: the directory's handle and a name in it.
pub fn put_lookup_args(out: &mut Vec<u8>, dir: &[u8], name: &str) {
    out.put_xdr_opaque(dir);
    out.put_xdr_opaque(name.as_bytes());
}

/// READ's arguments: the file's handle, offset and count.
pub fn put_read_args(out: &mut Vec<u8>, fh: &[u8], offset: u64, count: u32) {
    out.put_xdr_opaque(fh);
    bytes::BufMut::put_u64(out, offset);
    bytes::BufMut::put_u32(out, count);
}

/// The xid and results of a reply record whose call ran; `what` names
/// the procedure in errors.
pub fn results<'a>(record: &'a [u8], what: &'static str) -> Result<(u32, &'a [u8]), ClientError> {
    let (xid, header, res) =
        decode_reply(record).map_err(|source| ClientError::Malformed { what, source })?;
    match header {
        ReplyHeader::Accepted(AcceptStat::Success) => Ok((xid, res)),
        header => Err(ClientError::Rpc { what, header }),
    }
}

/// The root handle from MNT's results.
pub fn decode_mnt(res: &[u8]) -> Result<Vec<u8>, ClientError> {
    decode_handle("MOUNT MNT", res)
}

/// The object's handle from LOOKUP's results.
pub fn decode_lookup(res: &[u8]) -> Result<Vec<u8>, ClientError> {
    decode_handle("LOOKUP", res)
}

/// A status, then on success a file handle first in the results (MNT,
/// LOOKUP); the rest of the results is not read.
fn decode_handle(what: &'static str, res: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut d = XdrDecoder::new(res);
    let malformed = |source| ClientError::Malformed { what, source };
    let status = d.u32().map_err(malformed)?;
    if status != 0 {
        return Err(ClientError::Status { what, status });
    }
    Ok(d.opaque(FH_MAX).map_err(malformed)?.to_vec())
}

/// A successful READ's results.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadOk<'a> {
    /// Bytes returned (the count field).
    pub count: u32,
    /// Whether the server says the read reached the end of the file.
    pub eof: bool,
    /// The data.
    pub data: &'a [u8],
}

/// Decodes READ's results (`READ3res`): a failure status is an error.
pub fn decode_read(res: &[u8]) -> Result<ReadOk<'_>, ClientError> {
    let what = "READ";
    let mut d = XdrDecoder::new(res);
    let malformed = |source| ClientError::Malformed { what, source };
    let status = d.u32().map_err(malformed)?;
    if status != 0 {
        return Err(ClientError::Status { what, status });
    }
    if d.bool().map_err(malformed)? {
        d.fixed_opaque(FATTR3_LEN).map_err(malformed)?;
    }
    let count = d.u32().map_err(malformed)?;
    let eof = d.bool().map_err(malformed)?;
    let data = d.opaque(u32::MAX).map_err(malformed)?;
    Ok(ReadOk { count, eof, data })
}

/// One blocking TCP connection to a server: calls out, whole reply
/// records in.
pub struct Connection {
    reader: BufReader<TcpStream>,
    timeout: Duration,
    max_record: usize,
    /// The call being built.
    out: Vec<u8>,
    /// The last reply record, kept for the next.
    record: Vec<u8>,
}

impl Connection {
    /// Connects to `addr` for replies of up to `max_data` bytes of data;
    /// a read that waits longer than `timeout` is a [`ClientError::Timeout`].
    pub fn connect(
        addr: SocketAddr,
        max_data: u32,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let connect = |source| ClientError::Connect { addr, source };
        let sock = TcpStream::connect_timeout(&addr, timeout).map_err(connect)?;
        sock.set_nodelay(true).map_err(connect)?;
        sock.set_read_timeout(Some(timeout)).map_err(connect)?;
        sock.set_write_timeout(Some(timeout)).map_err(connect)?;
        Ok(Connection {
            reader: BufReader::with_capacity(READ_BUFFER, sock),
            timeout,
            max_record: max_data as usize + READ_OVERHEAD,
            out: Vec::with_capacity(256),
            record: Vec::new(),
        })
    }

    fn io(&self, e: io::Error) -> ClientError {
        ClientError::from_io(e, self.timeout)
    }

    /// Sends one call of `proc_num` whose arguments `args` writes.
    pub fn send(
        &mut self,
        xid: u32,
        (prog, vers, proc_num): (u32, u32, u32),
        args: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), ClientError> {
        begin_call(&mut self.out, xid, prog, vers, proc_num);
        args(&mut self.out);
        finish_record(&mut self.out);
        let r = self.reader.get_ref().write_all(&self.out);
        r.map_err(|e| self.io(e))
    }

    /// Reads the next whole reply record (all its fragments).
    pub fn receive(&mut self) -> Result<&[u8], ClientError> {
        self.record.clear();
        loop {
            let mut marker = [0u8; 4];
            let r = self.reader.read_exact(&mut marker);
            r.map_err(|e| self.io(e))?;
            let marker = u32::from_be_bytes(marker);
            let len = (marker & !LAST_FRAGMENT) as usize;
            let at = self.record.len();
            if at + len > self.max_record {
                return Err(ClientError::TooLarge {
                    size: at + len,
                    max: self.max_record,
                });
            }
            self.record.resize(at + len, 0);
            let r = self.reader.read_exact(&mut self.record[at..]);
            r.map_err(|e| self.io(e))?;
            if marker & LAST_FRAGMENT != 0 {
                return Ok(&self.record);
            }
        }
    }

    /// One call and its reply: the results, once the xid matched and the
    /// call ran.
    pub fn call(
        &mut self,
        xid: u32,
        program: (u32, u32, u32),
        what: &'static str,
        args: impl FnOnce(&mut Vec<u8>),
    ) -> Result<&[u8], ClientError> {
        self.send(xid, program, args)?;
        let (got, res) = results(self.receive()?, what)?;
        if got != xid {
            return Err(ClientError::UnknownXid(got));
        }
        Ok(res)
    }
}

/// The program, version and procedure of an NFSv3 READ.
pub const READ_CALL: (u32, u32, u32) = (NFS_PROGRAM, NFS_V3, READ);

/// The handle of `name` in the root of the export: MNT of the export path
/// (on the MOUNT port), then LOOKUP (on the NFS port). Two short
/// connections, closed on return.
pub fn file_handle(target: &Target, name: &str, timeout: Duration) -> Result<Vec<u8>, ClientError> {
    let mut m = Connection::connect(target.mount, 0, timeout)?;
    let res = m.call(1, (MOUNT_PROGRAM, MOUNT_V3, MNT), "MOUNT MNT", |o| {
        put_mnt_args(o, &target.export)
    })?;
    let root = decode_mnt(res)?;
    drop(m);
    let mut n = Connection::connect(target.nfs, 0, timeout)?;
    let res = n.call(2, (NFS_PROGRAM, NFS_V3, LOOKUP), "LOOKUP", |o| {
        put_lookup_args(o, &root, name)
    })?;
    decode_lookup(res)
}

#[cfg(test)]
mod tests;
