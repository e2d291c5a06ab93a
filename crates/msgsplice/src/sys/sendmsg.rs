//! `sendmsg(2)` over a reusable `iovec` array, with any `MSG_*` flag
//! (including `MSG_ZEROCOPY`, which rustix's `SendFlags` does not name).
//!
//! rustix's `sendmsg` takes `&[IoSlice<'a>]`, so a caller that wants to keep
//! one array across calls would have to store borrowed slices past their
//! lifetime. Here the array holds raw `iovec`s and is only ever filled
//! through an [`IovBatch`], which borrows both the array and the data for
//! the same lifetime and empties the array when it goes: no pointer outlives
//! the data it points at, and the array's heap allocation is reused.
//!
//! A send can also carry a destination address ([`RawAddr`]) and one
//! control message ([`Cmsg`]: a UDP GSO segment size, `udp(7)`, or a kTLS
//! record type). Every `msghdr` this crate sends is built in one function
//! here, for the batch and for callers with a few slices
//! ([`sendmsg_slices`]).

use std::io::{self, IoSlice};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The kernel's limit on `iovec`s per call (`UIO_MAXIOV`, `IOV_MAX`).
pub(crate) const IOV_MAX: usize = libc::UIO_MAXIOV as usize;

/// `MSG_ZEROCOPY`: ask the kernel to pin the pages instead of copying them
/// (`Documentation/networking/msg_zerocopy.rst`).
pub(crate) const MSG_ZEROCOPY: i32 = libc::MSG_ZEROCOPY;
/// `MSG_MORE`: more of this message follows (TCP coalesces).
pub(crate) const MSG_MORE: i32 = libc::MSG_MORE;
/// `MSG_NOSIGNAL`: report `EPIPE` instead of raising `SIGPIPE`.
pub(crate) const MSG_NOSIGNAL: i32 = libc::MSG_NOSIGNAL;

/// `UDP_SEGMENT` from `linux/udp.h` (level `SOL_UDP`): the GSO segment
/// size, as a socket option or a per-call control message.
pub(crate) const UDP_SEGMENT: libc::c_int = 103;

/// A destination address in the kernel's layout (`sockaddr_in` or
/// `sockaddr_in6`), built once per send from a [`SocketAddr`].
#[derive(Clone, Copy)]
pub(crate) enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    /// The kernel's form of `a`. No system call.
    pub(crate) fn new(a: SocketAddr) -> RawAddr {
        match a {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn as_raw(&self) -> (*const libc::c_void, libc::socklen_t) {
        match self {
            RawAddr::V4(a) => (
                (a as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            RawAddr::V6(a) => (
                (a as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

/// A reusable array of `iovec`s. Empty whenever no [`IovBatch`] is alive.
#[derive(Default)]
pub(crate) struct IovScratch {
    v: Vec<libc::iovec>,
}

// SAFETY: the array is empty outside an `IovBatch`, and a batch borrows the
// scratch mutably, so no pointer in it is ever visible to another thread.
unsafe impl Send for IovScratch {}
// SAFETY: `&IovScratch` gives no access to the (empty) array.
unsafe impl Sync for IovScratch {}

impl IovScratch {
    /// Starts filling the array; the batch empties it again when dropped.
    pub(crate) fn batch(&mut self) -> IovBatch<'_> {
        self.v.clear();
        IovBatch {
            v: &mut self.v,
            _data: PhantomData,
        }
    }

    /// Reserves room for `n` entries now, so later batches do not allocate.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.v.reserve(n);
    }
}

/// `iovec`s pointing at data borrowed for `'a`.
pub(crate) struct IovBatch<'a> {
    v: &'a mut Vec<libc::iovec>,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> IovBatch<'a> {
    /// Appends one buffer. Allocates only if the array must grow beyond any
    /// earlier batch.
    #[inline]
    pub(crate) fn push(&mut self, data: &'a [u8]) {
        self.v.push(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
    }

    /// Buffers in the batch.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.v.len()
    }

    /// Empties the batch, to fill it again.
    pub(crate) fn clear(&mut self) {
        self.v.clear();
    }

    /// How many page fragments the kernel makes of these buffers when it
    /// pins them for `MSG_ZEROCOPY`: every page each buffer touches, less
    /// one where a buffer starts exactly where the previous one ended inside
    /// the same page (the kernel extends that fragment, `skb_can_coalesce`).
    /// One socket buffer holds at most `MAX_SKB_FRAGS` (17 by default).
    pub(crate) fn pages(&self, page: usize) -> usize {
        let mut n = 0;
        let mut prev_end = None;
        for v in self.v.iter().filter(|v| v.iov_len > 0) {
            let start = v.iov_base as usize;
            let end = start + v.iov_len;
            n += (end - 1) / page - start / page + 1;
            if prev_end == Some(start) && start % page != 0 {
                n -= 1;
            }
            prev_end = Some(end);
        }
        n
    }

    /// One `sendmsg(2)` of every buffer, with `flags` (`MSG_*`). Returns the
    /// bytes the kernel took. Not retried on `EINTR`: the caller decides.
    pub(crate) fn sendmsg(&self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<usize> {
        self.sendmsg_to(fd, flags, None, None)
    }

    /// [`sendmsg`](IovBatch::sendmsg) with an optional destination (for an
    /// unconnected datagram socket, or to override a connected one's peer)
    /// and an optional control message (for instance
    /// [`Cmsg::udp_segment`]).
    pub(crate) fn sendmsg_to(
        &self,
        fd: BorrowedFd<'_>,
        flags: i32,
        dest: Option<&RawAddr>,
        cmsg: Option<&Cmsg>,
    ) -> io::Result<usize> {
        // SAFETY: the entries of `self.v` point at data borrowed for `'a`,
        // which outlives `self` and so the call; `push` made each from a
        // whole slice, so each points at `iov_len` readable bytes.
        unsafe { send_iovecs(fd, self.v, dest, cmsg, flags) }
    }
}

/// One `sendmsg(2)` of `bufs`, with an optional destination and control
/// message: for a caller with a few buffers and no array to reuse (the
/// kTLS control records of the `tls` feature).
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) fn sendmsg_slices(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    dest: Option<&RawAddr>,
    cmsg: Option<&Cmsg>,
    flags: i32,
) -> io::Result<usize> {
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix (its
    // documentation guarantees it), so `bufs` is also a valid array of
    // `bufs.len()` iovecs, borrowed for as long as `bufs`.
    let iov: &[libc::iovec] =
        unsafe { std::slice::from_raw_parts(bufs.as_ptr().cast::<libc::iovec>(), bufs.len()) };
    // SAFETY: each entry is an `IoSlice` made from a whole slice that the
    // borrow of `bufs` keeps alive until the call returns.
    unsafe { send_iovecs(fd, iov, dest, cmsg, flags) }
}

/// The one place a `msghdr` for sending is built: `iov` as the data,
/// `dest` as the name, `cmsg` as the control data; then `sendmsg(2)`.
///
/// # Safety
///
/// Every entry of `iov` must point at `iov_len` readable bytes that stay
/// valid until the call returns.
unsafe fn send_iovecs(
    fd: BorrowedFd<'_>,
    iov: &[libc::iovec],
    dest: Option<&RawAddr>,
    cmsg: Option<&Cmsg>,
    flags: i32,
) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no iovec, no control
    // data); the fields set below are the only ones the kernel reads.
    let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
    hdr.msg_iov = iov.as_ptr().cast_mut();
    hdr.msg_iovlen = iov.len() as _;
    if let Some(d) = dest {
        let (ptr, len) = d.as_raw();
        hdr.msg_name = ptr.cast_mut();
        hdr.msg_namelen = len;
    }
    if let Some(c) = cmsg {
        hdr.msg_control = c.buf.as_ptr().cast_mut().cast();
        hdr.msg_controllen = c.space as _;
    }
    // SAFETY: `hdr` points at `iov` (whose entries the caller vouches for),
    // at `dest` and at `cmsg`'s buffer, all borrowed for this call. The
    // kernel only reads them during the call (`MSG_ZEROCOPY` pins the pages
    // it keeps, and the caller holds that memory until completion).
    let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, flags) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// One control message for `sendmsg`, in a buffer of its own aligned for
/// `cmsghdr`, with room for up to [`Cmsg::MAX_DATA`] bytes of data
/// (`CMSG_SPACE(8)` is 24 bytes on 64-bit Linux, 16 on 32-bit).
pub(crate) struct Cmsg {
    /// u64 elements give the alignment `cmsghdr` needs.
    buf: [u64; 4],
    /// `CMSG_SPACE` of the data: the bytes of `buf` the message uses.
    space: usize,
}

impl Cmsg {
    /// Most data bytes one message carries here.
    pub(crate) const MAX_DATA: usize = 8;

    /// A control message of `level` and `ty` carrying `data`. Panics if
    /// `data` is longer than [`MAX_DATA`](Cmsg::MAX_DATA): the callers
    /// send fixed-size values, so that would be a bug here.
    pub(crate) fn new(level: libc::c_int, ty: libc::c_int, data: &[u8]) -> Cmsg {
        assert!(data.len() <= Self::MAX_DATA, "control data too long");
        let len = data.len() as u32;
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(len) } as usize;
        let mut c = Cmsg { buf: [0; 4], space };
        debug_assert!(c.space <= std::mem::size_of_val(&c.buf));
        let first = c.buf.as_mut_ptr().cast::<libc::cmsghdr>();
        // SAFETY: `buf` is zeroed, aligned for `cmsghdr`, and at least
        // `space` bytes long (CMSG_SPACE of at most MAX_DATA bytes, asserted
        // above), so a whole `cmsghdr` fits at its start (where
        // CMSG_FIRSTHDR puts the first message) and CMSG_DATA of it has
        // room for `data`, which cannot overlap our own buffer.
        unsafe {
            (*first).cmsg_level = level;
            (*first).cmsg_type = ty;
            (*first).cmsg_len = libc::CMSG_LEN(len) as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(first), data.len());
        }
        c
    }

    /// The `UDP_SEGMENT` control message (`udp(7)`, Linux 4.18): the GSO
    /// segment size for one send; 0 turns off a size set on the socket.
    pub(crate) fn udp_segment(size: u16) -> Cmsg {
        Cmsg::new(libc::SOL_UDP, UDP_SEGMENT, &size.to_ne_bytes())
    }
}

impl Drop for IovBatch<'_> {
    fn drop(&mut self) {
        // No pointer may outlive the data it points at.
        self.v.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn sends_every_buffer_in_order_and_reuses_the_array() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut s = IovScratch::default();
        for round in 0..3u8 {
            let one = [round; 3];
            let two = b"-two-".to_vec();
            let mut batch = s.batch();
            batch.push(&one);
            batch.push(&[]);
            batch.push(&two);
            assert_eq!(batch.v.len(), 3);
            assert_eq!(batch.sendmsg(a.as_fd(), MSG_NOSIGNAL).unwrap(), 8);
            drop(batch);
            let mut got = [0u8; 8];
            b.read_exact(&mut got).unwrap();
            assert_eq!(&got[..3], &[round; 3]);
            assert_eq!(&got[3..], b"-two-");
        }
        assert!(s.v.is_empty() && s.v.capacity() >= 3);
    }

    /// A control message built here is one the kernel accepts and acts
    /// on: a file descriptor passed with `SCM_RIGHTS` arrives.
    #[test]
    fn a_control_message_reaches_the_kernel_whole() {
        use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
        use std::io::IoSliceMut;
        use std::mem::MaybeUninit;
        let (a, b) = UnixStream::pair().unwrap();
        let passed = std::fs::File::open("/proc/self/exe").unwrap();
        let fd = passed.as_raw_fd().to_ne_bytes();
        let cmsg = Cmsg::new(libc::SOL_SOCKET, libc::SCM_RIGHTS, &fd);
        let sent = sendmsg_slices(a.as_fd(), &[IoSlice::new(b"x")], None, Some(&cmsg), 0);
        assert_eq!(sent.unwrap(), 1);

        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut anc = RecvAncillaryBuffer::new(&mut space);
        let mut byte = [0u8; 1];
        let r = recvmsg(
            b.as_fd(),
            &mut [IoSliceMut::new(&mut byte)],
            &mut anc,
            RecvFlags::empty(),
        )
        .unwrap();
        assert_eq!((r.bytes, byte), (1, *b"x"));
        let got: Vec<_> = anc
            .drain()
            .filter_map(|m| match m {
                RecvAncillaryMessage::ScmRights(fds) => Some(fds.count()),
                _ => None,
            })
            .collect();
        assert_eq!(got, vec![1], "one descriptor arrived");
    }

    #[test]
    fn counts_pages_as_the_kernel_pins_them() {
        let buf = vec![0u8; 5 * 4096];
        let base = (buf.as_ptr() as usize).next_multiple_of(4096) - buf.as_ptr() as usize;
        let at = |o: usize, n: usize| &buf[base + o..base + o + n];
        let mut s = IovScratch::default();
        let count = |s: &mut IovScratch, parts: &[&[u8]]| {
            let mut b = s.batch();
            for p in parts {
                b.push(p);
            }
            b.pages(4096)
        };
        assert_eq!(count(&mut s, &[at(0, 4096)]), 1);
        assert_eq!(count(&mut s, &[at(100, 4096)]), 2, "unaligned spans two");
        assert_eq!(count(&mut s, &[at(0, 100), at(100, 100)]), 1, "contiguous");
        assert_eq!(count(&mut s, &[at(0, 4096), at(4096, 10)]), 2, "new page");
        assert_eq!(count(&mut s, &[at(0, 100), at(200, 100)]), 2, "a gap");
        assert_eq!(count(&mut s, &[at(0, 0), at(8, 0)]), 0, "empty");
    }
}
