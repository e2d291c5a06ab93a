//! The client side: registering our services with the host's portmapper.
//!
//! The encoders and [`decode_bool_reply`] are sans-IO. [`register_with`],
//! [`unregister_with`] and [`probe`] are the thin blocking driver around
//! them: one TCP connection, record-marked calls, replies read with a
//! [`RecordAssembler`], every step under [`TIMEOUT`].
//!
//! Registration speaks rpcbind version 4 (which has netids, so IPv6 too)
//! and falls back to version 2 when the server does not serve version 4,
//! as an old portmapper does. Each SET is preceded by an UNSET of the same
//! (program, version, netid), as NFS servers do at start: a mapping left by
//! an earlier run that did not clean up would otherwise make SET fail.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BufMut;

use super::call::{Mapping, Rpcb};
use super::{procs, Registration, PMAP_PROGRAM, PMAP_V2, RPCB_V4};
use crate::record::{last_fragment_marker, RecordAssembler, RecordError};
use crate::rpc::{decode_reply, put_call, AcceptStat, Credential, ReplyHeader};
use crate::xdr::{XdrDecoder, XdrError};

/// How long connecting, sending and each reply may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// Largest reply record read (a portmapper's replies are small; a DUMP of
/// many rows is not read by this client).
const MAX_REPLY: usize = 64 * 1024;

/// Why talking to a portmapper failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortmapError {
    /// Connecting, sending or receiving failed; is a portmapper (rpcbind)
    /// running at that address?
    #[error("portmapper at {addr}: {source}")]
    Io {
        /// The portmapper's address.
        addr: SocketAddr,
        /// The failure.
        source: io::Error,
    },
    /// The portmapper closed the connection before replying.
    #[error("portmapper at {0} closed the connection before replying")]
    Closed(SocketAddr),
    /// The reply stream is not valid record marking (or the reply is over
    /// 64 KiB).
    #[error("portmapper sent a bad record stream: {0}")]
    Record(#[from] RecordError),
    /// The reply could not be decoded.
    #[error("portmapper sent a malformed reply: {0}")]
    Malformed(#[from] XdrError),
    /// The reply answers another call.
    #[error("portmapper replied to xid {got:#x}, expected {want:#x}")]
    Xid {
        /// The xid of the call.
        want: u32,
        /// The xid of the reply.
        got: u32,
    },
    /// The call was not run (not a portmapper there, version not served,
    /// or the call was denied).
    #[error("portmapper did not run the call: {0:?}")]
    NotRun(ReplyHeader),
    /// SET answered FALSE: the mapping is taken, the server refuses callers
    /// that are not local, or its table is full.
    #[error("portmapper refused to map program {program} version {version} on {netid}; is another server registered, or is the portmapper not on this host?")]
    Refused {
        /// The program.
        program: u32,
        /// The version.
        version: u32,
        /// The transport.
        netid: super::Netid,
    },
    /// Version 2 cannot express this registration (IPv6).
    #[error("the portmapper speaks only version 2, which cannot map {0} addresses")]
    NeedsRpcbind(super::Netid),
}

/// The mappings an NFSv3 export registers: NFS (program 100003) and MOUNT
/// (program 100005), version 3 each, on TCP at the given addresses, owned
/// by `msgsplice`. The numbers are RFC 1813's.
pub fn nfs_v3_over_tcp(nfs: SocketAddr, mount: SocketAddr) -> [Registration; 2] {
    [
        Registration::tcp(100003, 3, nfs).with_owner("msgsplice"),
        Registration::tcp(100005, 3, mount).with_owner("msgsplice"),
    ]
}

/// Writes a complete NULL call of `vers` (no record marker).
pub fn put_null_call<B: BufMut>(buf: &mut B, xid: u32, vers: u32) {
    put_call(buf, xid, PMAP_PROGRAM, vers, procs::NULL, &Credential::None);
}

/// Writes a complete SET (`unset` false) or UNSET call for `r` in `vers`
/// ([`PMAP_V2`] or 3/4), no record marker. Version 2 can carry only
/// `tcp` and `udp` mappings and no host: the mapping is for every address.
pub fn put_set_call<B: BufMut>(
    buf: &mut B,
    xid: u32,
    vers: u32,
    unset: bool,
    r: &Registration,
) -> Result<(), PortmapError> {
    let proc_num = if unset { procs::UNSET } else { procs::SET };
    if vers == PMAP_V2 {
        if r.netid().is_ipv6() {
            return Err(PortmapError::NeedsRpcbind(r.netid()));
        }
        put_call(buf, xid, PMAP_PROGRAM, vers, proc_num, &Credential::None);
        Mapping {
            prog: r.program(),
            vers: r.version(),
            prot: r.netid().protocol(),
            port: u32::from(r.addr().port()),
        }
        .put(buf);
    } else {
        put_call(buf, xid, PMAP_PROGRAM, vers, proc_num, &Credential::None);
        if unset {
            // UNSET ignores the address; an empty one is what rpcbind sends.
            Rpcb {
                prog: r.program(),
                vers: r.version(),
                netid: r.netid().as_str().as_bytes(),
                addr: b"",
                owner: r.owner().as_bytes(),
            }
            .put(buf);
        } else {
            Rpcb::put_registration(r, buf);
        }
    }
    Ok(())
}

/// Checks a reply record for call `xid` and returns its result bytes.
pub fn decode_success(record: &[u8], xid: u32) -> Result<&[u8], PortmapError> {
    let (got, header, results) = decode_reply(record)?;
    if got != xid {
        return Err(PortmapError::Xid { want: xid, got });
    }
    match header {
        ReplyHeader::Accepted(AcceptStat::Success) => Ok(results),
        other => Err(PortmapError::NotRun(other)),
    }
}

/// Decodes the boolean result of a SET or UNSET reply to call `xid`.
pub fn decode_bool_reply(record: &[u8], xid: u32) -> Result<bool, PortmapError> {
    let mut d = XdrDecoder::new(decode_success(record, xid)?);
    let v = d.bool()?;
    d.finish()?;
    Ok(v)
}

/// A blocking connection to a portmapper.
struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    asm: RecordAssembler,
    /// Bytes read past the end of the last reply.
    pending: Vec<u8>,
    xid: u32,
}

impl Connection {
    fn open(addr: SocketAddr) -> Result<Connection, PortmapError> {
        let io = |source| PortmapError::Io { addr, source };
        let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        // A different first xid per process, so replies to a process that
        // went away are not taken for ours.
        let xid = std::process::id().rotate_left(16);
        Ok(Connection {
            addr,
            stream,
            asm: RecordAssembler::new(MAX_REPLY),
            pending: Vec::new(),
            xid,
        })
    }

    /// Sends the call `write` builds and returns the reply record and its
    /// xid.
    fn call(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), PortmapError>,
    ) -> Result<(Vec<u8>, u32), PortmapError> {
        self.xid = self.xid.wrapping_add(1);
        let mut msg = vec![0; 4];
        write(&mut msg, self.xid)?;
        let marker = last_fragment_marker(msg.len() - 4);
        msg[..4].copy_from_slice(&marker);
        let addr = self.addr;
        let io = |source| PortmapError::Io { addr, source };
        self.stream.write_all(&msg).map_err(io)?;
        Ok((self.read_record()?, self.xid))
    }

    fn read_record(&mut self) -> Result<Vec<u8>, PortmapError> {
        let mut buf = std::mem::take(&mut self.pending);
        let mut filled = buf.len();
        loop {
            let mut input = &buf[..filled];
            while !input.is_empty() {
                match self.asm.push(&mut input)? {
                    Some(record) => {
                        let record = record.to_vec();
                        self.pending = input.to_vec();
                        return Ok(record);
                    }
                    None => continue,
                }
            }
            buf.resize(4096, 0);
            filled = match self.stream.read(&mut buf) {
                Ok(0) => return Err(PortmapError::Closed(self.addr)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(source) => {
                    return Err(PortmapError::Io {
                        addr: self.addr,
                        source,
                    })
                }
            };
        }
    }

    /// One SET or UNSET in `vers`; its boolean answer.
    fn set(&mut self, vers: u32, unset: bool, r: &Registration) -> Result<bool, PortmapError> {
        let (record, xid) = self.call(|b, xid| put_set_call(b, xid, vers, unset, r))?;
        decode_bool_reply(&record, xid)
    }
}

/// True if the error says the portmapper does not serve this version.
fn version_missing(e: &PortmapError) -> bool {
    matches!(
        e,
        PortmapError::NotRun(ReplyHeader::Accepted(
            AcceptStat::ProgMismatch { .. } | AcceptStat::ProgUnavail
        ))
    )
}

/// Registers each of `regs` with the portmapper at `addr` (usually
/// `127.0.0.1:111`), replacing any mapping of the same (program, version,
/// netid). Stops at the first failure; mappings made before it stay.
///
/// Costs: one TCP connection, two round trips per registration (three on
/// the first when falling back to version 2).
pub fn register_with(addr: SocketAddr, regs: &[Registration]) -> Result<(), PortmapError> {
    let mut c = Connection::open(addr)?;
    let mut vers = RPCB_V4;
    for r in regs {
        match c.set(vers, true, r) {
            Ok(_) => {}
            Err(e) if vers == RPCB_V4 && version_missing(&e) => {
                vers = PMAP_V2;
                c.set(vers, true, r)?;
            }
            Err(e) => return Err(e),
        }
        if !c.set(vers, false, r)? {
            return Err(PortmapError::Refused {
                program: r.program(),
                version: r.version(),
                netid: r.netid(),
            });
        }
    }
    Ok(())
}

/// Removes each of `regs` (by program, version and netid) from the
/// portmapper at `addr`. A mapping that was not there is not an error.
/// Returns how many were removed.
///
/// Version 2 cannot remove one transport alone: on an old portmapper the
/// UNSET removes both the `tcp` and the `udp` mapping of the version.
pub fn unregister_with(addr: SocketAddr, regs: &[Registration]) -> Result<usize, PortmapError> {
    let mut c = Connection::open(addr)?;
    let mut vers = RPCB_V4;
    let mut removed = 0;
    for r in regs {
        let done = match c.set(vers, true, r) {
            Err(e) if vers == RPCB_V4 && version_missing(&e) => {
                vers = PMAP_V2;
                c.set(vers, true, r)?
            }
            other => other?,
        };
        removed += usize::from(done);
    }
    Ok(removed)
}

/// Whether a portmapper answers a version 2 NULL call at `addr`.
///
/// `Ok(false)`: nothing listens there, or what listens is an RPC server
/// without the portmapper. Errors are the other failures (a timeout, a
/// reply that is not RPC).
pub fn probe(addr: SocketAddr) -> Result<bool, PortmapError> {
    let mut c = match Connection::open(addr) {
        Ok(c) => c,
        Err(PortmapError::Io { source, .. })
            if source.kind() == io::ErrorKind::ConnectionRefused =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let (record, xid) = c.call(|b, xid| {
        put_null_call(b, xid, PMAP_V2);
        Ok(())
    })?;
    match decode_success(&record, xid) {
        Ok(_) => Ok(true),
        Err(PortmapError::NotRun(ReplyHeader::Accepted(
            AcceptStat::ProgUnavail | AcceptStat::ProgMismatch { .. },
        ))) => Ok(false),
        Err(e) => Err(e),
    }
}
