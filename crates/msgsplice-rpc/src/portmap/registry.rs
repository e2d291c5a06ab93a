//! The table of mappings, and how it answers calls.
//!
//! Version 2 sees the IPv4 `tcp` and `udp` rows as (program, version,
//! protocol, port); versions 3 and 4 see every row as an `rpcb`. A row is
//! unique by (program, version, netid), as RFC 1833 has it: SET of a triple
//! already mapped answers FALSE.
//!
//! Who may change the table: only callers on a loopback address (127/8,
//! `::1`, or an IPv4-mapped loopback), the rule rpcbind applies unless
//! started with `-i`. Anyone may read it. Owners are recorded but not
//! checked: on TCP the caller's user is unknown, so every local caller is
//! trusted alike.
//!
//! Addresses are answered as registered. rpcbind replaces a wildcard host
//! (`0.0.0.0`, as every version 2 SET records) with the address the caller
//! reached it on; a sans-IO table does not know that address, so register
//! the address clients should use.

use std::net::{IpAddr, SocketAddr};

use bytes::BufMut;

use super::call::{Mapping, PortmapCall, Rpcb};
use super::{uaddr, Netid, Registration, DEFAULT_OWNER};
use crate::xdr::XdrPut;

/// Most rows the table holds; a SET beyond it answers FALSE, so a local
/// caller cannot grow the server's memory (or a DUMP reply) without bound.
pub const MAX_REGISTRATIONS: usize = 1024;

/// The portmapper's table.
///
/// Rows are unique by (program, version, netid), at most
/// [`MAX_REGISTRATIONS`] of them. Through [`answer`](Self::answer) only
/// loopback callers may change it, as rpcbind allows by default; owners are
/// recorded, not checked. Addresses are answered as registered: a wildcard
/// host is not replaced by the address the caller reached, as rpcbind does,
/// so register the address clients should use.
#[derive(Debug, Clone, Default)]
pub struct Registrations {
    rows: Vec<Registration>,
}

/// True if a caller at `addr` may SET and UNSET.
pub(super) fn is_local(addr: IpAddr) -> bool {
    addr.to_canonical().is_loopback()
}

impl Registrations {
    /// An empty table.
    pub fn new() -> Registrations {
        Registrations::default()
    }

    /// The rows, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.rows.iter()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True if there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Adds `r` unless its (program, version, netid) is mapped already or
    /// the table is full; says whether it was added.
    pub fn insert(&mut self, r: Registration) -> bool {
        let taken = self.find(r.program(), r.version(), r.netid()).is_some();
        if taken || self.rows.len() >= MAX_REGISTRATIONS {
            return false;
        }
        self.rows.push(r);
        true
    }

    /// Removes the rows of `program` `version` on the netids `on` accepts;
    /// says whether any was removed.
    pub fn remove(&mut self, program: u32, version: u32, on: impl Fn(Netid) -> bool) -> bool {
        let before = self.rows.len();
        self.rows
            .retain(|r| !(r.program() == program && r.version() == version && on(r.netid())));
        self.rows.len() != before
    }

    /// The row of exactly (program, version, netid).
    pub fn find(&self, program: u32, version: u32, netid: Netid) -> Option<&Registration> {
        self.rows
            .iter()
            .find(|r| r.program() == program && r.version() == version && r.netid() == netid)
    }

    /// Answers `call` from a caller at `caller` by writing the procedure's
    /// XDR results into `out` (nothing for NULL). SET and UNSET from a
    /// caller that is not local answer FALSE and change nothing.
    ///
    /// Costs: a scan of the table; SET allocates the new row's owner
    /// string; DUMP and GETADDR format universal addresses (small strings).
    pub fn answer<B: BufMut>(&mut self, call: &PortmapCall<'_>, caller: IpAddr, out: &mut B) {
        match *call {
            PortmapCall::Null => {}
            PortmapCall::SetV2(m) => out.put_xdr_bool(is_local(caller) && self.set_v2(m)),
            PortmapCall::UnsetV2(m) => {
                let v4 = |n| matches!(n, Netid::Tcp | Netid::Udp);
                out.put_xdr_bool(is_local(caller) && self.remove(m.prog, m.vers, v4));
            }
            PortmapCall::GetPort(m) => {
                let port = Netid::from_protocol(m.prot)
                    .and_then(|n| self.lookup(m.prog, m.vers, n, false))
                    .map_or(0, |r| r.addr().port());
                out.put_u32(u32::from(port));
            }
            PortmapCall::DumpV2 => self.dump_v2(out),
            PortmapCall::Set(rpcb) => out.put_xdr_bool(is_local(caller) && self.set(&rpcb)),
            PortmapCall::Unset(rpcb) => {
                out.put_xdr_bool(is_local(caller) && self.unset(&rpcb));
            }
            PortmapCall::GetAddr { rpcb, exact } => {
                let found = self.get_addr(&rpcb, exact, caller);
                out.put_xdr_opaque(found.map(|r| r.uaddr()).unwrap_or_default().as_bytes());
            }
            PortmapCall::Dump => self.dump(out),
            PortmapCall::GetAddrList(rpcb) => self.addr_list(&rpcb, caller, out),
        }
    }

    fn set_v2(&mut self, m: Mapping) -> bool {
        let (Some(netid), Ok(port)) = (Netid::from_protocol(m.prot), u16::try_from(m.port)) else {
            return false;
        };
        // Version 2 has no host: the service listens on every address.
        let addr = SocketAddr::from(([0, 0, 0, 0], port));
        Registration::new(m.prog, m.vers, netid, addr).is_some_and(|r| self.insert(r))
    }

    fn set(&mut self, rpcb: &Rpcb<'_>) -> bool {
        let Some(netid) = Netid::from_name(rpcb.netid) else {
            return false;
        };
        let Some(addr) = std::str::from_utf8(rpcb.addr)
            .ok()
            .and_then(|a| uaddr::parse_uaddr(a, netid).ok())
        else {
            return false;
        };
        let owner = match std::str::from_utf8(rpcb.owner) {
            Ok("") | Err(_) => DEFAULT_OWNER,
            Ok(o) => o,
        };
        Registration::new(rpcb.prog, rpcb.vers, netid, addr)
            .is_some_and(|r| self.insert(r.with_owner(owner)))
    }

    fn unset(&mut self, rpcb: &Rpcb<'_>) -> bool {
        if rpcb.netid.is_empty() {
            return self.remove(rpcb.prog, rpcb.vers, |_| true);
        }
        match Netid::from_name(rpcb.netid) {
            Some(netid) => self.remove(rpcb.prog, rpcb.vers, |n| n == netid),
            None => false,
        }
    }

    fn get_addr(&self, rpcb: &Rpcb<'_>, exact: bool, caller: IpAddr) -> Option<&Registration> {
        // An empty netid means the transport the call came on: TCP, as that
        // is all the crate's server speaks, in the caller's family.
        let netid = if rpcb.netid.is_empty() {
            Netid::tcp_for(SocketAddr::new(caller.to_canonical(), 0))
        } else {
            Netid::from_name(rpcb.netid)?
        };
        self.lookup(rpcb.prog, rpcb.vers, netid, exact)
    }

    /// The row of (program, version, netid); unless `exact`, failing that
    /// a row of another version of the program on that netid, as the
    /// classic portmapper and rpcbind answer: the client then calls it and
    /// learns the versions served from its PROG_MISMATCH.
    fn lookup(
        &self,
        program: u32,
        version: u32,
        netid: Netid,
        exact: bool,
    ) -> Option<&Registration> {
        self.find(program, version, netid).or_else(|| {
            let any = |r: &&Registration| r.program() == program && r.netid() == netid;
            (!exact).then(|| self.rows.iter().find(any))?
        })
    }

    /// `pmaplist`: a linked list as XDR optional data, each entry preceded
    /// by TRUE, the end by FALSE.
    fn dump_v2<B: BufMut>(&self, out: &mut B) {
        for r in self.rows.iter().filter(|r| !r.netid().is_ipv6()) {
            out.put_xdr_bool(true);
            Mapping {
                prog: r.program(),
                vers: r.version(),
                prot: r.netid().protocol(),
                port: u32::from(r.addr().port()),
            }
            .put(out);
        }
        out.put_xdr_bool(false);
    }

    /// `rpcblist_ptr`: the same list shape with `rpcb` entries.
    fn dump<B: BufMut>(&self, out: &mut B) {
        for r in &self.rows {
            out.put_xdr_bool(true);
            Rpcb::put_registration(r, out);
        }
        out.put_xdr_bool(false);
    }

    /// `rpcb_entry_list_ptr`: the same list shape with `rpcb_entry`s
    /// (address, netid, transport semantics, protocol family, protocol).
    fn addr_list<B: BufMut>(&self, rpcb: &Rpcb<'_>, caller: IpAddr, out: &mut B) {
        /// `NC_TPI_CLTS` and `NC_TPI_COTS_ORD` of netconfig(5).
        const CLTS: u32 = 1;
        const COTS_ORD: u32 = 3;
        let v6 = caller.to_canonical().is_ipv6();
        let rows = self.rows.iter().filter(|r| {
            r.program() == rpcb.prog && r.version() == rpcb.vers && r.netid().is_ipv6() == v6
        });
        for r in rows {
            let tcp = r.netid().protocol() == super::IPPROTO_TCP;
            out.put_xdr_bool(true);
            out.put_xdr_opaque(r.uaddr().as_bytes());
            out.put_xdr_opaque(r.netid().as_str().as_bytes());
            out.put_u32(if tcp { COTS_ORD } else { CLTS });
            out.put_xdr_opaque(if v6 { b"inet6" } else { b"inet" });
            out.put_xdr_opaque(if tcp { b"tcp" } else { b"udp" });
        }
        out.put_xdr_bool(false);
    }
}
