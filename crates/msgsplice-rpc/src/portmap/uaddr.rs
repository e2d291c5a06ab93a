//! Universal addresses (RFC 5665 section 5.2.3; used by rpcbind, RFC 1833).
//!
//! An IP transport address is written as the host's usual text form
//! followed by the port as two decimal bytes: `127.0.0.1.8.1` is
//! 127.0.0.1 port 2049 (8 * 256 + 1), `::1.0.111` is `[::1]:111`. The
//! high byte comes first. Parsing is strict: each port byte is one to three
//! ASCII digits with a value up to 255, and the host must parse as an
//! address of the family the netid names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::Netid;

/// Why a universal address could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UaddrError {
    /// Fewer than two port bytes after the host.
    #[error("universal address {0:?} has no \".p1.p2\" port suffix")]
    NoPort(String),
    /// A port byte is not a decimal number from 0 to 255.
    #[error("universal address {0:?} has a port byte that is not 0 to 255")]
    BadPort(String),
    /// The host part is not an address of the netid's family.
    #[error("universal address {addr:?} does not name an {family} host")]
    BadHost {
        /// The address as given.
        addr: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
}

/// The universal address of `addr` (`h1.h2.h3.h4.p1.p2` or `IPv6.p1.p2`).
///
/// Costs: one small string allocation.
pub fn format_uaddr(addr: SocketAddr) -> String {
    let port = addr.port();
    format!("{}.{}.{}", addr.ip(), port >> 8, port & 0xff)
}

/// Parses `text` as a universal address of `netid`'s family.
///
/// An IPv6 netid (`tcp6`, `udp6`) accepts any IPv6 text form, including
/// the IPv4-mapped `::ffff:1.2.3.4`; an IPv4 netid accepts only dotted
/// quads. Scope ids (`%eth0`) are refused: a universal address has none.
pub fn parse_uaddr(text: &str, netid: Netid) -> Result<SocketAddr, UaddrError> {
    let no_port = || UaddrError::NoPort(text.to_owned());
    let (rest, lo) = text.rsplit_once('.').ok_or_else(no_port)?;
    let (host, hi) = rest.rsplit_once('.').ok_or_else(no_port)?;
    let byte = |s: &str| -> Result<u16, UaddrError> {
        let ok = (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        match s.parse::<u16>() {
            Ok(v) if ok && v <= 255 => Ok(v),
            _ => Err(UaddrError::BadPort(text.to_owned())),
        }
    };
    let port = byte(hi)? << 8 | byte(lo)?;
    let ip = if netid.is_ipv6() {
        host.parse::<Ipv6Addr>().map(IpAddr::V6).ok()
    } else {
        host.parse::<Ipv4Addr>().map(IpAddr::V4).ok()
    };
    let ip = ip.ok_or_else(|| UaddrError::BadHost {
        addr: text.to_owned(),
        family: if netid.is_ipv6() { "IPv6" } else { "IPv4" },
    })?;
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_round_trips() {
        let a: SocketAddr = "127.0.0.1:2049".parse().unwrap();
        assert_eq!(format_uaddr(a), "127.0.0.1.8.1");
        assert_eq!(parse_uaddr("127.0.0.1.8.1", Netid::Tcp), Ok(a));
        let b: SocketAddr = "10.1.2.3:111".parse().unwrap();
        assert_eq!(format_uaddr(b), "10.1.2.3.0.111");
        assert_eq!(
            parse_uaddr("0.0.0.0.255.255", Netid::Udp).unwrap().port(),
            65535
        );
        assert_eq!(parse_uaddr("0.0.0.0.0.0", Netid::Tcp).unwrap().port(), 0);
    }

    #[test]
    fn ipv6_round_trips() {
        let a: SocketAddr = "[::1]:111".parse().unwrap();
        assert_eq!(format_uaddr(a), "::1.0.111");
        assert_eq!(parse_uaddr("::1.0.111", Netid::Tcp6), Ok(a));
        let b: SocketAddr = "[fe80::1:2]:20048".parse().unwrap();
        assert_eq!(format_uaddr(b), "fe80::1:2.78.80");
        assert_eq!(parse_uaddr("fe80::1:2.78.80", Netid::Udp6), Ok(b));
        // The IPv4-mapped form keeps its dotted tail.
        let m = parse_uaddr("::ffff:10.0.0.1.8.1", Netid::Tcp6).unwrap();
        assert_eq!(m, "[::ffff:10.0.0.1]:2049".parse().unwrap());
        assert_eq!(format_uaddr(m), "::ffff:10.0.0.1.8.1");
        assert_eq!(parse_uaddr("::.0.0", Netid::Tcp6).unwrap().port(), 0);
    }

    #[test]
    fn bad_addresses_are_refused() {
        use UaddrError::*;
        let bad = |s: &str, n| parse_uaddr(s, n).unwrap_err();
        assert!(matches!(bad("", Netid::Tcp), NoPort(_)));
        assert!(matches!(bad("127", Netid::Tcp), NoPort(_)));
        assert!(matches!(bad("127.1", Netid::Tcp), NoPort(_)));
        assert!(matches!(bad("127.0.0.1.8", Netid::Tcp), BadHost { .. }));
        assert!(matches!(bad("127.0.0.1.256.1", Netid::Tcp), BadPort(_)));
        assert!(matches!(bad("127.0.0.1.8.+1", Netid::Tcp), BadPort(_)));
        assert!(matches!(bad("127.0.0.1.8.0001", Netid::Tcp), BadPort(_)));
        assert!(matches!(bad("127.0.0.1.8.", Netid::Tcp), BadPort(_)));
        assert!(matches!(bad("127.0.0.1.-1.1", Netid::Tcp), BadPort(_)));
        assert!(matches!(bad("::1.0.111", Netid::Tcp), BadHost { .. }));
        assert!(matches!(
            bad("127.0.0.1.0.111", Netid::Tcp6),
            BadHost { .. }
        ));
        assert!(matches!(
            bad("fe80::1%eth0.0.111", Netid::Tcp6),
            BadHost { .. }
        ));
        assert!(matches!(bad("1.2.3.4.5.0.111", Netid::Tcp), BadHost { .. }));
        assert!(matches!(bad("localhost.0.111", Netid::Tcp), BadHost { .. }));
    }
}
