//! What a cache shares between its buckets: the free list of unused
//! folios, mapping and unmapping them (dedicated mappings too), and the
//! counters behind [`FragCache::stats`](super::FragCache::stats).

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use super::buckets::{self, Buckets};
use super::bump::BucketState;
use super::config::Config;
use super::folio::{Folio, FolioHook, FragMut};
use super::sync::Mutex;
use super::FragError;
use crate::sys::mmap::{Mapping, HUGE_PAGE};

/// Smallest folio: one page.
pub(super) const MIN_FOLIO: usize = 4096;

/// The counters of a cache; [`FragCache::stats`](super::FragCache::stats)
/// reads them.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) mapped: AtomicU64,
    pub(super) unmapped: AtomicU64,
    pub(super) recycled: AtomicU64,
    pub(super) retired: AtomicU64,
    pub(super) dedicated: AtomicU64,
    pub(super) fallbacks: AtomicU64,
    pub(super) dedicated_bytes: AtomicU64,
    pub(super) handed: AtomicU64,
}

/// The state of one cache, shared by its clones and (weakly) its folios.
pub(crate) struct Shared {
    /// A weak handle to ourselves, given to every folio we map.
    me: Weak<Shared>,
    pub(super) id: u64,
    pub(super) cfg: Config,
    /// Larger requests get a dedicated mapping.
    pub(super) small_max: usize,
    /// Most unused folios kept in `free`.
    max_cached: usize,
    pub(super) buckets: Buckets,
    /// Folios pass between threads through here, so loom sees this lock.
    pub(super) free: Mutex<Vec<FolioPtr>>,
    pub(super) stats: Counters,
    /// Told of folios mapped and unmapped, once set (io_uring's buffer
    /// table, for one).
    pub(super) hook: OnceLock<Arc<dyn FolioHook>>,
}

/// A folio pointer owned by the free list.
pub(super) struct FolioPtr(NonNull<Folio>);
// SAFETY: an unused folio (count zero) is owned by whoever holds this.
unsafe impl Send for FolioPtr {}

impl FolioPtr {
    /// Takes the folio out without unmapping it.
    pub(super) fn into_inner(self) -> NonNull<Folio> {
        std::mem::ManuallyDrop::new(self).0
    }
}

impl Drop for FolioPtr {
    fn drop(&mut self) {
        // SAFETY: the free list owns unused folios outright.
        unsafe { Folio::destroy(self.0) }
    }
}

impl Shared {
    /// The shared state for a checked configuration. Maps nothing yet.
    pub(super) fn new(cfg: Config, buckets: Buckets) -> Arc<Shared> {
        let max_cached = (cfg.max_cached / cfg.folio_size).max(2);
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            id: buckets::next_cache_id(),
            small_max: cfg.folio_size / 2,
            max_cached,
            cfg,
            buckets,
            free: Mutex::new(Vec::new()),
            stats: Counters::default(),
            hook: OnceLock::new(),
        })
    }

    /// The hook told of folios mapped and unmapped, if one is set.
    pub(super) fn folio_hook(&self) -> Option<Arc<dyn FolioHook>> {
        self.hook.get().cloned()
    }

    /// Moves a bucket's plain counters (bytes handed out, in-place
    /// restarts) into the cache's shared ones.
    pub(super) fn flush_counts(&self, b: &mut BucketState) {
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
    pub(super) fn map_folio(&self) -> Result<NonNull<Folio>, FragError> {
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

    /// One mapping of `size` bytes, unless fault injection refuses it.
    fn try_map(&self, size: usize, huge: bool) -> io::Result<Mapping> {
        if self.cfg.fail_maps_over.is_some_and(|max| size > max) {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        Mapping::new(size, huge)
    }

    /// The handle a folio keeps to find its cache again.
    pub(super) fn weak(&self) -> Weak<Shared> {
        self.me.clone()
    }

    /// An unused folio from the free list (count zero, now the caller's).
    pub(super) fn take_free(&self) -> Option<NonNull<Folio>> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.pop().map(FolioPtr::into_inner)
    }

    /// Counts a reuse of `f`, and poisons it in debug mode.
    ///
    /// # Safety
    /// No handle points into `f`: its count is zero, or only the bias of
    /// the caller's bucket is left.
    pub(super) unsafe fn recycled(&self, f: NonNull<Folio>) {
        self.stats.recycled.fetch_add(1, Ordering::Relaxed);
        if let Some(byte) = self.cfg.poison {
            // SAFETY: no handle points into `f` (the caller's promise), so
            // nobody reads the bytes we overwrite.
            unsafe { f.as_ref().fill(byte) };
        }
    }

    /// Unmaps an unused folio and frees its header.
    ///
    /// # Safety
    /// The count of `f` is zero and the caller gives `f` up.
    pub(super) unsafe fn unmap(&self, f: NonNull<Folio>) {
        // SAFETY: the caller owns `f`, so its header is alive.
        let folio = unsafe { f.as_ref() };
        if folio.is_retired() {
            self.stats.retired.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.unmapped.fetch_add(1, Ordering::Relaxed);
        // SAFETY: count zero and given up by the caller, as `destroy` asks.
        unsafe { Folio::destroy(f) }
    }

    /// The last reference to a folio of this cache is gone.
    ///
    /// # Safety
    /// The folio's count is zero and the caller gives it up.
    pub(super) unsafe fn folio_unused(&self, f: NonNull<Folio>) {
        // SAFETY: the caller gives us `f`, so its header is alive.
        let folio = unsafe { f.as_ref() };
        if folio.dedicated || folio.is_retired() {
            // SAFETY: count zero, and ours to give up (the caller's promise).
            return unsafe { self.unmap(f) };
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() >= self.max_cached {
            drop(free);
            // SAFETY: as above.
            return unsafe { self.unmap(f) };
        }
        // SAFETY: count zero: no handle points into it.
        unsafe { self.recycled(f) };
        free.push(FolioPtr(f));
    }

    /// A mapping of its own for a request too large for a folio.
    #[cold]
    pub(super) fn alloc_dedicated(&self, len: usize, align: usize) -> Result<FragMut, FragError> {
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
        // SAFETY: `Folio::new` returned a live header that nobody else has
        // seen yet.
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
                    // SAFETY: the bucket held the last reference, so the
                    // count is zero, and the cache that could reuse `f` is
                    // going away.
                    unsafe { Folio::destroy(f) }
                }
            }
        }
    }
}
