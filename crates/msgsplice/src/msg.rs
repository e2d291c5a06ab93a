//! [`Msg`]: one message as an ordered list of segments, the user-space
//! `bio_vec[]`.
//!
//! A segment is memory the library can keep alive ([`Frag`],
//! [`bytes::Bytes`]: *spliceable*, handed to the kernel by reference),
//! memory it cannot ([`&[u8]`](Segment::Borrowed): *copied*), or a range of
//! a file ([`FileRange`]: sent by `sendfile`, never read into user memory).
//! The type is the guard that the kernel's `MSG_SPLICE_PAGES` has in
//! `sys_sendmsg`: there is no safe way to splice borrowed memory, because a
//! borrowed slice has no lifetime the library could extend until the kernel
//! is done with it.
//!
//! Owned memory needs no copy at this boundary: a `Vec<u8>` or a
//! [`BytesMut`] pushed onto a message becomes [`Bytes`] without copying its
//! bytes (`Bytes::from`, `BytesMut::freeze`), and so is spliceable.
//!
//! A `Msg` also carries its send *cursor*: how many of its bytes have gone.
//! A [`Splicer`](crate::send::Splicer) that stops early (a non-blocking
//! socket is full) leaves the cursor at the exact byte, and the next send of
//! the same `Msg` resumes there.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::frag::Frag;

/// Segments a [`Msg`] holds without a heap allocation.
pub const INLINE_SEGMENTS: usize = 8;

/// A range of a file, sent with `sendfile(2)` (no copy through user space).
///
/// The file is borrowed for the message's lifetime; its position is not
/// used or moved (`sendfile` is given the offset explicitly).
#[derive(Clone, Copy, Debug)]
pub struct FileRange<'a> {
    fd: BorrowedFd<'a>,
    offset: u64,
    len: u64,
}

impl<'a> FileRange<'a> {
    /// `len` bytes of `file` starting at `offset`. Nothing is checked here:
    /// a range past the end of the file is reported by the send, before any
    /// byte of the message goes, as [`SendError::PastEof`](crate::send::SendError::PastEof).
    pub fn new<F: AsFd + ?Sized>(file: &'a F, offset: u64, len: u64) -> FileRange<'a> {
        FileRange {
            fd: file.as_fd(),
            offset,
            len,
        }
    }

    /// The file.
    pub fn fd(&self) -> BorrowedFd<'a> {
        self.fd
    }

    /// Offset of the first byte in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One part of a [`Msg`].
#[non_exhaustive]
pub enum Segment<'a> {
    /// A page fragment: spliceable. Kept referenced until the kernel is done.
    Frag(Frag),
    /// Refcounted bytes: spliceable. Kept referenced until the kernel is done
    /// (a `Bytes` whose completion never arrives is leaked, not freed; see
    /// [`Splicer`](crate::send::Splicer)). An owned `Vec<u8>` or
    /// [`BytesMut`] pushed onto a [`Msg`] becomes one of these, uncopied.
    Bytes(Bytes),
    /// Memory borrowed for the duration of the send: always copied.
    Borrowed(&'a [u8]),
    /// A file range: `sendfile`.
    File(FileRange<'a>),
}

impl Segment<'_> {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Segment::Frag(f) => f.len() as u64,
            Segment::Bytes(b) => b.len() as u64,
            Segment::Borrowed(s) => s.len() as u64,
            Segment::File(r) => r.len,
        }
    }

    /// True for a segment with no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for memory the library may hand to the kernel by reference.
    pub fn is_spliceable(&self) -> bool {
        matches!(self, Segment::Frag(_) | Segment::Bytes(_))
    }

    /// The bytes of a memory segment; `None` for a file range.
    pub fn as_memory(&self) -> Option<&[u8]> {
        match self {
            Segment::Frag(f) => Some(f),
            Segment::Bytes(b) => Some(b),
            Segment::Borrowed(s) => Some(s),
            Segment::File(_) => None,
        }
    }
}

impl fmt::Debug for Segment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Segment::Frag(_) => "Frag",
            Segment::Bytes(_) => "Bytes",
            Segment::Borrowed(_) => "Borrowed",
            Segment::File(r) => return write!(f, "File({r:?})"),
        };
        write!(f, "{kind}({} bytes)", self.len())
    }
}

impl From<Frag> for Segment<'_> {
    fn from(f: Frag) -> Self {
        Segment::Frag(f)
    }
}
impl From<Bytes> for Segment<'_> {
    fn from(b: Bytes) -> Self {
        Segment::Bytes(b)
    }
}
impl<'a> From<&'a [u8]> for Segment<'a> {
    fn from(s: &'a [u8]) -> Self {
        Segment::Borrowed(s)
    }
}
impl<'a, const N: usize> From<&'a [u8; N]> for Segment<'a> {
    fn from(s: &'a [u8; N]) -> Self {
        Segment::Borrowed(s)
    }
}
/// The vector's buffer becomes a `Bytes` as it is: no copy (at most one
/// small allocation for the refcount when its capacity exceeds its length).
impl From<Vec<u8>> for Segment<'_> {
    fn from(v: Vec<u8>) -> Self {
        Segment::Bytes(Bytes::from(v))
    }
}
/// Frozen into a `Bytes` without copying.
impl From<BytesMut> for Segment<'_> {
    fn from(b: BytesMut) -> Self {
        Segment::Bytes(b.freeze())
    }
}
impl<'a> From<FileRange<'a>> for Segment<'a> {
    fn from(r: FileRange<'a>) -> Self {
        Segment::File(r)
    }
}

/// An ordered list of [`Segment`]s sent as one message, with a cursor of
/// how much of it has been sent.
///
/// Building a `Msg` of up to [`INLINE_SEGMENTS`] segments allocates nothing;
/// beyond that the list moves to the heap once. Any number of segments
/// works: the send engine splits beyond the kernel's `IOV_MAX`.
///
/// ```
/// use msgsplice::{FragCache, Msg};
/// let cache = FragCache::new();
/// let page = cache.memdup(&[1u8; 4096]).unwrap();
/// let mut msg = Msg::new();
/// msg.push(b"HDR:").push(page).push(vec![b'\n']);
/// assert_eq!(msg.len(), 4 + 4096 + 1);
/// assert_eq!(msg.spliceable_len(), 4096 + 1); // the Vec is not copied
/// assert_eq!(msg.remaining(), msg.len());
/// ```
#[derive(Default)]
pub struct Msg<'a> {
    segs: SmallVec<[Segment<'a>; INLINE_SEGMENTS]>,
    len: u64,
    /// Cursor: index of the first segment not fully sent, the offset inside
    /// it, and the bytes sent in total.
    seg: usize,
    off: u64,
    sent: u64,
    /// File ranges among the segments (so a memory-only message skips the
    /// range checks without looking).
    files: u32,
}

impl<'a> Msg<'a> {
    /// An empty message. No allocation.
    pub fn new() -> Msg<'a> {
        Msg::default()
    }

    /// An empty message with room for `n` segments (one allocation if
    /// `n > INLINE_SEGMENTS`).
    pub fn with_capacity(n: usize) -> Msg<'a> {
        Msg {
            segs: SmallVec::with_capacity(n),
            ..Msg::default()
        }
    }

    /// Appends a segment: a [`Frag`], [`Bytes`], `Vec<u8>` or [`BytesMut`]
    /// (spliceable, uncopied), `&[u8]` (copied when sent) or
    /// [`FileRange`]. Empty segments are kept and cost nothing to send.
    pub fn push(&mut self, seg: impl Into<Segment<'a>>) -> &mut Msg<'a> {
        let seg = seg.into();
        // Saturating: only absurd file ranges can overflow, and those fail
        // the end-of-file check before anything is sent.
        self.len = self.len.saturating_add(seg.len());
        self.files += matches!(seg, Segment::File(_)) as u32;
        self.segs.push(seg);
        self
    }

    /// Appends `len` bytes of `file` from `offset`, sent with `sendfile`.
    pub fn push_file<F: AsFd + ?Sized>(
        &mut self,
        file: &'a F,
        offset: u64,
        len: u64,
    ) -> &mut Msg<'a> {
        self.push(FileRange::new(file, offset, len))
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the message has no bytes (it may still have empty segments).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[Segment<'a>] {
        &self.segs
    }

    /// Bytes in spliceable segments ([`Frag`], [`Bytes`]).
    pub fn spliceable_len(&self) -> u64 {
        self.segs
            .iter()
            .filter(|s| s.is_spliceable())
            .map(Segment::len)
            .sum()
    }

    /// True if any segment is a file range.
    pub fn has_file(&self) -> bool {
        self.files > 0
    }

    /// Bytes already sent.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Bytes still to send.
    pub fn remaining(&self) -> u64 {
        self.len - self.sent
    }

    /// True once every byte has been sent.
    pub fn is_sent(&self) -> bool {
        self.sent == self.len
    }

    /// Moves the cursor back to the start, to send the message again
    /// (to another socket, say).
    pub fn rewind(&mut self) {
        self.seg = 0;
        self.off = 0;
        self.sent = 0;
    }

    /// Removes every segment and resets the cursor, keeping the storage.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.len = 0;
        self.files = 0;
        self.rewind();
    }

    /// Replaces file range `i` by a fragment holding its bytes (read from
    /// the file by the send engine). Same length, so the cursor stays valid.
    pub(crate) fn replace_file(&mut self, i: usize, data: Frag) {
        debug_assert!(matches!(self.segs[i], Segment::File(_)));
        debug_assert_eq!(self.segs[i].len(), data.len() as u64);
        self.segs[i] = Segment::Frag(data);
        self.files -= 1;
    }

    /// The cursor: index of the first unsent segment and the offset in it.
    pub(crate) fn cursor(&self) -> (usize, u64) {
        (self.seg, self.off)
    }

    /// Moves the cursor forward by `n` bytes, across segment boundaries,
    /// skipping empty segments.
    pub(crate) fn advance(&mut self, mut n: u64) {
        debug_assert!(n <= self.remaining());
        if n == 0 && self.segs.get(self.seg).is_some_and(|s| s.len() > self.off) {
            return; // already on a byte to send
        }
        if n == self.len - self.sent {
            // All of the rest (the common case: a whole message in one
            // call): past the last segment.
            self.sent = self.len;
            self.seg = self.segs.len();
            self.off = 0;
            return;
        }
        self.sent += n;
        while let Some(s) = self.segs.get(self.seg) {
            let left = s.len() - self.off;
            if n < left {
                self.off += n;
                return;
            }
            n -= left;
            self.seg += 1;
            self.off = 0;
            if n == 0 {
                // Stop on the next non-empty segment, so the cursor never
                // rests on an empty one.
                while self.segs.get(self.seg).is_some_and(|s| s.is_empty()) {
                    self.seg += 1;
                }
                return;
            }
        }
    }
}

impl fmt::Debug for Msg<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Msg")
            .field("len", &self.len)
            .field("sent", &self.sent)
            .field("segments", &&self.segs[..])
            .finish()
    }
}

impl<'a, S: Into<Segment<'a>>> FromIterator<S> for Msg<'a> {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Msg<'a> {
        let mut m = Msg::new();
        for s in iter {
            m.push(s);
        }
        m
    }
}

impl<'a, S: Into<Segment<'a>>> Extend<S> for Msg<'a> {
    fn extend<I: IntoIterator<Item = S>>(&mut self, iter: I) {
        for s in iter {
            self.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FragCache;
    use proptest::prelude::*;

    #[test]
    fn small_messages_stay_inline() {
        let cache = FragCache::new();
        let mut m = Msg::new();
        for i in 0..INLINE_SEGMENTS {
            m.push(cache.memdup(&[i as u8; 3]).unwrap());
        }
        assert!(!m.segs.spilled());
        m.push(b"x");
        assert!(m.segs.spilled());
        assert_eq!(m.len(), 3 * INLINE_SEGMENTS as u64 + 1);
    }

    #[test]
    fn kinds_and_lengths() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let mut m = Msg::new();
        m.push(b"ab")
            .push(Bytes::from_static(b"cde"))
            .push(vec![1, 2, 3, 4])
            .push_file(&f, 10, 100);
        assert_eq!(m.len(), 2 + 3 + 4 + 100);
        assert_eq!(m.spliceable_len(), 3 + 4);
        assert!(m.has_file());
        assert_eq!(format!("{:?}", m.segments()[0]), "Borrowed(2 bytes)");
    }

    /// Owned memory becomes a spliceable segment over the same buffer.
    #[test]
    fn owned_memory_is_not_copied() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"owned");
        let mut b = BytesMut::with_capacity(64);
        b.extend_from_slice(b"mutable");
        let (pv, pb) = (v.as_ptr(), b.as_ptr());
        let mut m = Msg::new();
        m.push(v).push(b);
        for (s, p) in m.segments().iter().zip([pv, pb]) {
            assert!(s.is_spliceable(), "{s:?}");
            assert_eq!(s.as_memory().map(<[u8]>::as_ptr), Some(p), "same buffer");
        }
        assert_eq!(m.spliceable_len(), 5 + 7);
    }

    proptest! {
        /// Advancing in arbitrary steps visits every byte once and ends
        /// exactly at the end, with the cursor never resting on an empty
        /// segment.
        #[test]
        fn advance_walks_every_byte(lens in prop::collection::vec(0usize..50, 0..20),
                                    steps in prop::collection::vec(1u64..60, 1..40)) {
            let data: Vec<Vec<u8>> = lens.iter().map(|&n| vec![0; n]).collect();
            let mut m: Msg = data.iter().map(|v| &v[..]).collect();
            let total = m.len();
            for s in steps.iter().cycle() {
                if m.is_sent() { break; }
                let n = (*s).min(m.remaining());
                m.advance(n);
                let (seg, off) = m.cursor();
                // The cursor's position equals the bytes sent.
                let before: u64 = m.segments()[..seg.min(m.segments().len())]
                    .iter().map(Segment::len).sum();
                prop_assert_eq!(before + off, m.sent());
                if let Some(s) = m.segments().get(seg) {
                    prop_assert!(off < s.len());
                }
            }
            prop_assert_eq!(m.sent(), total);
        }
    }
}
