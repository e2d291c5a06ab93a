//! `FragCache`: the allocator's public face. It picks the caller's bucket
//! (per-thread or per-CPU) and sends requests too large for a folio to a
//! dedicated mapping; the bucket's bump (`bump.rs`) does the rest.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use super::buckets::{with_thread_bucket, Buckets};
use super::bump::BucketState;
use super::config::Builder;
use super::folio::{FolioHook, Frag, FragMut};
use super::pool::{Shared, MIN_FOLIO};
use super::FragError;

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
    pub(super) shared: Arc<Shared>,
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
#[non_exhaustive]
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
    /// folio is recycled: each fragment is zeroed (a `memset` of `len`), not
    /// only fresh mappings.
    pub fn alloc_zeroed(&self, len: usize, align: usize) -> Result<FragMut, FragError> {
        let mut f = self.alloc(len, align)?;
        f.fill(0);
        Ok(f)
    }

    /// Copies `data` into a new fragment (byte-aligned). One bump and one
    /// `memcpy`; no heap allocation.
    // The common case (per-thread buckets, room in the current folio) is
    // inlined into the caller whole, everything else is out of line: left
    // to the compiler, the whole function was often not inlined, and a
    // cycle of `memdup(256 B)` + drop then took 15 to 21 ns instead of 7
    // to 10 in the `alloc` bench.
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
                // SAFETY: the bucket held the last reference: count zero,
                // and `release` gave the folio to us.
                unsafe { sh.unmap(f) };
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
            // SAFETY: the free list owned the folio, count zero.
            unsafe { sh.unmap(p.into_inner()) };
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
