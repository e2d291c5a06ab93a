//! Client rules: which addresses may use an export.

use std::net::{IpAddr, Ipv4Addr};

/// One `clients=` entry: an address, or a network in CIDR form
/// (`192.0.2.0/24`, `2001:db8::/32`).
///
/// An IPv4-mapped IPv6 rule (`::ffff:10.0.0.0/104`) is stored as the IPv4
/// rule it means, and IPv4-mapped callers are matched as IPv4, so the two
/// spellings of an IPv4 client are one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientRule {
    net: IpAddr,
    prefix: u8,
}

/// Why a client rule could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientRuleError {
    /// The address part is not an IPv4 or IPv6 address.
    #[error("{0:?} is not an IP address (host names are not resolved)")]
    BadAddress(String),
    /// The prefix length is not a number within the family's bits.
    #[error("prefix length {0:?} is not 0 to {1}")]
    BadPrefix(String, u8),
    /// Bits are set after the prefix: the network is ambiguous.
    #[error("{given} has host bits set; did you mean {meant}?")]
    HostBits {
        /// The rule as written.
        given: String,
        /// The network with the host bits cleared.
        meant: String,
    },
}

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The mask of the top `prefix` bits of a `width`-bit address.
fn mask(prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let all = u128::MAX >> (128 - width);
    all & (u128::MAX << (width - prefix))
}

impl ClientRule {
    /// Reads `ADDR` or `ADDR/BITS`. An address alone is a host (/32 or
    /// /128).
    pub fn parse(text: &str) -> Result<ClientRule, ClientRuleError> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| ClientRuleError::BadAddress(addr.to_owned()))?;
        let (_, width) = bits(ip);
        let prefix = match prefix {
            None => width,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= width && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(ClientRuleError::BadPrefix(p.to_owned(), width)),
            },
        };
        let rule = ClientRule::canonical(ip, prefix);
        let (value, width) = bits(rule.net);
        if value & !mask(rule.prefix, width) != 0 {
            let meant = ClientRule {
                net: from_bits(value & mask(rule.prefix, width), rule.net),
                prefix: rule.prefix,
            };
            return Err(ClientRuleError::HostBits {
                given: text.to_owned(),
                meant: meant.to_string(),
            });
        }
        Ok(rule)
    }

    /// An IPv4-mapped network of at least 96 bits becomes its IPv4 form.
    fn canonical(ip: IpAddr, prefix: u8) -> ClientRule {
        match ip {
            IpAddr::V6(a) if prefix >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => ClientRule {
                    net: IpAddr::V4(v4),
                    prefix: prefix - 96,
                },
                None => ClientRule { net: ip, prefix },
            },
            _ => ClientRule { net: ip, prefix },
        }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// True if `addr` is in this network. An IPv4-mapped IPv6 address is
    /// matched as the IPv4 address it carries; otherwise families never
    /// match each other.
    pub fn matches(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        if addr.is_ipv4() != self.net.is_ipv4() {
            return false;
        }
        let (a, width) = bits(addr);
        let (n, _) = bits(self.net);
        (a ^ n) & mask(self.prefix, width) == 0
    }
}

fn from_bits(value: u128, like: IpAddr) -> IpAddr {
    match like {
        // The value came from a 32-bit address with bits cleared.
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
        IpAddr::V6(_) => IpAddr::V6(value.into()),
    }
}

impl std::fmt::Display for ClientRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> ClientRule {
        ClientRule::parse(s).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_match_their_members_only() {
        let r = rule("192.0.2.0/24");
        assert!(r.matches(ip("192.0.2.0")));
        assert!(r.matches(ip("192.0.2.255")));
        assert!(!r.matches(ip("192.0.3.1")));
        assert!(!r.matches(ip("::1")));
        // IPv4-mapped callers are IPv4 callers.
        assert!(r.matches(ip("::ffff:192.0.2.9")));
        assert!(!r.matches(ip("::ffff:192.0.3.9")));

        let h = rule("10.1.2.3");
        assert_eq!(h.prefix(), 32);
        assert!(h.matches(ip("10.1.2.3")) && !h.matches(ip("10.1.2.4")));

        let all4 = rule("0.0.0.0/0");
        assert!(all4.matches(ip("8.8.8.8")) && !all4.matches(ip("2001:db8::1")));
        let all6 = rule("::/0");
        assert!(all6.matches(ip("2001:db8::1")) && !all6.matches(ip("8.8.8.8")));

        let r6 = rule("2001:db8::/32");
        assert!(r6.matches(ip("2001:db8:ffff::1")));
        assert!(!r6.matches(ip("2001:db9::1")));
        let odd = rule("10.0.0.0/9");
        assert!(odd.matches(ip("10.127.255.255")) && !odd.matches(ip("10.128.0.0")));
    }

    #[test]
    fn mapped_rules_are_ipv4_rules() {
        let r = rule("::ffff:10.0.0.0/104");
        assert_eq!(r, rule("10.0.0.0/8"));
        assert!(r.matches(ip("10.9.9.9")));
        assert_eq!(rule("::ffff:10.0.0.1"), rule("10.0.0.1/32"));
        assert_eq!(rule("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
    }

    #[test]
    fn bad_rules_are_explained() {
        use ClientRuleError::*;
        assert!(matches!(
            ClientRule::parse("host.example"),
            Err(BadAddress(_))
        ));
        assert!(matches!(ClientRule::parse(""), Err(BadAddress(_))));
        assert!(matches!(
            ClientRule::parse("10.0.0.0/33"),
            Err(BadPrefix(..))
        ));
        assert!(matches!(ClientRule::parse("10.0.0.0/"), Err(BadPrefix(..))));
        assert!(matches!(
            ClientRule::parse("10.0.0.0/+8"),
            Err(BadPrefix(..))
        ));
        assert!(matches!(ClientRule::parse("::/129"), Err(BadPrefix(..))));
        assert_eq!(
            ClientRule::parse("10.1.2.3/8"),
            Err(HostBits {
                given: "10.1.2.3/8".into(),
                meant: "10.0.0.0/8".into()
            })
        );
        assert!(matches!(
            ClientRule::parse("2001:db8::1/32"),
            Err(HostBits { .. })
        ));
    }
}
