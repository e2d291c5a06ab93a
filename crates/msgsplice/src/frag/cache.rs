//! `FragCache`: bump allocation of fragments from folios, in per-thread (or
//! per-CPU) buckets.
//!
//! The hot path is [`BucketState::alloc`]: round the offset up to the
//! alignment, check the fit, bump, spend one reference from the local bias.
//! The bias is the kernel's `pagecnt_bias` trick: when a bucket takes a folio
//! it sets the folio's atomic count to a huge `BIAS` in one store and keeps
//! a plain local copy; each fragment handed out moves one reference from the
//! local copy to the handle, with no atomic at all. When the folio is used
//! up, the bucket gives back what is left of its bias in one atomic
//! subtraction; if that reaches zero, every fragment is already gone and the
//! folio is reused on the spot.

use std::cell::UnsafeCell;
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use super::folio::{self, Folio, FolioHook, Frag, FragMut};
use super::FragError;
use crate::sys::mmap::{Mapping, HUGE_PAGE};

/// References a bucket holds on its current folio; far more than fragments
/// a folio can hold, and topped up if ever spent (zero-length fragments).
const BIAS: usize = 1 << 32;

/// Smallest folio: one page.
const MIN_FOLIO: usize = 4096;

/// How buckets are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketMode {
    /// One bucket per thread that allocates (the default). No lock at all:
    /// a thread-local lookup and a bump. Measured faster than per-CPU here
    /// (see the README's allocator table).
    PerThread,
    /// One bucket per CPU, chosen with `sched_getcpu` and guarded by an
    /// uncontended mutex (a thread can migrate between the lookup and the
    /// bump, so user space cannot go lock-free as the kernel does with
    /// preemption off). Fewer partly used folios with many threads.
    PerCpu,
}

/// Settings of a [`FragCache`]; build one with [`FragCache::builder`].
#[derive(Clone, Debug)]
pub struct Config {
    folio_size: usize,
    mode: BucketMode,
    max_cached: usize,
    poison: Option<u8>,
    fail_maps_over: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            folio_size: 64 << 10,
            mode: BucketMode::PerThread,
            max_cached: 8 << 20,
            poison: None,
            fail_maps_over: None,
        }
    }
}

/// Builder for a [`FragCache`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// Folio size in bytes: a power of two from 4 KiB to 2 MiB (default
    /// 64 KiB). At 2 MiB folios are aligned and advised `MADV_HUGEPAGE`.
    pub fn folio_size(mut self, bytes: usize) -> Builder {
        self.cfg.folio_size = bytes;
        self
    }

    /// Per-thread (default) or per-CPU buckets.
    pub fn bucket_mode(mut self, mode: BucketMode) -> Builder {
        self.cfg.mode = mode;
        self
    }

    /// Bytes of unused folios kept for reuse (default 8 MiB, at least two
    /// folios). Folios freed beyond this are unmapped, so a burst does not
    /// pin memory forever.
    pub fn max_cached_bytes(mut self, bytes: usize) -> Builder {
        self.cfg.max_cached = bytes;
        self
    }

    /// Debug mode: fill every folio with `byte` when it is recycled, so that
    /// anyone still reading it (a kernel send that was not waited for) sees
    /// the poison instead of plausible data. Costs a memset per recycle.
    pub fn poison_recycled(mut self, byte: u8) -> Builder {
        self.cfg.poison = Some(byte);
        self
    }

    /// Fault injection for tests: pretend every mapping larger than `bytes`
    /// fails, to exercise the fall-back to smaller folios.
    #[doc(hidden)]
    pub fn fail_maps_over(mut self, bytes: usize) -> Builder {
        self.cfg.fail_maps_over = Some(bytes);
        self
    }

    /// Checks the settings and creates the cache. No memory is mapped until
    /// the first allocation.
    pub fn build(self) -> Result<FragCache, FragError> {
        let c = self.cfg;
        if !c.folio_size.is_power_of_two() || !(MIN_FOLIO..=HUGE_PAGE).contains(&c.folio_size) {
            return Err(FragError::BadFolioSize(c.folio_size));
        }
        let buckets = match c.mode {
            BucketMode::PerThread => Buckets::PerThread,
            BucketMode::PerCpu => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                Buckets::PerCpu((0..n).map(|_| PerCpuBucket::default()).collect())
            }
        };
        let max_cached = (c.max_cached / c.folio_size).max(2);
        Ok(FragCache {
            shared: Arc::new_cyclic(|me| Shared {
                me: me.clone(),
                id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
                small_max: c.folio_size / 2,
                max_cached,
                cfg: c,
                buckets,
                free: Mutex::new(Vec::new()),
                stats: Counters::default(),
                hook: OnceLock::new(),
            }),
        })
    }
}

/// A page-fragment allocator: hands out [`FragMut`]s and [`Frag`]s carved
/// from large, prefaulted, page-aligned folios.
///
/// Cloning a `FragCache` is cheap and shares the same folios. Allocation
/// takes no lock and does no atomic read-modify-write (per-thread mode);
/// dropping a fragment does one atomic decrement. A folio is reused only when
/// every fragment in it (including those the kernel still holds for a
/// zero-copy send) is gone.
///
/// ```
/// use msgsplice::frag::FragCache;
/// let cache = FragCache::new();
/// let hdr = cache.memdup(b"HEADER").unwrap();
/// let mut page = cache.alloc(4096, 4096).unwrap();
/// page.fill(7);
/// let page = page.freeze();
/// assert_eq!(&hdr[..], b"HEADER");
/// assert_eq!(page.as_ptr() as usize % 4096, 0);
/// let b: bytes::Bytes = page.into(); // no copy
/// assert_eq!(b.len(), 4096);
/// ```
#[derive(Clone)]
pub struct FragCache {
    shared: Arc<Shared>,
}

impl Default for FragCache {
    fn default() -> FragCache {
        FragCache::new()
    }
}

impl std::fmt::Debug for FragCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FragCache")
            .field("config", &self.shared.cfg)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Counts kept by a cache; see [`FragCache::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragStats {
    /// Folios currently mapped (in use by buckets or fragments, or cached).
    pub folios_live: u64,
    /// Unused folios waiting in the cache for reuse.
    pub folios_cached: u64,
    /// Folios ever mapped.
    pub folios_mapped: u64,
    /// Times a folio was reused after all its fragments were dropped
    /// (including restarts in place by the thread carving it; other
    /// threads' restarts arrive once per folio).
    pub recycled: u64,
    /// Folios unmapped instead of reused because the kernel might still
    /// have been reading them.
    pub retired: u64,
    /// Large requests served by a dedicated mapping of their own.
    pub dedicated: u64,
    /// Times a folio mapping failed and a smaller one was used.
    pub fallbacks: u64,
    /// Bytes handed out in fragments (small and dedicated), ever. Other
    /// threads' counts arrive once per folio, so this may lag by up to one
    /// folio per allocating thread.
    pub bytes_handed_out: u64,
}

#[derive(Default)]
struct Counters {
    mapped: AtomicU64,
    unmapped: AtomicU64,
    recycled: AtomicU64,
    retired: AtomicU64,
    dedicated: AtomicU64,
    fallbacks: AtomicU64,
    dedicated_bytes: AtomicU64,
    handed: AtomicU64,
}

pub(crate) struct Shared {
    /// A weak handle to ourselves, given to every folio we map.
    me: Weak<Shared>,
    id: u64,
    cfg: Config,
    small_max: usize,
    max_cached: usize,
    buckets: Buckets,
    free: Mutex<Vec<FolioPtr>>,
    stats: Counters,
    /// Told of folios mapped and unmapped, once set.
    hook: OnceLock<Arc<dyn FolioHook>>,
}

/// A folio pointer owned by the free list.
struct FolioPtr(NonNull<Folio>);
// SAFETY: an unused folio (count zero) is owned by whoever holds this.
unsafe impl Send for FolioPtr {}

impl Drop for FolioPtr {
    fn drop(&mut self) {
        // SAFETY: the free list owns unused folios outright.
        unsafe { Folio::destroy(self.0) }
    }
}

enum Buckets {
    /// Buckets live in the allocating threads themselves (see
    /// [`THREAD_BUCKETS`]); the cache only knows its id.
    PerThread,
    PerCpu(Box<[PerCpuBucket]>),
}

/// Ids for caches, so a thread's buckets can be matched to their cache.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's bucket for one cache. Owned by the thread, dropped when the
/// thread exits (or when a later lookup finds its cache gone), so only the
/// owner ever touches the bucket or its folio's `local` counter.
struct ThreadBucket {
    cache_id: u64,
    home: Weak<Shared>,
    state: BucketState,
}

impl Drop for ThreadBucket {
    fn drop(&mut self) {
        let home = self.home.upgrade();
        if let Some(h) = &home {
            h.flush_counts(&mut self.state);
        }
        if let Some(f) = self.state.release() {
            // SAFETY: the bucket held the last reference; `last_put` routes
            // the folio to its cache or unmaps it if the cache is gone.
            unsafe { folio::last_put(f) }
        }
    }
}

/// This thread's buckets: the most recently used one inline (the fast path
/// reaches it with no pointer chase), others in a list.
struct ThreadBuckets {
    first: Option<ThreadBucket>,
    rest: Vec<ThreadBucket>,
}

/// Empties [`THREAD_BUCKETS`] when the thread exits.
struct BucketGuard;

impl Drop for BucketGuard {
    fn drop(&mut self) {
        let taken = THREAD_BUCKETS.with(|cell| {
            // SAFETY: this thread's own buckets, not borrowed elsewhere now.
            let set: &mut ThreadBuckets = unsafe { &mut *cell.get() };
            (set.first.take(), std::mem::take(&mut set.rest))
        });
        // Dropped outside the borrow: releasing folios touches no bucket.
        drop(taken);
    }
}

thread_local! {
    /// This thread's buckets. `ManuallyDrop`, so the thread-local needs no
    /// destructor and each access skips the lazy-registration check;
    /// [`BUCKET_GUARD`], registered when the first bucket is made, empties
    /// it at thread exit.
    static THREAD_BUCKETS: UnsafeCell<ManuallyDrop<ThreadBuckets>> = const {
        UnsafeCell::new(ManuallyDrop::new(ThreadBuckets { first: None, rest: Vec::new() }))
    };
    static BUCKET_GUARD: BucketGuard = const { BucketGuard };
}

/// The allocation state of one bucket.
struct BucketState {
    folio: Option<NonNull<Folio>>,
    /// Address of the folio's first byte, and one past its end.
    base: usize,
    end: usize,
    /// Next free address.
    next: usize,
    /// References to `folio` this bucket holds, besides the folio's `local`.
    bias: usize,
    /// Whether this bucket belongs to one thread (enables local returns).
    owned: bool,
    /// Bytes handed out since the last flush into the cache's counter.
    handed: u64,
    /// Early restarts of the current folio since the last flush (counted
    /// as recycles; kept here so the hot path touches no shared counter).
    restarts: u64,
}

impl BucketState {
    const fn new(owned: bool) -> BucketState {
        BucketState {
            folio: None,
            base: 0,
            end: 0,
            next: 0,
            bias: 0,
            owned,
            handed: 0,
            restarts: 0,
        }
    }
}

#[derive(Default)]
struct PerCpuBucket {
    state: Mutex<BucketState>,
    _pad: [u64; 8],
}

impl Default for BucketState {
    fn default() -> BucketState {
        BucketState::new(false)
    }
}

// SAFETY: the folio pointer inside is owned state; per-CPU buckets are
// behind a mutex, per-thread ones never leave their thread.
unsafe impl Send for BucketState {}

impl BucketState {
    /// The fast path: bump and spend one reference of the bias.
    #[inline]
    fn alloc(&mut self, len: usize, align: usize, sh: &Shared) -> Result<FragMut, FragError> {
        match self.try_bump(len, align) {
            Some(f) => Ok(f),
            None => self.alloc_slow(len, align, sh),
        }
    }

    /// Bump within the current folio, or `None` if it does not fit (or no
    /// folio, or the bias is spent). `len <= isize::MAX / 2` (checked by
    /// callers), so the additions cannot overflow.
    #[inline(always)]
    fn try_bump(&mut self, len: usize, align: usize) -> Option<FragMut> {
        if self.next != self.base {
            self.restart_if_unused();
        }
        let start = (self.next + (align - 1)) & !(align - 1);
        let stop = start + len;
        if stop > self.end || self.bias < 2 {
            return None;
        }
        self.next = stop;
        self.bias -= 1;
        self.handed += len as u64;
        // SAFETY: start..stop is inside the current folio, past every range
        // handed out since it was (re)started, and one bias reference moves
        // to the handle. `end` is non-zero only while `folio` is set.
        unsafe {
            Some(FragMut::from_raw(
                NonNull::new_unchecked(start as *mut u8),
                len,
                self.folio.unwrap_unchecked(),
            ))
        }
    }

    /// If no handle into the current folio is alive, starts carving it
    /// from the beginning again, so a loop that frees what it allocates
    /// keeps reusing the same cache-hot bytes (as malloc's LIFO free lists
    /// do) instead of walking the whole folio. Handles alive are
    /// `refs - bias - local`; none means none can appear (only this bucket
    /// makes them) and nobody, the kernel included, holds the memory.
    #[inline(always)]
    fn restart_if_unused(&mut self) {
        // SAFETY: `next != base` only while a folio is installed, and the
        // bucket holds references to it; `local` is this thread's alone.
        let folio = unsafe { self.folio.unwrap_unchecked().as_ref() };
        // SAFETY: as just said, `local` is this thread's alone.
        let local = unsafe { *folio.local.get() };
        // Only when this thread has dropped something: a producer whose
        // fragments are all dropped elsewhere never reads `refs` here, the
        // line the consumers write. Acquire: pairs with the Release of
        // remote drops, so their reads of the bytes happen before we hand
        // the bytes out again.
        if local != 0
            && folio.refs.load(Ordering::Acquire) == self.bias + local
            && !folio.is_retired()
        {
            // SAFETY: as above.
            unsafe { *folio.local.get() = 0 };
            self.bias += local;
            self.next = self.base;
            self.restarts += 1;
        }
    }

    /// Moves the local returns into the bias.
    fn collect_local(&mut self, f: NonNull<Folio>) {
        // SAFETY: as in `held`.
        let local = unsafe { &mut *f.as_ref().local.get() };
        self.bias += std::mem::take(local);
    }

    #[cold]
    fn alloc_slow(&mut self, len: usize, align: usize, sh: &Shared) -> Result<FragMut, FragError> {
        if let Some(f) = self.folio {
            self.collect_local(f);
            // SAFETY: we hold references, so the folio is alive.
            let folio = unsafe { f.as_ref() };
            if folio.refs.load(Ordering::Acquire) == self.bias && !folio.is_retired() {
                // Every handle is gone (none can appear: only we make them).
                // Start the folio over while it is still hot in the cache.
                sh.recycled(f);
                self.next = self.base;
            } else if self.bias < 2 {
                // Only the bias ran out (many empty fragments): top it up.
                folio.refs.fetch_add(BIAS, Ordering::Relaxed);
                self.bias += BIAS;
            }
            let start = (self.next + (align - 1)) & !(align - 1);
            if start + len <= self.end && self.bias >= 2 {
                return self.alloc(len, align, sh);
            }
        }
        self.refill(sh)?;
        let start = (self.next + (align - 1)) & !(align - 1);
        if start + len > self.end {
            // The folio we got is smaller than configured (fall-back).
            return sh.alloc_dedicated(len, align);
        }
        self.alloc(len, align, sh)
    }

    /// Gives up the current folio and takes a fresh or recycled one.
    fn refill(&mut self, sh: &Shared) -> Result<(), FragError> {
        sh.flush_counts(self);
        if let Some(f) = self.release() {
            // Every fragment was already gone: reuse the folio in place,
            // unless it was retired.
            // SAFETY: count is zero, we are the only owner.
            if unsafe { f.as_ref() }.is_retired() {
                sh.unmap(f);
            } else {
                sh.recycled(f);
                self.take(f);
                return Ok(());
            }
        }
        let f = sh.take_free().map_or_else(|| sh.map_folio(), Ok)?;
        self.take(f);
        Ok(())
    }

    /// Installs an unused folio (count zero) as the current one.
    fn take(&mut self, f: NonNull<Folio>) {
        // SAFETY: the folio is unused and now ours.
        let folio = unsafe { f.as_ref() };
        folio.refs.store(BIAS, Ordering::Relaxed);
        if self.owned {
            folio.owner.store(folio::thread_token(), Ordering::Relaxed);
        }
        self.bias = BIAS;
        self.base = folio.base().as_ptr() as usize;
        self.end = self.base + folio.size();
        self.next = self.base;
        self.folio = Some(f);
    }

    /// Returns every reference the bucket holds. If that was the last
    /// reference, the (now unused) folio is handed back to the caller.
    fn release(&mut self) -> Option<NonNull<Folio>> {
        let f = self.folio.take()?;
        // SAFETY: we hold references, so f is alive.
        let folio = unsafe { f.as_ref() };
        // From here on, drops on this thread go through the atomic.
        folio.owner.store(0, Ordering::Relaxed);
        self.collect_local(f);
        let held = std::mem::take(&mut self.bias);
        self.next = 0;
        self.base = 0;
        self.end = 0;
        let last = folio.refs.fetch_sub(held, Ordering::AcqRel) == held;
        last.then_some(f)
    }
}

impl Shared {
    /// Moves a bucket's plain counters (bytes handed out, in-place
    /// restarts) into the cache's shared ones.
    fn flush_counts(&self, b: &mut BucketState) {
        let n = std::mem::take(&mut b.handed);
        if n > 0 {
            self.stats.handed.fetch_add(n, Ordering::Relaxed);
        }
        let r = std::mem::take(&mut b.restarts);
        if r > 0 {
            self.stats.recycled.fetch_add(r, Ordering::Relaxed);
        }
    }

    /// Maps a new folio, halving the size on failure down to one page, as
    /// the kernel falls back from a high-order allocation to order 0.
    fn map_folio(self: &Shared) -> Result<NonNull<Folio>, FragError> {
        let mut size = self.cfg.folio_size;
        loop {
            match self.try_map(size, size == HUGE_PAGE) {
                Ok(m) => {
                    self.stats.mapped.fetch_add(1, Ordering::Relaxed);
                    return Ok(Folio::new(m, self.weak(), false));
                }
                Err(e) if size <= MIN_FOLIO => {
                    return Err(FragError::OutOfMemory {
                        len: size,
                        source: e,
                    });
                }
                Err(_) => {
                    self.stats.fallbacks.fetch_add(1, Ordering::Relaxed);
                    size /= 2;
                }
            }
        }
    }

    fn try_map(&self, size: usize, huge: bool) -> io::Result<Mapping> {
        if self.cfg.fail_maps_over.is_some_and(|max| size > max) {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Mapping::new(size, huge)
    }

    fn weak(&self) -> Weak<Shared> {
        self.me.clone()
    }

    fn take_free(&self) -> Option<NonNull<Folio>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.pop().map(|p| std::mem::ManuallyDrop::new(p).0)
    }

    fn recycled(&self, f: NonNull<Folio>) {
        self.stats.recycled.fetch_add(1, Ordering::Relaxed);
        if let Some(byte) = self.cfg.poison {
            // SAFETY: the count is zero: no handle points into it.
            unsafe { f.as_ref().fill(byte) };
        }
    }

    fn unmap(&self, f: NonNull<Folio>) {
        // SAFETY: callers own an unused folio.
        let folio = unsafe { f.as_ref() };
        if folio.is_retired() {
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.unmapped.fetch_add(1, Ordering::Relaxed);
        // SAFETY: unused and ours.
        unsafe { Folio::destroy(f) }
    }

    /// The hook told of folios mapped and unmapped, if one is set.
    pub(super) fn folio_hook(&self) -> Option<Arc<dyn FolioHook>> {
        self.hook.get().cloned()
    }

    /// The last reference to a folio of this cache is gone.
    ///
    /// # Safety
    /// The folio's count is zero and the caller gives it up.
    pub(super) unsafe fn folio_unused(&self, f: NonNull<Folio>) {
        // SAFETY: unused, so we may read and decide.
        let folio = unsafe { f.as_ref() };
        if folio.dedicated || folio.is_retired() {
            return self.unmap(f);
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() >= self.max_cached {
            drop(free);
            return self.unmap(f);
        }
        self.recycled(f);
        free.push(FolioPtr(f));
    }

    /// A mapping of its own for a request too large for a folio.
    #[cold]
    fn alloc_dedicated(&self, len: usize, align: usize) -> Result<FragMut, FragError> {
        let page = rustix::param::page_size();
        let extra = if align > page { align } else { 0 };
        let size = len
            .checked_add(extra)
            .and_then(|n| n.checked_next_multiple_of(page))
            .filter(|&n| n <= isize::MAX as usize / 2)
            .ok_or(FragError::TooLarge(len))?
            .max(page);
        let map = Mapping::new(size, false)
            .map_err(|source| FragError::OutOfMemory { len: size, source })?;
        let base = map.as_ptr().as_ptr() as usize;
        let start = (base + (align - 1)) & !(align - 1);
        let f = Folio::new(map, self.weak(), true);
        // SAFETY: fresh folio, ours alone.
        unsafe { f.as_ref() }.refs.store(1, Ordering::Relaxed);
        self.stats.mapped.fetch_add(1, Ordering::Relaxed);
        self.stats.dedicated.fetch_add(1, Ordering::Relaxed);
        self.stats
            .dedicated_bytes
            .fetch_add(len as u64, Ordering::Relaxed);
        // SAFETY: start..start+len fits in the mapping by construction, and
        // the single reference goes to the handle.
        Ok(unsafe { FragMut::from_raw(NonNull::new_unchecked(start as *mut u8), len, f) })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Per-thread buckets belong to their threads and release their folios
        // themselves (the folios find this cache gone and unmap).
        if let Buckets::PerCpu(v) = &mut self.buckets {
            for b in v.iter_mut() {
                let s = b.state.get_mut().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = s.release() {
                    // SAFETY: the bucket held the last reference.
                    unsafe { Folio::destroy(f) }
                }
            }
        }
    }
}

/// Runs `op` on the calling thread's bucket for `sh`, creating it if needed.
/// `None` only while the thread is being torn down (its buckets are gone).
#[inline(always)]
fn with_thread_bucket<R>(sh: &Shared, op: impl FnOnce(&mut BucketState) -> R) -> Option<R> {
    THREAD_BUCKETS.with(|cell| {
        // SAFETY: the set is this thread's own, and nothing `op` does
        // re-enters this function: allocation runs no user code, and the
        // drops it may cause (a retired folio, a stale bucket) do not
        // allocate from a cache.
        let set: &mut ThreadBuckets = unsafe { &mut *cell.get() };
        if let Some(b) = &mut set.first {
            if b.cache_id == sh.id {
                return Some(op(&mut b.state));
            }
        }
        thread_bucket_slow(set, sh).map(op)
    })
}

/// If this thread's bucket for `folio` has just handed out the range ending
/// at `old_end`, moves its bump pointer back to `new_end`. The caller holds
/// the only handle to `new_end..old_end`, so nobody can see those bytes.
pub(super) fn give_back_tail(folio: NonNull<Folio>, old_end: usize, new_end: usize) {
    // SAFETY: the caller holds a reference, so the folio is alive.
    if unsafe { folio.as_ref() }.owner.load(Ordering::Relaxed) != folio::thread_token() {
        return; // not carved by this thread's bucket (any more)
    }
    THREAD_BUCKETS.with(|cell| {
        // SAFETY: this thread's own buckets; nothing here re-enters.
        let set: &mut ThreadBuckets = unsafe { &mut *cell.get() };
        for b in set.first.iter_mut().chain(set.rest.iter_mut()) {
            let st = &mut b.state;
            if st.folio == Some(folio) && st.next == old_end {
                st.next = new_end;
                st.handed -= (old_end - new_end) as u64;
            }
        }
    });
}

#[cold]
fn thread_bucket_slow<'a>(set: &'a mut ThreadBuckets, sh: &Shared) -> Option<&'a mut BucketState> {
    // Make sure the buckets are emptied at thread exit; refuse to make new
    // ones once that has happened (the caller falls back).
    BUCKET_GUARD.try_with(|_| ()).ok()?;
    // Forget buckets of caches that are gone (their folios unmap).
    set.rest.retain(|b| b.home.strong_count() > 0);
    if set
        .first
        .as_ref()
        .is_some_and(|b| b.home.strong_count() == 0)
    {
        set.first = None;
    }
    let mine = match set.rest.iter().position(|b| b.cache_id == sh.id) {
        Some(i) => set.rest.swap_remove(i),
        None => ThreadBucket {
            cache_id: sh.id,
            home: sh.weak(),
            state: BucketState::new(true),
        },
    };
    // Most recently used first, so the fast path hits.
    if let Some(old) = set.first.replace(mine) {
        set.rest.push(old);
    }
    set.first.as_mut().map(|b| &mut b.state)
}

impl FragCache {
    /// A cache with the default settings: 64 KiB folios, per-thread buckets.
    pub fn new() -> FragCache {
        Builder::default()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to choose folio size, bucket mode and debug options.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The process-wide cache with default settings, created on first use.
    pub fn global() -> &'static FragCache {
        static GLOBAL: OnceLock<FragCache> = OnceLock::new();
        GLOBAL.get_or_init(FragCache::new)
    }

    /// Sets the hook told of every folio mapped from now on and of its
    /// unmapping (folios mapped before are not reported). Returns false,
    /// changing nothing, if a hook is already set: a cache has one.
    #[cfg_attr(not(feature = "uring"), allow(dead_code))]
    pub(crate) fn set_folio_hook(&self, hook: Arc<dyn FolioHook>) -> bool {
        self.shared.hook.set(hook).is_ok()
    }

    /// The configured folio size.
    pub fn folio_size(&self) -> usize {
        self.shared.cfg.folio_size
    }

    /// Allocates `len` bytes aligned to `align` (a power of two). The
    /// contents are unspecified (stale bytes of this process).
    ///
    /// Requests larger than half a folio, or aligned beyond a page, get a
    /// dedicated mapping of their own (a system call; counted in
    /// [`FragStats::dedicated`]) rather than wasting most of a folio.
    #[inline]
    pub fn alloc(&self, len: usize, align: usize) -> Result<FragMut, FragError> {
        if !align.is_power_of_two() {
            return Err(FragError::BadAlign(align));
        }
        let sh = &*self.shared;
        if len > sh.small_max || align > MIN_FOLIO {
            return sh.alloc_dedicated(len, align);
        }
        match &sh.buckets {
            Buckets::PerThread => match with_thread_bucket(sh, |b| b.alloc(len, align, sh)) {
                Some(r) => r,
                // A thread-local destructor allocating after the buckets
                // were torn down: correct, if slow.
                None => sh.alloc_dedicated(len, align),
            },
            Buckets::PerCpu(v) => {
                let b = &v[rustix::thread::sched_getcpu() % v.len()];
                let mut s = b.state.lock().unwrap_or_else(|e| e.into_inner());
                s.alloc(len, align, sh)
            }
        }
    }

    /// Like [`alloc`](Self::alloc), but the bytes are zero, even when the
    /// folio is recycled (the kernel's `__GFP_ZERO` bug the seeds fixed).
    pub fn alloc_zeroed(&self, len: usize, align: usize) -> Result<FragMut, FragError> {
        let mut f = self.alloc(len, align)?;
        f.fill(0);
        Ok(f)
    }

    /// Copies `data` into a new fragment (byte-aligned). One bump and one
    /// `memcpy`; no heap allocation.
    ///
    /// The common case (per-thread buckets, room in the current folio) is
    /// inlined into the caller whole, everything else is out of line: left
    /// to the compiler, the whole function was often not inlined, and a
    /// cycle of `memdup(256 B)` + drop then took 15 to 21 ns instead of 7
    /// to 10 in the `alloc` bench.
    #[inline(always)]
    pub fn memdup(&self, data: &[u8]) -> Result<Frag, FragError> {
        let sh = &*self.shared;
        if matches!(sh.buckets, Buckets::PerThread) && data.len() <= sh.small_max {
            if let Some(Some(mut f)) = with_thread_bucket(sh, |b| b.try_bump(data.len(), 1)) {
                f.copy_from_slice(data);
                return Ok(f.freeze());
            }
        }
        self.memdup_slow(data)
    }

    /// [`memdup`](Self::memdup) by way of [`alloc`](Self::alloc): a new
    /// folio, a dedicated mapping, or per-CPU buckets.
    #[cold]
    #[inline(never)]
    fn memdup_slow(&self, data: &[u8]) -> Result<Frag, FragError> {
        let mut f = self.alloc(data.len(), 1)?;
        f.copy_from_slice(data);
        Ok(f.freeze())
    }

    /// Releases unused folios: the cached ones, and the calling thread's
    /// current folio (per-thread) or every bucket's (per-CPU), which are
    /// unmapped once their last fragment drops. Returns the number of folios
    /// unmapped now.
    pub fn drain(&self) -> usize {
        let sh = &*self.shared;
        let mut n = 0;
        let mut release = |s: &mut BucketState| {
            sh.flush_counts(s);
            if let Some(f) = s.release() {
                sh.unmap(f);
                n += 1;
            }
        };
        match &sh.buckets {
            Buckets::PerThread => with_thread_bucket(sh, &mut release).unwrap_or(()),
            Buckets::PerCpu(v) => {
                for b in v.iter() {
                    release(&mut b.state.lock().unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
        let free = std::mem::take(&mut *sh.free.lock().unwrap_or_else(|e| e.into_inner()));
        for p in free {
            sh.unmap(std::mem::ManuallyDrop::new(p).0);
            n += 1;
        }
        n
    }

    /// A snapshot of the cache's counters.
    pub fn stats(&self) -> FragStats {
        let sh = &*self.shared;
        let s = &sh.stats;
        // Other threads flush their byte counts once per folio.
        match &sh.buckets {
            Buckets::PerThread => with_thread_bucket(sh, |b| sh.flush_counts(b)).unwrap_or(()),
            Buckets::PerCpu(v) => {
                for b in v.iter() {
                    sh.flush_counts(&mut b.state.lock().unwrap_or_else(|e| e.into_inner()));
                }
            }
        }
        let handed = s.handed.load(Ordering::Relaxed);
        let mapped = s.mapped.load(Ordering::Relaxed);
        FragStats {
            folios_live: mapped - s.unmapped.load(Ordering::Relaxed),
            folios_cached: sh.free.lock().unwrap_or_else(|e| e.into_inner()).len() as u64,
            folios_mapped: mapped,
            recycled: s.recycled.load(Ordering::Relaxed),
            retired: s.retired.load(Ordering::Relaxed),
            dedicated: s.dedicated.load(Ordering::Relaxed),
            fallbacks: s.fallbacks.load(Ordering::Relaxed),
            bytes_handed_out: handed + s.dedicated_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retired_folio_is_unmapped_not_reused() {
        let c = FragCache::builder().poison_recycled(0xEE).build().unwrap();
        let f = c.memdup(&[1; 100]).unwrap();
        let id = f.folio_id();
        f.retire();
        // Use up the folio so the bucket lets go of it, while f lives on.
        let mut others = Vec::new();
        while others.len() < 2000 {
            others.push(c.memdup(&[2; 100]).unwrap());
        }
        assert!(f.iter().all(|&b| b == 1));
        others.clear();
        drop(f);
        let s = c.stats();
        assert_eq!(s.retired, 1, "{s:?}");
        for _ in 0..2000 {
            assert_ne!(
                c.memdup(&[3; 100]).unwrap().folio_id(),
                id,
                "retired folio was reused"
            );
        }
    }

    #[test]
    fn the_bias_is_topped_up_when_spent() {
        let c = FragCache::new();
        let keep = c.memdup(b"x").unwrap();
        // Keep the invariant count == bias + local + live handles while
        // shrinking the bias.
        with_thread_bucket(&c.shared, |st| {
            // SAFETY: the bucket holds references, so the folio is alive.
            let folio = unsafe { st.folio.unwrap().as_ref() };
            folio.refs.fetch_sub(st.bias - 3, Ordering::Relaxed);
            st.bias = 3;
        })
        .unwrap();
        let v: Vec<Frag> = (0..10).map(|_| c.memdup(b"y").unwrap()).collect();
        drop(keep);
        drop(v);
        c.drain();
        assert_eq!(c.stats().folios_live, 0, "the count balanced after top-ups");
    }
}

#[cfg(test)]
mod send_sync {
    fn is<T: Send + Sync>() {}
    #[test]
    fn handles_are_send_and_sync() {
        is::<super::FragCache>();
        is::<super::Frag>();
        is::<super::FragMut>();
    }
}
