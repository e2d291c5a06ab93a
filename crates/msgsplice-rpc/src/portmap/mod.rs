//! The portmapper and rpcbind protocols (RFC 1833), sans-IO.
//!
//! An ONC RPC client that knows a program number but not a port asks the
//! host's portmapper, program 100000 on port 111. Version 2 (RFC 1833
//! section 3, the original "portmapper") maps (program, version, protocol)
//! to a port, with the protocol as an IP protocol number (6 = TCP,
//! 17 = UDP). Versions 3 and 4 ("rpcbind", RFC 1833 section 2) map
//! (program, version, netid) to a *universal address*, a string such as
//! `127.0.0.1.8.1` that carries the host and the port (see [`uaddr`]), so
//! they cover IPv6 (`tcp6`, `udp6`) too. All versions have NULL, SET,
//! UNSET, a lookup (GETPORT, GETADDR) and DUMP; SET and UNSET are meant
//! for services on the same host only. Version 4 adds GETVERSADDR and
//! GETADDRLIST, served here too. CALLIT (a forwarded call, meant for UDP
//! broadcast and a known amplifier), GETTIME, the address conversions,
//! INDIRECT and GETSTAT answer PROC_UNAVAIL.
//!
//! The layers here follow the rest of the crate:
//!
//! - [`uaddr`]: universal address text, both ways.
//! - [`Registration`] and [`Netid`]: one validated mapping.
//! - [`PortmapCall`]: a call's arguments decoded and validated from bytes;
//!   malformed arguments are a [`PortmapCallError`] that maps to
//!   GARBAGE_ARGS, procedures not served map to PROC_UNAVAIL.
//! - [`Registrations`]: the table, which answers a [`PortmapCall`] by
//!   writing the XDR results into any [`bytes::BufMut`]. Only loopback
//!   callers may change it (the caller's address is a parameter).
//! - [`client`]: the other side: SET/UNSET calls to a system rpcbind for
//!   our own services, over a blocking TCP connection with a timeout.
//! - [`PortmapProgram`]: the adapter that serves the table with the
//!   crate's RPC server.
//! - [`Portmapper`]: the startup step of an export: register with the
//!   system's rpcbind, or serve the built-in portmapper, or neither
//!   ([`PortmapMode`]), and undo it at shutdown.

mod call;
pub mod client;
mod program;
mod registry;
mod startup;
pub mod uaddr;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;

pub use call::{Mapping, PortmapCall, PortmapCallError, Rpcb, MAX_NETID, MAX_OWNER, MAX_UADDR};
pub use client::{nfs_v3_over_tcp, probe, register_with, unregister_with, PortmapError};
pub use program::PortmapProgram;
pub use registry::{Registrations, MAX_REGISTRATIONS};
pub use startup::{PortmapMode, PortmapOutcome, PortmapStartError, Portmapper};

/// The portmapper's program number.
pub const PMAP_PROGRAM: u32 = 100000;
/// The portmapper's well-known port.
pub const PMAP_PORT: u16 = 111;
/// Portmapper version 2 (RFC 1833 section 3).
pub const PMAP_V2: u32 = 2;
/// rpcbind version 3 (RFC 1833 section 2).
pub const RPCB_V3: u32 = 3;
/// rpcbind version 4 (RFC 1833 section 2).
pub const RPCB_V4: u32 = 4;
/// The IP protocol number of TCP, as version 2 names it.
pub const IPPROTO_TCP: u32 = 6;
/// The IP protocol number of UDP, as version 2 names it.
pub const IPPROTO_UDP: u32 = 17;

/// Procedure numbers. Versions 2, 3 and 4 share 0 to 5; the rest are
/// version 3 and 4 only.
pub mod procs {
    /// Does nothing; answers to show the server is there.
    pub const NULL: u32 = 0;
    /// Adds a mapping.
    pub const SET: u32 = 1;
    /// Removes a mapping.
    pub const UNSET: u32 = 2;
    /// Looks a mapping up (version 2: GETPORT; versions 3 and 4: GETADDR).
    pub const GETPORT: u32 = 3;
    /// Version 3 and 4 name of procedure 3.
    pub const GETADDR: u32 = 3;
    /// Lists every mapping.
    pub const DUMP: u32 = 4;
    /// Forwards a call to another program (not served here).
    pub const CALLIT: u32 = 5;
    /// Version 4: GETADDR for exactly the version asked.
    pub const GETVERSADDR: u32 = 9;
    /// Version 4: every address of a program version.
    pub const GETADDRLIST: u32 = 11;
}

/// A transport, as rpcbind names it (its "netid"). Only the IP transports
/// are known here; a local (`unix`) netid has no universal address of the
/// form [`uaddr`] handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Netid {
    /// TCP over IPv4.
    Tcp,
    /// UDP over IPv4.
    Udp,
    /// TCP over IPv6.
    Tcp6,
    /// UDP over IPv6.
    Udp6,
}

impl Netid {
    /// The name on the wire: `tcp`, `udp`, `tcp6`, `udp6`.
    pub fn as_str(self) -> &'static str {
        match self {
            Netid::Tcp => "tcp",
            Netid::Udp => "udp",
            Netid::Tcp6 => "tcp6",
            Netid::Udp6 => "udp6",
        }
    }

    /// The netid named `name`, if it is one of the four.
    pub fn from_name(name: &[u8]) -> Option<Netid> {
        match name {
            b"tcp" => Some(Netid::Tcp),
            b"udp" => Some(Netid::Udp),
            b"tcp6" => Some(Netid::Tcp6),
            b"udp6" => Some(Netid::Udp6),
            _ => None,
        }
    }

    /// The IPv4 netid of a version 2 protocol number (6 or 17).
    pub fn from_protocol(prot: u32) -> Option<Netid> {
        match prot {
            IPPROTO_TCP => Some(Netid::Tcp),
            IPPROTO_UDP => Some(Netid::Udp),
            _ => None,
        }
    }

    /// The IP protocol number (6 or 17).
    pub fn protocol(self) -> u32 {
        match self {
            Netid::Tcp | Netid::Tcp6 => IPPROTO_TCP,
            Netid::Udp | Netid::Udp6 => IPPROTO_UDP,
        }
    }

    /// True for `tcp6` and `udp6`.
    pub fn is_ipv6(self) -> bool {
        matches!(self, Netid::Tcp6 | Netid::Udp6)
    }

    /// The TCP netid of `addr`'s family.
    pub fn tcp_for(addr: SocketAddr) -> Netid {
        if addr.is_ipv6() {
            Netid::Tcp6
        } else {
            Netid::Tcp
        }
    }
}

impl std::fmt::Display for Netid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mapping: program and version served at an address on a transport,
/// and who registered it. The address family always matches the netid's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    program: u32,
    version: u32,
    netid: Netid,
    addr: SocketAddr,
    owner: String,
}

/// The owner recorded for registrations this crate makes, and for version
/// 2 SETs (which carry no owner).
pub const DEFAULT_OWNER: &str = "unknown";

impl Registration {
    /// `program` `version` at `addr` on `netid`, owned by
    /// [`DEFAULT_OWNER`]. `None` if the address family is not the netid's
    /// (an IPv6 address on `tcp`, ...).
    pub fn new(program: u32, version: u32, netid: Netid, addr: SocketAddr) -> Option<Registration> {
        (addr.is_ipv6() == netid.is_ipv6()).then(|| Registration {
            program,
            version,
            netid,
            addr,
            owner: DEFAULT_OWNER.to_owned(),
        })
    }

    /// `program` `version` over TCP at `addr` (`tcp` or `tcp6` by family).
    pub fn tcp(program: u32, version: u32, addr: SocketAddr) -> Registration {
        Registration {
            program,
            version,
            netid: Netid::tcp_for(addr),
            addr,
            owner: DEFAULT_OWNER.to_owned(),
        }
    }

    /// The same registration with another owner, cut to [`MAX_OWNER`]
    /// bytes (at a character boundary).
    pub fn with_owner(mut self, owner: &str) -> Registration {
        let mut end = owner.len().min(MAX_OWNER as usize);
        while !owner.is_char_boundary(end) {
            end -= 1;
        }
        self.owner = owner[..end].to_owned();
        self
    }

    /// The program number.
    pub fn program(&self) -> u32 {
        self.program
    }

    /// The program version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The transport.
    pub fn netid(&self) -> Netid {
        self.netid
    }

    /// Where the program listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Who registered it (free text; rpcbind records a user name or
    /// `unknown`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The address as a universal address (allocates a short string).
    pub fn uaddr(&self) -> String {
        uaddr::format_uaddr(self.addr)
    }
}
