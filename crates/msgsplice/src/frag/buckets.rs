//! Buckets, the carving state of a cache, and how a thread finds its own.
//!
//! Per-thread buckets live in the thread itself, in a thread-local list
//! keyed by cache id, so the fast path is a thread-local lookup with no lock;
//! per-CPU buckets live in the cache, each behind an uncontended mutex.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Weak};

use super::bump::BucketState;
use super::config::BucketMode;
use super::folio::{self, Folio};
use super::pool::Shared;
use super::sync::thread_token;

/// Where a cache's buckets are.
pub(super) enum Buckets {
    /// Buckets live in the allocating threads themselves (see
    /// [`THREAD_BUCKETS`]); the cache only knows its id.
    PerThread,
    /// One per CPU the process may run on, indexed by `sched_getcpu`.
    PerCpu(Box<[PerCpuBucket]>),
}

impl Buckets {
    pub(super) fn new(mode: BucketMode) -> Buckets {
        match mode {
            BucketMode::PerThread => Buckets::PerThread,
            BucketMode::PerCpu => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                Buckets::PerCpu((0..n).map(|_| PerCpuBucket::default()).collect())
            }
        }
    }
}

/// A CPU's bucket, padded so that neighbours do not share a cache line.
#[derive(Default)]
pub(super) struct PerCpuBucket {
    pub(super) state: Mutex<BucketState>,
    _pad: [u64; 8],
}

/// Ids for caches, so a thread's buckets can be matched to their cache.
static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh cache id.
pub(super) fn next_cache_id() -> u64 {
    NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed)
}

/// A thread's bucket for one cache. Owned by the thread, dropped when the
/// thread exits (or when a later lookup finds its cache gone), so only the
/// owner ever touches the bucket or its folio's `local` counter.
pub(super) struct ThreadBucket {
    cache_id: u64,
    home: Weak<Shared>,
    pub(super) state: BucketState,
}

impl ThreadBucket {
    /// An empty bucket of the calling thread for the cache `sh`.
    pub(super) fn new(sh: &Shared) -> ThreadBucket {
        ThreadBucket {
            cache_id: sh.id,
            home: sh.weak(),
            state: BucketState::new(true),
        }
    }
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

/// Runs `op` on the calling thread's bucket for `sh`, creating it if needed.
/// `None` only while the thread is being torn down (its buckets are gone).
#[inline(always)]
pub(super) fn with_thread_bucket<R>(
    sh: &Shared,
    op: impl FnOnce(&mut BucketState) -> R,
) -> Option<R> {
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
    if unsafe { folio.as_ref() }.owner.load(Ordering::Relaxed) != thread_token() {
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
        None => ThreadBucket::new(sh),
    };
    // Most recently used first, so the fast path hits.
    if let Some(old) = set.first.replace(mine) {
        set.rest.push(old);
    }
    set.first.as_mut().map(|b| &mut b.state)
}
