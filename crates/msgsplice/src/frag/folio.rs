//! Folios and the handles into them: [`Frag`] (shared, read-only) and
//! [`FragMut`] (unique, writable until frozen).
//!
//! A folio is one anonymous mapping plus a reference count. Every handle
//! into it owns one reference. The cache that carves a folio holds a large
//! *bias* of references that it spends one per handle without touching the
//! atomic (see `bump.rs`); the handle gives its reference back with one
//! atomic decrement on drop. Whoever takes the count to zero decides the
//! folio's fate: back to its cache for reuse, or unmapped if it was retired,
//! dedicated, or its cache is gone.

use std::fmt;
use std::ops::{Deref, DerefMut, RangeBounds};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use super::pool::Shared;
use super::sync::{fence, thread_token, AtomicBool, AtomicUsize, OwnerCell};
use crate::sys::mmap::Mapping;

/// More than this many references means a leak of clones; abort as `Arc` does.
const MAX_REFS: usize = isize::MAX as usize;

/// The header of one folio. Lives in its own heap box so that a handle can
/// reach it with one pointer whatever the folio size.
pub(crate) struct Folio {
    map: Mapping,
    pub(super) refs: AtomicUsize,
    /// The token of the thread whose bucket is carving this folio, or 0.
    /// Written only by that thread (on take and release).
    pub(super) owner: AtomicUsize,
    /// References given back by handles dropped on the owner thread while
    /// it carves the folio: a plain counter, touched only by the owner, that
    /// the bucket adds to its bias. This is what makes a same-thread drop
    /// free of atomic read-modify-writes.
    pub(super) local: LocalCount,
    /// Set when the kernel may still read this memory after the last
    /// user-space reference is gone: never reuse, only unmap.
    retired: AtomicBool,
    /// Dedicated folios hold one large allocation and are never recycled.
    pub(super) dedicated: bool,
    /// The cache to return to; `Weak` so that folios never keep a dropped
    /// cache alive (the cache owns its free list of folios).
    home: Weak<Shared>,
    /// Told when this folio is mapped and before it is unmapped (the
    /// cache's hook when the folio was made; see [`FolioHook`]).
    hook: Option<Arc<dyn FolioHook>>,
}

/// Told of every folio a cache maps from the time the hook is set
/// ([`FragCache::set_folio_hook`](super::FragCache::set_folio_hook)):
/// `mapped` right after the mapping is made, `unmapped` right before it is
/// unmapped, which is only after every handle into it (and so every send
/// that holds one) is gone. Used to register folios with io_uring.
pub(crate) trait FolioHook: Send + Sync {
    /// A folio of `len` bytes at `base` was mapped.
    fn mapped(&self, base: *const u8, len: usize);
    /// The folio at `base` is about to be unmapped.
    fn unmapped(&self, base: *const u8, len: usize);
}

impl Drop for Folio {
    fn drop(&mut self) {
        if let Some(h) = &self.hook {
            h.unmapped(self.base().as_ptr(), self.size());
        }
    }
}

impl Folio {
    /// Boxes a header for `map` and leaks it; ownership passes to the
    /// reference count (set by the caller).
    pub(super) fn new(map: Mapping, home: Weak<Shared>, dedicated: bool) -> NonNull<Folio> {
        let hook = home.upgrade().and_then(|h| h.folio_hook());
        if let Some(h) = &hook {
            h.mapped(map.as_ptr().as_ptr(), map.len());
        }
        let b = Box::new(Folio {
            map,
            refs: AtomicUsize::new(0),
            owner: AtomicUsize::new(0),
            local: LocalCount(OwnerCell::new(0)),
            retired: AtomicBool::new(false),
            dedicated,
            home,
            hook,
        });
        NonNull::from(Box::leak(b))
    }

    pub(super) fn base(&self) -> NonNull<u8> {
        self.map.as_ptr()
    }

    pub(super) fn size(&self) -> usize {
        self.map.len()
    }

    #[inline]
    pub(super) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Overwrites the whole folio (debug poisoning of recycled memory).
    ///
    /// # Safety
    /// No live handle may point into the folio.
    pub(super) unsafe fn fill(&self, byte: u8) {
        // SAFETY: the caller guarantees exclusive access; the mapping is
        // writable and `size()` bytes long.
        unsafe { std::ptr::write_bytes(self.base().as_ptr(), byte, self.size()) };
    }

    /// Frees the header and unmaps the memory.
    ///
    /// # Safety
    /// The count is zero and nothing else will touch `f` again.
    pub(super) unsafe fn destroy(f: NonNull<Folio>) {
        // SAFETY: `f` came from `Box::leak` in `new`, and the caller gives up
        // the last use of it.
        drop(unsafe { Box::from_raw(f.as_ptr()) });
    }
}

/// The owner thread's count of returned references, on a cache line of its
/// own: the owner reads it on every allocation, and it must not share a line
/// with `refs`, which other threads write when they drop fragments.
#[repr(align(64))]
pub(super) struct LocalCount(OwnerCell<usize>);

impl LocalCount {
    /// The references returned so far.
    ///
    /// # Safety
    /// The caller is the thread whose bucket carves the folio.
    #[inline(always)]
    pub(super) unsafe fn get(&self) -> usize {
        // SAFETY: only the owner thread uses the counter (the caller's
        // promise), so this access is the only one.
        unsafe { self.0.with_mut(|n| *n) }
    }

    /// Counts one more returned reference.
    ///
    /// # Safety
    /// As for [`get`](Self::get).
    #[inline(always)]
    unsafe fn add_one(&self) {
        // SAFETY: as in `get`.
        unsafe { self.0.with_mut(|n| *n += 1) }
    }

    /// Forgets the returned references (the caller has counted them).
    ///
    /// # Safety
    /// As for [`get`](Self::get).
    #[inline(always)]
    pub(super) unsafe fn clear(&self) {
        // SAFETY: as in `get`.
        unsafe { self.0.with_mut(|n| *n = 0) }
    }

    /// Takes the returned references, leaving zero.
    ///
    /// # Safety
    /// As for [`get`](Self::get).
    #[inline(always)]
    pub(super) unsafe fn take(&self) -> usize {
        // SAFETY: as in `get`.
        unsafe { self.0.with_mut(std::mem::take) }
    }
}

/// Gives back one handle's reference to `f`.
///
/// # Safety
/// The caller owns one reference to the live folio `f`.
#[inline]
unsafe fn put_one(f: NonNull<Folio>) {
    // SAFETY: we own a reference, so the header is alive.
    let folio = unsafe { f.as_ref() };
    if folio.owner.load(Ordering::Relaxed) == thread_token() {
        // Our own bucket is carving this folio: hand the reference back to
        // it. Only this thread reads or writes `local` (and only this thread
        // changes `owner` away from its token), so no atomic is needed.
        // SAFETY: as just said, this thread has exclusive use of `local`.
        unsafe { folio.local.add_one() };
    } else {
        // SAFETY: we own the reference we give back.
        unsafe { put(f, 1) }
    }
}

/// Gives back `n` references to `f`; the last one decides its fate.
///
/// # Safety
/// The caller owns `n` references to the live folio `f`.
#[inline]
pub(super) unsafe fn put(f: NonNull<Folio>, n: usize) {
    // SAFETY: we own references, so the header is alive.
    let folio = unsafe { f.as_ref() };
    if folio.refs.fetch_sub(n, Ordering::Release) != n {
        return;
    }
    // Pairs with the Release above in every other dropper: all their reads
    // of the folio happen before we reuse or unmap it.
    fence(Ordering::Acquire);
    // SAFETY: the count is zero: we are the only user left.
    unsafe { last_put(f) }
}

/// Called once the count has reached zero.
///
/// # Safety
/// As for [`Folio::destroy`].
#[cold]
pub(super) unsafe fn last_put(f: NonNull<Folio>) {
    // SAFETY: count is zero and we are the sole owner now.
    let folio = unsafe { f.as_ref() };
    match folio.home.upgrade() {
        // SAFETY: sole owner, passed on.
        Some(home) => unsafe { home.folio_unused(f) },
        // SAFETY: sole owner; the cache is gone so nobody can reuse it.
        None => unsafe { Folio::destroy(f) },
    }
}

/// A shared, read-only, reference-counted slice of a folio.
///
/// The user-space counterpart of a page fragment: cheap to clone (one atomic
/// increment) and to drop (one atomic decrement), `Send + Sync`, derefs to
/// `[u8]`, and converts into [`bytes::Bytes`] without copying. Because the
/// library holds a `Frag` alive until the kernel reports that a zero-copy
/// send has finished with it, a `Frag` is safe to splice: its memory is
/// never reused while anyone, the kernel included, may read it.
pub struct Frag {
    ptr: NonNull<u8>,
    len: usize,
    folio: NonNull<Folio>,
}

// SAFETY: a Frag's bytes are never written while any Frag points at them
// (FragMut is frozen before it becomes a Frag), and the folio's reference
// count is atomic, so handles may move and be shared between threads.
unsafe impl Send for Frag {}
// SAFETY: as above: `&Frag` only gives read access to immutable bytes.
unsafe impl Sync for Frag {}

impl Frag {
    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the fragment holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of the first byte (what an `iovec` carries).
    #[inline]
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// The byte offset of this fragment inside its folio.
    pub fn folio_offset(&self) -> usize {
        // SAFETY: we hold a reference, so the folio is alive.
        let base = unsafe { self.folio.as_ref() }.base().as_ptr() as usize;
        self.ptr.as_ptr() as usize - base
    }

    /// A new handle to a sub-range of this one. Costs one atomic increment.
    ///
    /// # Panics
    /// If the range is out of bounds, as slice indexing does.
    pub fn slice(&self, range: impl RangeBounds<usize>) -> Frag {
        use std::ops::Bound::*;
        let start = match range.start_bound() {
            Included(&s) => s,
            Excluded(&s) => s + 1,
            Unbounded => 0,
        };
        let end = match range.end_bound() {
            Included(&e) => e + 1,
            Excluded(&e) => e,
            Unbounded => self.len,
        };
        assert!(
            start <= end && end <= self.len,
            "range {start}..{end} out of bounds of a Frag of {} bytes",
            self.len
        );
        let mut f = self.clone();
        // SAFETY: start <= len, so the pointer stays inside this fragment.
        f.ptr = unsafe { NonNull::new_unchecked(self.ptr.as_ptr().add(start)) };
        f.len = end - start;
        f
    }

    /// Marks this fragment's folio as retired: when its last reference goes
    /// it is unmapped instead of reused. Used when the kernel may still read
    /// the memory (a zero-copy send whose completion will never be seen).
    pub(crate) fn retire(&self) {
        // SAFETY: we hold a reference, so the folio is alive.
        unsafe { self.folio.as_ref() }
            .retired
            .store(true, Ordering::Release);
    }

    /// An identifier of the folio, equal for fragments of the same folio.
    pub fn folio_id(&self) -> usize {
        self.folio.as_ptr() as usize
    }
}

impl Clone for Frag {
    #[inline]
    fn clone(&self) -> Frag {
        // SAFETY: we hold a reference, so the folio is alive.
        let old = unsafe { self.folio.as_ref() }
            .refs
            .fetch_add(1, Ordering::Relaxed);
        if old > MAX_REFS {
            std::process::abort();
        }
        Frag {
            ptr: self.ptr,
            len: self.len,
            folio: self.folio,
        }
    }
}

impl Drop for Frag {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference.
        unsafe { put_one(self.folio) }
    }
}

impl Deref for Frag {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr..ptr+len lies inside a live, initialised mapping, and
        // nobody writes it while a Frag exists.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Frag {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Frag {
    fn eq(&self, other: &Frag) -> bool {
        self[..] == other[..]
    }
}
impl Eq for Frag {}

impl PartialEq<[u8]> for Frag {
    fn eq(&self, other: &[u8]) -> bool {
        self[..] == *other
    }
}

impl fmt::Debug for Frag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frag")
            .field("len", &self.len)
            .field("folio_offset", &self.folio_offset())
            .finish()
    }
}

impl From<Frag> for bytes::Bytes {
    /// Wraps the fragment without copying; the folio reference moves into
    /// the `Bytes` and is given back when the last `Bytes` clone drops.
    fn from(f: Frag) -> bytes::Bytes {
        bytes::Bytes::from_owner(f)
    }
}

/// A unique, writable fragment, fresh from a [`FragCache`](super::FragCache).
///
/// Write it through `DerefMut`, then [`freeze`](FragMut::freeze) it into a
/// shareable [`Frag`]. Memory from [`alloc`](super::FragCache::alloc) holds
/// whatever the folio held before (stale bytes of this process); use
/// [`alloc_zeroed`](super::FragCache::alloc_zeroed) for zeroes.
pub struct FragMut {
    ptr: NonNull<u8>,
    len: usize,
    folio: NonNull<Folio>,
}

// SAFETY: FragMut is the only handle to its bytes; moving it between threads
// moves that exclusive access. The folio count is atomic.
unsafe impl Send for FragMut {}
// SAFETY: `&FragMut` only reads.
unsafe impl Sync for FragMut {}

impl FragMut {
    /// Builds a handle that owns one reference to `folio`.
    ///
    /// # Safety
    /// `ptr..ptr+len` lies inside `folio`, no other handle covers it, and
    /// the caller transfers one reference to the new handle.
    #[inline]
    pub(super) unsafe fn from_raw(ptr: NonNull<u8>, len: usize, folio: NonNull<Folio>) -> FragMut {
        FragMut { ptr, len, folio }
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the fragment holds no bytes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Shortens the fragment. If it is the most recent allocation of the
    /// calling thread's bucket, the cut-off tail goes back to the bucket for
    /// the next allocation (so a generously sized [`FragBuf`](super::FragBuf)
    /// costs only what was written); otherwise the tail is reused with the
    /// folio.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.len {
            return;
        }
        let old_end = self.ptr.as_ptr() as usize + self.len;
        self.len = len;
        let new_end = self.ptr.as_ptr() as usize + len;
        super::buckets::give_back_tail(self.folio, old_end, new_end);
    }

    /// Turns this into a shared, read-only [`Frag`]. Free: no atomic, no copy.
    #[inline]
    pub fn freeze(self) -> Frag {
        let me = std::mem::ManuallyDrop::new(self);
        Frag {
            ptr: me.ptr,
            len: me.len,
            folio: me.folio,
        }
    }

    pub(super) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for FragMut {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: this handle owns one reference.
        unsafe { put_one(self.folio) }
    }
}

impl Deref for FragMut {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: inside a live, initialised mapping; we are the only handle.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for FragMut {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl fmt::Debug for FragMut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FragMut").field("len", &self.len).finish()
    }
}
