//! One run of memory segments on its way to `sendmsg`: filling the `iovec`
//! batch (a stream run, or a whole record), copying the copy segments of a
//! zero-copy run into fragments, and the zero-copy send with its
//! `ENOBUFS` retry. No state of its own: the Splicer passes in what each
//! step needs.

use std::io;
use std::os::fd::BorrowedFd;

use super::policy::{Policy, RunShape};
use super::zerocopy::ZeroCopy;
use super::SendStats;
use crate::frag::{Frag, FragCache};
use crate::msg::Segment;
use crate::sys::sendmsg::{IovBatch, IOV_MAX, MSG_ZEROCOPY};

/// Fills `batch` with the run of memory segments that starts at segment
/// `first`, byte `off`: up to the next file range or `IOV_MAX` buffers,
/// as for a plain send. Returns the index past the run's last segment, its
/// bytes and its shape.
pub(super) fn push_run<'b>(
    batch: &mut IovBatch<'b>,
    segs: &'b [Segment<'_>],
    first: usize,
    off: u64,
) -> (usize, u64, RunShape) {
    let mut shape = RunShape::default();
    let (mut end, mut bytes) = (first, 0u64);
    while let Some(s) = segs.get(end) {
        let Some(data) = s.as_memory() else { break };
        if batch.len() == IOV_MAX {
            break;
        }
        let data = &data[if end == first { off as usize } else { 0 }..];
        end += 1;
        if data.is_empty() {
            continue;
        }
        batch.push(data);
        bytes += data.len() as u64;
        shape.add(s, data.len() as u64);
    }
    (end, bytes, shape)
}

/// One `sendmsg` of a stream run with `flags`, and `MSG_ZEROCOPY` if
/// `zerocopy`. There `ENOBUFS` means the socket's option memory holds too
/// many completions: they are read and the send retried once, then sent by
/// copy. Returns the result and whether it went zero-copy.
pub(super) fn send_stream_run(
    batch: &IovBatch<'_>,
    fd: BorrowedFd<'_>,
    flags: i32,
    zerocopy: bool,
    zc: &mut ZeroCopy,
    policy: &Policy,
    st: &mut SendStats,
) -> (io::Result<usize>, bool) {
    let zc_flags = flags | if zerocopy { MSG_ZEROCOPY } else { 0 };
    st.syscalls += 1;
    let r = batch.sendmsg(fd, zc_flags);
    if !zerocopy || !is_errno(&r, libc::ENOBUFS) {
        return (r, zerocopy);
    }
    st.enobufs += 1;
    let _ = zc.drain(fd, policy, st, usize::MAX);
    st.syscalls += 1;
    let r = batch.sendmsg(fd, zc_flags);
    if !is_errno(&r, libc::ENOBUFS) {
        return (r, true);
    }
    st.syscalls += 1;
    (batch.sendmsg(fd, flags), false)
}

/// True if a record of `segs` has more non-empty segments than one call
/// takes (`IOV_MAX`), so that it must be gathered into one buffer.
pub(super) fn must_gather(segs: &[Segment<'_>]) -> bool {
    segs.iter().filter(|s| !s.is_empty()).count() > IOV_MAX
}

/// Fills `batch` with a whole record (a datagram, a seqpacket record),
/// which cannot be split over calls: every non-empty memory segment, each
/// copy segment replaced by its fragment in `copies` (empty unless the
/// record goes zero-copy; see [`copy_into_frags`]). With `gather` (see
/// [`must_gather`]; rare) the record is copied into `bounce` instead and
/// sent from there.
pub(super) fn fill_record<'b>(
    batch: &mut IovBatch<'b>,
    segs: &'b [Segment<'_>],
    copies: &'b [Frag],
    bounce: &'b mut Vec<u8>,
    gather: bool,
) {
    if !gather {
        push_with_copies(batch, segs, 0, copies);
        return;
    }
    debug_assert!(copies.is_empty(), "a gathered record is copied");
    bounce.clear();
    for d in segs.iter().filter_map(Segment::as_memory) {
        bounce.extend_from_slice(d);
    }
    let bounce: &'b [u8] = bounce;
    batch.push(bounce);
}

/// Copies the copy segments of a zero-copy run into fragments (the kernel
/// will read them after the call returns, when borrowed memory may already
/// be reused). Returns false, with nothing copied, if the cache is out of
/// memory: the run is then sent by plain copy.
pub(crate) fn copy_into_frags(
    cache: &FragCache,
    out: &mut Vec<Frag>,
    run: &[Segment<'_>],
    off: u64,
) -> bool {
    out.clear();
    for (s, data) in memory_parts(run, off) {
        if s.is_spliceable() {
            continue;
        }
        match cache.memdup(data) {
            Ok(f) => out.push(f),
            Err(_) => {
                out.clear();
                return false;
            }
        }
    }
    true
}

/// The non-empty memory of a run of segments, the first one from byte
/// `off`, with the segment each part comes from.
pub(crate) fn memory_parts<'s>(
    run: &'s [Segment<'_>],
    off: u64,
) -> impl Iterator<Item = (&'s Segment<'s>, &'s [u8])> {
    run.iter().enumerate().filter_map(move |(i, s)| {
        let data = &s.as_memory()?[if i == 0 { off as usize } else { 0 }..];
        (!data.is_empty()).then_some((s, data))
    })
}

/// Fills `batch` with a zero-copy run: its spliceable segments as they
/// are, each copy segment replaced by its fragment in `copies` (which
/// [`copy_into_frags`] made, one per non-empty copy segment, in order).
pub(super) fn push_with_copies<'b>(
    batch: &mut IovBatch<'b>,
    run: &'b [Segment<'_>],
    off: u64,
    copies: &'b [Frag],
) {
    let mut copies = copies.iter();
    for (s, data) in memory_parts(run, off) {
        let copy = if s.is_spliceable() {
            None
        } else {
            copies.next()
        };
        batch.push(copy.map_or(data, |c| &c[..]));
    }
}

/// True if `r` failed with `errno`.
pub(super) fn is_errno<T>(r: &io::Result<T>, errno: i32) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(errno))
}
