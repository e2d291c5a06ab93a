//! A bucket's folio and the bump allocation that carves it.
//!
//! A bucket that takes a folio sets its atomic count to a huge [`BIAS`] in
//! one store and keeps a plain copy, so handing out a fragment moves one
//! reference from the copy to the handle with no atomic at all. When the
//! folio is used up the bucket gives back what is left of its copy in one
//! atomic subtraction, and whoever takes the count to zero, the bucket or
//! the last fragment's drop, decides the folio's fate.

use std::ptr::NonNull;
use std::sync::atomic::Ordering;

use super::folio::{Folio, FragMut};
use super::pool::Shared;
use super::sync::thread_token;
use super::FragError;

/// References a bucket holds on its current folio; far more than fragments
/// a folio can hold, and topped up if ever spent (zero-length fragments).
pub(super) const BIAS: usize = 1 << 32;

/// The allocation state of one bucket.
pub(super) struct BucketState {
    pub(super) folio: Option<NonNull<Folio>>,
    /// Address of the folio's first byte, and one past its end.
    base: usize,
    end: usize,
    /// Next free address.
    pub(super) next: usize,
    /// References to `folio` this bucket holds, besides the folio's `local`.
    pub(super) bias: usize,
    /// Whether this bucket belongs to one thread (enables local returns).
    owned: bool,
    /// Bytes handed out since the last flush into the cache's counter.
    pub(super) handed: u64,
    /// Early restarts of the current folio since the last flush (counted
    /// as recycles; kept here so the hot path touches no shared counter).
    pub(super) restarts: u64,
}

// SAFETY: the folio pointer inside is owned state; per-CPU buckets are
// behind a mutex, per-thread ones never leave their thread.
unsafe impl Send for BucketState {}

impl Default for BucketState {
    fn default() -> BucketState {
        BucketState::new(false)
    }
}

impl BucketState {
    /// An empty bucket; `owned` if one thread alone will ever use it, which
    /// lets that thread's drops return references without an atomic.
    pub(super) const fn new(owned: bool) -> BucketState {
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

    /// Allocates `len` bytes aligned to `align`: the fast path, or a new
    /// folio when the current one is used up.
    #[inline]
    pub(super) fn alloc(
        &mut self,
        len: usize,
        align: usize,
        sh: &Shared,
    ) -> Result<FragMut, FragError> {
        match self.try_bump(len, align) {
            Some(f) => Ok(f),
            None => self.alloc_slow(len, align, sh),
        }
    }

    /// The fast path: bump within the current folio and spend one reference
    /// of the bias; `None` if it does not fit (or no folio, or the bias is
    /// spent). Callers keep `len <= isize::MAX / 2`, so nothing overflows.
    #[inline(always)]
    pub(super) fn try_bump(&mut self, len: usize, align: usize) -> Option<FragMut> {
        // A fresh or restarted folio has nothing to take back.
        if self.next != self.base {
            self.restart_if_unused();
        }
        let start = (self.next + (align - 1)) & !(align - 1);
        let stop = start + len;
        // Keep one bias reference: the bucket's own hold on the folio.
        if stop > self.end || self.bias < 2 {
            return None;
        }
        self.next = stop;
        self.bias -= 1; // moves to the handle: no atomic
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
        // bucket holds references to it.
        let folio = unsafe { self.folio.unwrap_unchecked().as_ref() };
        // SAFETY: a folio's `local` is used only by the thread whose bucket
        // carves it, and this is that bucket.
        let local = unsafe { folio.local.get() };
        // Only when this thread has dropped something: a producer whose
        // fragments are all dropped elsewhere never reads `refs` here, the
        // line the consumers write. Acquire: pairs with the Release of
        // remote drops, so their reads of the bytes happen before we hand
        // the bytes out again.
        if local != 0
            && folio.refs.load(Ordering::Acquire) == self.bias + local
            && !folio.is_retired()
        {
            // Reuses `local` as read above, not a second read: the count
            // cannot change (only this thread adds to it).
            // SAFETY: as above.
            unsafe { folio.local.clear() };
            self.bias += local;
            self.next = self.base;
            self.restarts += 1;
        }
    }

    /// Moves the references that handles dropped on this thread gave back
    /// into the bias.
    fn collect_local(&mut self, f: NonNull<Folio>) {
        // SAFETY: the bucket holds references, so `f` is alive, and its
        // `local` is used only by the thread whose bucket carves it: us.
        self.bias += unsafe { f.as_ref().local.take() };
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
                // SAFETY: only our bias is left, so no handle points into it.
                unsafe { sh.recycled(f) };
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
                // SAFETY: as just said; we give it up.
                unsafe { sh.unmap(f) };
            } else {
                // SAFETY: count zero: no handle points into it.
                unsafe { sh.recycled(f) };
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
            folio.owner.store(thread_token(), Ordering::Relaxed);
        }
        self.bias = BIAS;
        self.base = folio.base().as_ptr() as usize;
        self.end = self.base + folio.size();
        self.next = self.base;
        self.folio = Some(f);
    }

    /// Returns every reference the bucket holds. If that was the last
    /// reference, the (now unused) folio is handed back to the caller.
    pub(super) fn release(&mut self) -> Option<NonNull<Folio>> {
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
