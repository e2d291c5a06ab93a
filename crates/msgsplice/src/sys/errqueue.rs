//! `SO_ZEROCOPY` and the socket error queue, where the kernel reports that
//! it is done with the pages of `MSG_ZEROCOPY` sends.
//!
//! References: `Documentation/networking/msg_zerocopy.rst`,
//! `include/uapi/linux/errqueue.h` (`struct sock_extended_err`), `ip(7)`
//! (`IP_RECVERR`), `ipv6(7)` (`IPV6_RECVERR`), `recvmsg(2)` (`MSG_ERRQUEUE`).
//! rustix parses only the ancillary messages it knows (rights, credentials),
//! so this reads the control buffer itself.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SO_ZEROCOPY` from `asm-generic/socket.h` (60 on x86 and arm; libc's
/// Linux module does not export it).
const SO_ZEROCOPY: libc::c_int = 60;
/// `SO_EE_ORIGIN_ZEROCOPY` from `linux/errqueue.h`.
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED`: the kernel copied the data after all.
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

/// One message read from a socket's error queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrQueueMsg {
    /// Zero-copy sends `lo..=hi` (per-socket send counter, wrapping) are
    /// finished with their pages. `copied`: the kernel copied the data
    /// anyway (for instance on local delivery).
    Zerocopy {
        /// First send id of the range.
        lo: u32,
        /// Last send id of the range, inclusive.
        hi: u32,
        /// `SO_EE_CODE_ZEROCOPY_COPIED` was set.
        copied: bool,
    },
    /// Anything else (an ICMP error, a timestamp): not ours to interpret.
    Other {
        /// `ee_errno`.
        errno: u32,
        /// `ee_origin`.
        origin: u8,
    },
}

/// Turns on `SO_ZEROCOPY` (Linux 4.14). Fails with `EOPNOTSUPP` on sockets
/// that do not support it (AF_UNIX), `ENOPROTOOPT` on older kernels.
pub(crate) fn set_zerocopy(fd: BorrowedFd<'_>) -> io::Result<()> {
    super::sockopt::set_int(fd, libc::SOL_SOCKET, SO_ZEROCOPY, 1)
}

/// Reads one message from the error queue without blocking (error-queue
/// reads never block). `Ok(None)`: the queue is empty. `EINTR` is retried.
pub(crate) fn recv_errqueue(fd: BorrowedFd<'_>) -> io::Result<Option<ErrQueueMsg>> {
    // Room for a cmsghdr, a sock_extended_err and an offender address;
    // u64 elements give the alignment cmsghdr needs.
    let mut control = [0u64; 32];
    loop {
        // SAFETY: an all-zero msghdr is valid (no name, no iovec).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_control = control.as_mut_ptr().cast();
        hdr.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `hdr` points at our own control buffer, with its size; no
        // iovec, so the kernel writes only the control buffer.
        let r = unsafe {
            libc::recvmsg(
                fd.as_raw_fd(),
                &mut hdr,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(e),
            }
        }
        return Ok(Some(parse(&hdr)));
    }
}

/// Finds the `sock_extended_err` in a filled-in `msghdr`.
fn parse(hdr: &libc::msghdr) -> ErrQueueMsg {
    let mut other = ErrQueueMsg::Other {
        errno: 0,
        origin: 0,
    };
    // SAFETY: `hdr` was filled by recvmsg; msg_controllen says how much of
    // the control buffer is valid, and the CMSG_* helpers stay inside it.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    while !c.is_null() {
        // SAFETY: CMSG_FIRSTHDR/NXTHDR return a pointer to a whole cmsghdr
        // inside the buffer, or null.
        let cm = unsafe { &*c };
        let ip = cm.cmsg_level == libc::SOL_IP && cm.cmsg_type == libc::IP_RECVERR;
        let ip6 = cm.cmsg_level == libc::SOL_IPV6 && cm.cmsg_type == libc::IPV6_RECVERR;
        let need = std::mem::size_of::<libc::sock_extended_err>();
        // SAFETY: CMSG_DATA only computes the address of `c`'s data; it
        // reads nothing.
        let data_off = unsafe { libc::CMSG_DATA(c) } as usize - c as usize;
        if (ip || ip6) && (cm.cmsg_len as usize) >= data_off + need {
            // SAFETY: the cmsg is long enough to hold the struct (checked);
            // the data may be unaligned for u32, hence read_unaligned.
            let ee: libc::sock_extended_err = unsafe {
                std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::sock_extended_err>())
            };
            if ee.ee_errno == 0 && ee.ee_origin == SO_EE_ORIGIN_ZEROCOPY {
                return ErrQueueMsg::Zerocopy {
                    lo: ee.ee_info,
                    hi: ee.ee_data,
                    copied: ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
                };
            }
            other = ErrQueueMsg::Other {
                errno: ee.ee_errno,
                origin: ee.ee_origin,
            };
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(hdr, c) };
    }
    other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::sendmsg::{IovScratch, MSG_NOSIGNAL, MSG_ZEROCOPY};
    use msgsplice_testkit::sockets::tcp_pair;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    /// Waits until completions cover `want` ids, returning every range seen.
    fn collect(fd: BorrowedFd<'_>, want: u32) -> Vec<(u32, u32, bool)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        while n < want && Instant::now() < deadline {
            match recv_errqueue(fd).unwrap() {
                Some(ErrQueueMsg::Zerocopy { lo, hi, copied }) => {
                    n += hi - lo + 1;
                    got.push((lo, hi, copied));
                }
                Some(other) => panic!("unexpected {other:?}"),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    #[test]
    fn unix_sockets_refuse_zerocopy() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(set_zerocopy(a.as_fd()).is_err());
    }

    #[test]
    fn empty_queue_reads_as_none() {
        let (a, _b) = tcp_pair(false).unwrap();
        assert_eq!(recv_errqueue(a.as_fd()).unwrap(), None);
    }

    /// The kernel facts the completion tracker relies on: each successful
    /// non-empty zero-copy send takes the next id; an empty send takes none;
    /// a send that fails with EPIPE takes none; loopback reports COPIED.
    #[test]
    fn ids_count_successful_nonempty_sends_only() {
        let (a, mut b) = tcp_pair(false).unwrap();
        set_zerocopy(a.as_fd()).unwrap();
        let data = vec![7u8; 64 << 10];
        let mut iov = IovScratch::default();
        let send = |iov: &mut IovScratch, d: &[u8]| {
            let mut batch = iov.batch();
            batch.push(d);
            batch.sendmsg(a.as_fd(), MSG_ZEROCOPY | MSG_NOSIGNAL)
        };
        assert_eq!(send(&mut iov, &data).unwrap(), data.len()); // id 0
        assert_eq!(send(&mut iov, &[]).unwrap(), 0); // no id
        assert_eq!(send(&mut iov, &data).unwrap(), data.len()); // id 1
        let mut sink = vec![0u8; 2 * data.len()];
        b.read_exact(&mut sink).unwrap();
        let got = collect(a.as_fd(), 2);
        let ids: Vec<u32> = got.iter().flat_map(|&(lo, hi, _)| lo..=hi).collect();
        assert_eq!(ids, vec![0, 1], "ranges {got:?}");
        assert!(got.iter().all(|&(_, _, copied)| copied), "loopback copies");

        drop(b);
        a.shutdown(std::net::Shutdown::Write).unwrap();
        let e = send(&mut iov, &data).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(recv_errqueue(a.as_fd()).unwrap(), None, "EPIPE took no id");
    }
}
