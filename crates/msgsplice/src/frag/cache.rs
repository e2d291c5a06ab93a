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
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use thread_local::ThreadLocal;

use super::folio::{Folio, Frag, FragMut};
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
            BucketMode::PerThread => Buckets::PerThread(ThreadLocal::new()),
            BucketMode::PerCpu => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                Buckets::PerCpu((0..n).map(|_| PerCpuBucket::default()).collect())
            }
        };
        let max_cached = (c.max_cached / c.folio_size).max(2);
        Ok(FragCache {
            shared: Arc::new_cyclic(|me| Shared {
                me: me.clone(),
                small_max: c.folio_size / 2,
                max_cached,
                cfg: c,
                buckets,
                free: Mutex::new(Vec::new()),
                stats: Counters::default(),
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
    /// Times a folio was reused after all its fragments were dropped.
    pub recycled: u64,
    /// Folios unmapped instead of reused because the kernel might still
    /// have been reading them.
    pub retired: u64,
    /// Large requests served by a dedicated mapping of their own.
    pub dedicated: u64,
    /// Times a folio mapping failed and a smaller one was used.
    pub fallbacks: u64,
    /// Bytes handed out in fragments (small and dedicated), ever.
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
}

pub(crate) struct Shared {
    /// A weak handle to ourselves, given to every folio we map.
    me: Weak<Shared>,
    cfg: Config,
    small_max: usize,
    max_cached: usize,
    buckets: Buckets,
    free: Mutex<Vec<FolioPtr>>,
    stats: Counters,
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

// One per cache, so the size of the thread-local variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Buckets {
    PerThread(ThreadLocal<ThreadBucket>),
    PerCpu(Box<[PerCpuBucket]>),
}

/// The allocation state of one bucket.
#[derive(Default)]
struct BucketState {
    folio: Option<NonNull<Folio>>,
    /// Address of the folio's first byte, and one past its end.
    base: usize,
    end: usize,
    /// Next free address.
    next: usize,
    /// References to `folio` this bucket still holds.
    bias: usize,
}

#[derive(Default)]
struct ThreadBucket {
    /// Only ever touched by the thread that owns this bucket.
    state: UnsafeCell<BucketState>,
    /// Written only by the owner (load + store, no RMW); read by `stats`.
    handed: AtomicU64,
}

// SAFETY: `state` is only accessed through `ThreadLocal::get`, which hands
// each thread its own bucket, or with `&mut` (drop); other threads only read
// the atomic `handed`.
unsafe impl Sync for ThreadBucket {}
// SAFETY: the folio pointer inside is owned state that may move threads.
unsafe impl Send for ThreadBucket {}

#[derive(Default)]
struct PerCpuBucket {
    state: Mutex<BucketState>,
    handed: AtomicU64,
    _pad: [u64; 6],
}

// SAFETY: the state is behind a mutex.
unsafe impl Send for BucketState {}

impl BucketState {
    /// The fast path: bump and spend one reference of the bias.
    #[inline]
    fn alloc(
        &mut self,
        len: usize,
        align: usize,
        sh: &Shared,
        handed: &AtomicU64,
    ) -> Result<FragMut, FragError> {
        let start = (self.next + (align - 1)) & !(align - 1);
        let stop = start + len;
        if stop > self.end || self.bias < 2 {
            return self.alloc_slow(len, align, sh, handed);
        }
        self.next = stop;
        self.bias -= 1;
        // Single writer: a plain load and store, not a locked add.
        handed.store(
            handed.load(Ordering::Relaxed) + len as u64,
            Ordering::Relaxed,
        );
        // SAFETY: start..stop is inside the current folio, past every range
        // handed out before, and one bias reference moves to the handle.
        unsafe {
            Ok(FragMut::from_raw(
                NonNull::new_unchecked(start as *mut u8),
                len,
                self.folio.unwrap_unchecked(),
            ))
        }
    }

    #[cold]
    fn alloc_slow(
        &mut self,
        len: usize,
        align: usize,
        sh: &Shared,
        handed: &AtomicU64,
    ) -> Result<FragMut, FragError> {
        if let Some(f) = self.folio {
            if self.bias < 2 && self.next + len <= self.end {
                // Only the bias ran out (many empty fragments): top it up.
                // SAFETY: we hold `bias` >= 1 references, so f is alive.
                unsafe { f.as_ref() }
                    .refs
                    .fetch_add(BIAS, Ordering::Relaxed);
                self.bias += BIAS;
                return self.alloc(len, align, sh, handed);
            }
        }
        self.refill(sh)?;
        let start = (self.next + (align - 1)) & !(align - 1);
        if start + len > self.end {
            // The folio we got is smaller than configured (fall-back).
            return sh.alloc_dedicated(len, align);
        }
        self.alloc(len, align, sh, handed)
    }

    /// Gives up the current folio and takes a fresh or recycled one.
    fn refill(&mut self, sh: &Shared) -> Result<(), FragError> {
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
        self.bias = BIAS;
        self.base = folio.base().as_ptr() as usize;
        self.end = self.base + folio.size();
        self.next = self.base;
        self.folio = Some(f);
    }

    /// Returns the rest of the bias. If that was the last reference, the
    /// (now unused) folio is handed back to the caller.
    fn release(&mut self) -> Option<NonNull<Folio>> {
        let f = self.folio.take()?;
        let bias = std::mem::take(&mut self.bias);
        self.next = 0;
        self.end = 0;
        // SAFETY: we hold `bias` references, so f is alive.
        let last = unsafe { f.as_ref() }.refs.fetch_sub(bias, Ordering::AcqRel) == bias;
        last.then_some(f)
    }
}

impl Shared {
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
        let release = |s: &mut BucketState| {
            if let Some(f) = s.release() {
                // SAFETY: the bucket held the last reference.
                unsafe { Folio::destroy(f) }
            }
        };
        match &mut self.buckets {
            Buckets::PerThread(tl) => tl.iter_mut().for_each(|b| release(b.state.get_mut())),
            Buckets::PerCpu(v) => v
                .iter_mut()
                .for_each(|b| release(b.state.get_mut().unwrap_or_else(|e| e.into_inner()))),
        }
    }
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
            Buckets::PerThread(tl) => {
                let b = tl.get_or_default();
                // SAFETY: `get_or_default` returns this thread's own bucket,
                // and nothing in `alloc` re-enters the cache on this thread
                // (no user code runs; dropping fragments does not touch
                // buckets).
                unsafe { (*b.state.get()).alloc(len, align, sh, &b.handed) }
            }
            Buckets::PerCpu(v) => {
                let b = &v[rustix::thread::sched_getcpu() % v.len()];
                let mut s = b.state.lock().unwrap_or_else(|e| e.into_inner());
                s.alloc(len, align, sh, &b.handed)
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
    #[inline]
    pub fn memdup(&self, data: &[u8]) -> Result<Frag, FragError> {
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
            if let Some(f) = s.release() {
                sh.unmap(f);
                n += 1;
            }
        };
        match &sh.buckets {
            Buckets::PerThread(tl) => {
                if let Some(b) = tl.get() {
                    // SAFETY: our own bucket, not re-entered.
                    release(unsafe { &mut *b.state.get() });
                }
            }
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
        let handed: u64 = match &sh.buckets {
            Buckets::PerThread(tl) => tl.iter().map(|b| b.handed.load(Ordering::Relaxed)).sum(),
            Buckets::PerCpu(v) => v.iter().map(|b| b.handed.load(Ordering::Relaxed)).sum(),
        };
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
mod send_sync {
    fn is<T: Send + Sync>() {}
    #[test]
    fn handles_are_send_and_sync() {
        is::<super::FragCache>();
        is::<super::Frag>();
        is::<super::FragMut>();
    }
}
