//! `FragBuf`: build a header (or any small record) in place, then freeze it.

use bytes::buf::UninitSlice;
use bytes::BufMut;

use super::{Frag, FragCache, FragError, FragMut};

/// A fixed-capacity writer over a fresh fragment, implementing
/// [`bytes::BufMut`], that [`freeze`](FragBuf::freeze)s into a [`Frag`].
///
/// A protocol header written here is born in spliceable memory and never
/// needs copying into it. Optional *headroom* is reserved in front of the
/// body, to be filled in after the body is known (an RPC record marker holds
/// the record length).
///
/// Capacity is fixed at creation: as with `&mut [u8]`, writing past it
/// panics (check [`BufMut::remaining_mut`]). At [`freeze`](FragBuf::freeze)
/// unused capacity goes back to the bucket if this is still the latest
/// fragment that the calling thread's per-thread bucket carved (a header
/// built and frozen at once); otherwise it is reused with the whole folio.
///
/// ```
/// use bytes::BufMut;
/// use msgsplice::frag::{FragBuf, FragCache};
/// let cache = FragCache::new();
/// let mut hdr = FragBuf::with_headroom(&cache, 4, 128).unwrap();
/// hdr.put_u32(0xdead_beef);
/// hdr.put_slice(b"body");
/// let n = hdr.len() as u32;
/// hdr.headroom_mut().copy_from_slice(&(0x8000_0000 | n).to_be_bytes());
/// let frag = hdr.freeze();
/// assert_eq!(&frag[..], b"\x80\x00\x00\x08\xde\xad\xbe\xefbody");
/// ```
pub struct FragBuf {
    mem: FragMut,
    headroom: usize,
    len: usize,
}

impl FragBuf {
    /// A writer with room for `capacity` bytes.
    pub fn new(cache: &FragCache, capacity: usize) -> Result<FragBuf, FragError> {
        FragBuf::with_headroom(cache, 0, capacity)
    }

    /// A writer with `headroom` bytes reserved in front of `capacity` bytes
    /// of body. The headroom is part of the frozen fragment; its bytes start
    /// zeroed.
    pub fn with_headroom(
        cache: &FragCache,
        headroom: usize,
        capacity: usize,
    ) -> Result<FragBuf, FragError> {
        let total = headroom
            .checked_add(capacity)
            .ok_or(FragError::TooLarge(usize::MAX))?;
        let mut mem = cache.alloc(total, 8)?;
        mem[..headroom].fill(0);
        Ok(FragBuf {
            mem,
            headroom,
            len: 0,
        })
    }

    /// Bytes written to the body so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing was written to the body.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Body capacity (excluding headroom).
    pub fn capacity(&self) -> usize {
        self.mem.len() - self.headroom
    }

    /// The reserved bytes in front of the body.
    pub fn headroom_mut(&mut self) -> &mut [u8] {
        &mut self.mem[..self.headroom]
    }

    /// The body written so far.
    pub fn body(&self) -> &[u8] {
        &self.mem[self.headroom..self.headroom + self.len]
    }

    /// The body written so far, for patching in place (a length field).
    pub fn body_mut(&mut self) -> &mut [u8] {
        let h = self.headroom;
        &mut self.mem[h..h + self.len]
    }

    /// Headroom plus body, as a shareable fragment. No copy, no atomic.
    pub fn freeze(mut self) -> Frag {
        self.mem.truncate(self.headroom + self.len);
        self.mem.freeze()
    }
}

// SAFETY: `chunk_mut` exposes exactly the unwritten capacity, and
// `advance_mut` only counts bytes inside it (checked).
unsafe impl BufMut for FragBuf {
    fn remaining_mut(&self) -> usize {
        self.capacity() - self.len
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        assert!(
            cnt <= self.remaining_mut(),
            "advance_mut({cnt}) past the {} bytes left in a FragBuf",
            self.remaining_mut()
        );
        self.len += cnt;
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        let at = self.headroom + self.len;
        let left = self.mem.len() - at;
        // SAFETY: at <= mem.len(), so the range is inside our fragment, which
        // no one else can see.
        unsafe { UninitSlice::from_raw_parts_mut(self.mem.as_mut_ptr().add(at), left) }
    }
}

impl std::fmt::Debug for FragBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragBuf")
            .field("headroom", &self.headroom)
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}
