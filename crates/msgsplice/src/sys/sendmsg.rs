//! `sendmsg(2)` over a reusable `iovec` array, with any `MSG_*` flag
//! (including `MSG_ZEROCOPY`, which rustix's `SendFlags` does not name).
//!
//! rustix's `sendmsg` takes `&[IoSlice<'a>]`, so a caller that wants to keep
//! one array across calls would have to store borrowed slices past their
//! lifetime. Here the array holds raw `iovec`s and is only ever filled
//! through an [`IovBatch`], which borrows both the array and the data for
//! the same lifetime and empties the array when it goes: no pointer outlives
//! the data it points at, and the array's heap allocation is reused.

use std::io;
use std::marker::PhantomData;
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
    pub(crate) fn push(&mut self, data: &'a [u8]) {
        self.v.push(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
    }

    /// One `sendmsg(2)` of every buffer, with `flags` (`MSG_*`). Returns the
    /// bytes the kernel took. Not retried on `EINTR`: the caller decides.
    pub(crate) fn sendmsg(&self, fd: BorrowedFd<'_>, flags: i32) -> io::Result<usize> {
        // SAFETY: an all-zero msghdr is valid (no name, no control data).
        let mut hdr: libc::msghdr = unsafe { std::mem::zeroed() };
        hdr.msg_iov = self.v.as_ptr() as *mut libc::iovec;
        hdr.msg_iovlen = self.v.len() as _;
        // SAFETY: `hdr` points at `self.v`, whose entries point at data
        // borrowed for `'a`, which outlives `self`; the kernel only reads
        // them during the call (MSG_ZEROCOPY pins the pages it keeps, and
        // the caller holds that memory until completion).
        let r = unsafe { libc::sendmsg(fd.as_raw_fd(), &hdr, flags) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
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
}
