//! Portmapper and rpcbind call arguments: decoded from bytes into
//! validated values, and encoded for the client side.
//!
//! Version 2 arguments are a `mapping` (RFC 1833 section 3.1: program,
//! version, protocol, port: four words). Versions 3 and 4 use `rpcb`
//! (section 2.1: program, version, then three strings: netid, universal
//! address, owner). The strings are bounded here ([`MAX_NETID`],
//! [`MAX_UADDR`], [`MAX_OWNER`]; RFC 1833 sets no bound) and checked before
//! they are read, so a length field cannot make the server allocate.

use bytes::BufMut;

use super::{procs, Registration, PMAP_V2, RPCB_V3, RPCB_V4};
use crate::rpc::AcceptStat;
use crate::xdr::{XdrDecoder, XdrError, XdrPut};

/// Longest netid accepted (the known ones have at most four bytes).
pub const MAX_NETID: u32 = 32;
/// Longest universal address accepted; an IPv6 one needs at most 47.
pub const MAX_UADDR: u32 = 64;
/// Longest owner string accepted.
pub const MAX_OWNER: u32 = 255;

/// A version 2 `mapping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// IP protocol number (6 TCP, 17 UDP).
    pub prot: u32,
    /// Port (a word on the wire; only 0 to 65535 are valid ports).
    pub port: u32,
}

impl Mapping {
    fn decode(d: &mut XdrDecoder<'_>) -> Result<Mapping, XdrError> {
        Ok(Mapping {
            prog: d.u32()?,
            vers: d.u32()?,
            prot: d.u32()?,
            port: d.u32()?,
        })
    }

    /// Writes the four words.
    pub fn put<B: BufMut>(&self, b: &mut B) {
        b.put_u32(self.prog);
        b.put_u32(self.vers);
        b.put_u32(self.prot);
        b.put_u32(self.port);
    }
}

/// A version 3/4 `rpcb`, its strings borrowed from the call and bounded,
/// not yet interpreted (an unknown netid is an answer, not an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rpcb<'a> {
    /// Program number.
    pub prog: u32,
    /// Program version.
    pub vers: u32,
    /// Netid (`tcp`, `udp6`, ...); empty means "any" for UNSET and "the
    /// caller's transport" for GETADDR.
    pub netid: &'a [u8],
    /// Universal address (ignored by UNSET and GETADDR).
    pub addr: &'a [u8],
    /// Owner (free text).
    pub owner: &'a [u8],
}

impl<'a> Rpcb<'a> {
    fn decode(d: &mut XdrDecoder<'a>) -> Result<Rpcb<'a>, XdrError> {
        Ok(Rpcb {
            prog: d.u32()?,
            vers: d.u32()?,
            netid: d.string(MAX_NETID)?,
            addr: d.string(MAX_UADDR)?,
            owner: d.string(MAX_OWNER)?,
        })
    }

    /// Writes the `rpcb` (two words and three strings).
    pub fn put<B: BufMut>(&self, b: &mut B) {
        b.put_u32(self.prog);
        b.put_u32(self.vers);
        b.put_xdr_opaque(self.netid);
        b.put_xdr_opaque(self.addr);
        b.put_xdr_opaque(self.owner);
    }

    /// Writes `r` as an `rpcb` (for SET, UNSET and DUMP entries).
    pub fn put_registration<B: BufMut>(r: &Registration, b: &mut B) {
        Rpcb {
            prog: r.program(),
            vers: r.version(),
            netid: r.netid().as_str().as_bytes(),
            addr: r.uaddr().as_bytes(),
            owner: r.owner().as_bytes(),
        }
        .put(b);
    }
}

/// A portmapper or rpcbind call this crate serves, its arguments decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortmapCall<'a> {
    /// NULL, any version.
    Null,
    /// Version 2 SET.
    SetV2(Mapping),
    /// Version 2 UNSET (protocol and port are ignored).
    UnsetV2(Mapping),
    /// Version 2 GETPORT (the port is ignored).
    GetPort(Mapping),
    /// Version 2 DUMP.
    DumpV2,
    /// Version 3/4 SET.
    Set(Rpcb<'a>),
    /// Version 3/4 UNSET.
    Unset(Rpcb<'a>),
    /// Version 3/4 GETADDR, or version 4 GETVERSADDR when `exact`.
    GetAddr {
        /// The query.
        rpcb: Rpcb<'a>,
        /// Only this version will do (GETVERSADDR); otherwise any version of
        /// the program is answered when this one is missing, so the client
        /// learns the range from the server's PROG_MISMATCH.
        exact: bool,
    },
    /// Version 3/4 DUMP.
    Dump,
    /// Version 4 GETADDRLIST: every address of the program version in the
    /// caller's address family (the query's netid and address are ignored).
    GetAddrList(Rpcb<'a>),
}

/// Why a call could not be answered with results.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortmapCallError {
    /// The version does not have the procedure, or it is not served here
    /// (CALLIT, GETTIME, the address conversions, INDIRECT, GETSTAT).
    #[error("portmapper version {vers} procedure {proc_num} is not served")]
    Unavailable {
        /// The version asked.
        vers: u32,
        /// The procedure asked.
        proc_num: u32,
    },
    /// The arguments are malformed (truncated, a string over its bound,
    /// bytes left over).
    #[error("malformed portmapper arguments: {0}")]
    Garbage(#[from] XdrError),
}

impl PortmapCallError {
    /// The RPC status to answer with: PROC_UNAVAIL or GARBAGE_ARGS.
    pub fn accept_stat(&self) -> AcceptStat {
        match self {
            PortmapCallError::Unavailable { .. } => AcceptStat::ProcUnavail,
            PortmapCallError::Garbage(_) => AcceptStat::GarbageArgs,
        }
    }
}

impl<'a> PortmapCall<'a> {
    /// Decodes the arguments of procedure `proc_num` of version `vers`.
    /// Every byte of `args` must be used.
    ///
    /// Costs: no allocation; strings stay borrowed from `args`.
    pub fn decode(vers: u32, proc_num: u32, args: &'a [u8]) -> Result<Self, PortmapCallError> {
        let unavailable = PortmapCallError::Unavailable { vers, proc_num };
        let mut d = XdrDecoder::new(args);
        let call = match (vers, proc_num) {
            (_, procs::NULL) if (PMAP_V2..=RPCB_V4).contains(&vers) => PortmapCall::Null,
            (PMAP_V2, procs::SET) => PortmapCall::SetV2(Mapping::decode(&mut d)?),
            (PMAP_V2, procs::UNSET) => PortmapCall::UnsetV2(Mapping::decode(&mut d)?),
            (PMAP_V2, procs::GETPORT) => PortmapCall::GetPort(Mapping::decode(&mut d)?),
            (PMAP_V2, procs::DUMP) => PortmapCall::DumpV2,
            (RPCB_V3 | RPCB_V4, procs::SET) => PortmapCall::Set(Rpcb::decode(&mut d)?),
            (RPCB_V3 | RPCB_V4, procs::UNSET) => PortmapCall::Unset(Rpcb::decode(&mut d)?),
            (RPCB_V3 | RPCB_V4, procs::GETADDR) => PortmapCall::GetAddr {
                rpcb: Rpcb::decode(&mut d)?,
                exact: false,
            },
            (RPCB_V4, procs::GETVERSADDR) => PortmapCall::GetAddr {
                rpcb: Rpcb::decode(&mut d)?,
                exact: true,
            },
            (RPCB_V3 | RPCB_V4, procs::DUMP) => PortmapCall::Dump,
            (RPCB_V4, procs::GETADDRLIST) => PortmapCall::GetAddrList(Rpcb::decode(&mut d)?),
            _ => return Err(unavailable),
        };
        d.finish()?;
        Ok(call)
    }
}
