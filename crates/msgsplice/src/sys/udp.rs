//! The UDP socket options rustix does not name: the GSO segment size set on
//! a socket (`UDP_SEGMENT`, `udp(7)`), and whether the socket asked for
//! extended errors (`IP_RECVERR`, `IPV6_RECVERR`), which changes what a
//! failed send means for zero-copy bookkeeping.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::sendmsg::UDP_SEGMENT;

/// `getsockopt(fd, level, name)` of an `int`.
fn get_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: passes a pointer to a live c_int and its exact size; the
    // kernel writes at most `len` bytes and updates `len`.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

/// The GSO segment size set on the socket with `setsockopt(UDP_SEGMENT)`
/// (0: none). It applies to every send that carries no `UDP_SEGMENT`
/// control message of its own.
pub(crate) fn udp_segment(fd: BorrowedFd<'_>) -> io::Result<u16> {
    get_int(fd, libc::SOL_UDP, UDP_SEGMENT).map(|v| v.clamp(0, u16::MAX.into()) as u16)
}

/// Sets the socket's own GSO segment size (`setsockopt(UDP_SEGMENT)`; 0
/// turns it off). Sends without a `UDP_SEGMENT` control message use it.
pub(crate) fn set_udp_segment(fd: BorrowedFd<'_>, segment: u16) -> io::Result<()> {
    let v = libc::c_int::from(segment);
    // SAFETY: passes a pointer to a live c_int and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            UDP_SEGMENT,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
        let v = libc::c_int::from(on);
        // SAFETY: a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Test support: moves the calling thread into a new, unnamed network
/// namespace (needs root). It holds only a loopback device, and disappears
/// with the thread and its sockets, so nothing is left to clean up.
#[cfg(test)]
pub(crate) fn enter_private_netns() -> io::Result<()> {
    // SAFETY: only the network namespace is unshared; the file-descriptor
    // table (the hazard `unshare_unsafe` documents) stays shared.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    fn set_int(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, v: libc::c_int) {
        // SAFETY: a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                level,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
    }

    #[test]
    fn reads_what_was_set() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(udp_segment(s.as_fd()).unwrap(), 0);
        assert!(!recverr(s.as_fd(), false).unwrap());
        set_udp_segment(s.as_fd(), 1200).unwrap();
        set_int(s.as_fd(), libc::SOL_IP, libc::IP_RECVERR, 1);
        assert_eq!(udp_segment(s.as_fd()).unwrap(), 1200);
        assert!(recverr(s.as_fd(), false).unwrap());

        let s6 = UdpSocket::bind("[::1]:0").unwrap();
        assert!(!recverr(s6.as_fd(), true).unwrap());
        set_int(s6.as_fd(), libc::SOL_IPV6, libc::IPV6_RECVERR, 1);
        assert!(recverr(s6.as_fd(), true).unwrap());
    }
}
