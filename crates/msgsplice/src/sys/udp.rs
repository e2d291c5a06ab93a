//! The UDP socket options rustix does not name: the GSO segment size set on
//! a socket (`UDP_SEGMENT`, `udp(7)`), and whether the socket asked for
//! extended errors (`IP_RECVERR`, `IPV6_RECVERR`), which changes what a
//! failed send means for zero-copy bookkeeping.

use std::io;
use std::os::fd::BorrowedFd;

use super::sendmsg::UDP_SEGMENT;
use super::sockopt::{get_int, set_int};

/// The GSO segment size set on the socket with `setsockopt(UDP_SEGMENT)`
/// (0: none). It applies to every send that carries no `UDP_SEGMENT`
/// control message of its own.
pub(crate) fn udp_segment(fd: BorrowedFd<'_>) -> io::Result<u16> {
    get_int(fd, libc::SOL_UDP, UDP_SEGMENT).map(|v| v.clamp(0, u16::MAX.into()) as u16)
}

/// Sets the socket's own GSO segment size (`setsockopt(UDP_SEGMENT)`; 0
/// turns it off). Sends without a `UDP_SEGMENT` control message use it.
pub(crate) fn set_udp_segment(fd: BorrowedFd<'_>, segment: u16) -> io::Result<()> {
    set_int(fd, libc::SOL_UDP, UDP_SEGMENT, libc::c_int::from(segment))
}

/// True if the socket asked for extended errors: `IP_RECVERR`, or for an
/// IPv6 socket `IPV6_RECVERR` or `IP_RECVERR` (which governs its sends to
/// IPv4-mapped addresses). With it, a UDP send whose packet a queue drops
/// fails with `ENOBUFS` although the kernel already numbered it for
/// zero-copy (`udp_send_skb` in `net/ipv4/udp.c`).
pub(crate) fn recverr(fd: BorrowedFd<'_>, v6: bool) -> io::Result<bool> {
    let ip = get_int(fd, libc::SOL_IP, libc::IP_RECVERR)? != 0;
    if ip || !v6 {
        return Ok(ip);
    }
    Ok(get_int(fd, libc::SOL_IPV6, libc::IPV6_RECVERR)? != 0)
}

/// Test support: sets `IP_RECVERR` (and `IPV6_RECVERR` on an IPv6 socket).
#[cfg(test)]
pub(crate) fn set_recverr(fd: BorrowedFd<'_>, v6: bool, on: bool) -> io::Result<()> {
    let mut opts = vec![(libc::SOL_IP, libc::IP_RECVERR)];
    if v6 {
        opts.push((libc::SOL_IPV6, libc::IPV6_RECVERR));
    }
    for (level, name) in opts {
        set_int(fd, level, name, libc::c_int::from(on))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    #[test]
    fn reads_what_was_set() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_segment(s.as_fd()).unwrap(), 0);
        assert!(!recverr(s.as_fd(), false).unwrap());
        set_udp_segment(s.as_fd(), 1200).unwrap();
        set_int(s.as_fd(), libc::SOL_IP, libc::IP_RECVERR, 1).unwrap();
        assert_eq!(udp_segment(s.as_fd()).unwrap(), 1200);
        assert!(recverr(s.as_fd(), false).unwrap());

        let s6 = UdpSocket::bind("[::1]:0").unwrap();
        assert!(!recverr(s6.as_fd(), true).unwrap());
        set_int(s6.as_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR, 1).unwrap();
        assert!(recverr(s6.as_fd(), true).unwrap());
    }
}
