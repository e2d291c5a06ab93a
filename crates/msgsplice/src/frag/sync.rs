//! The primitives of the folio protocol, swapped for loom's in the unit
//! tests built with `--cfg loom`, so that the model in `loom_model.rs`
//! runs the allocator's own code, not a copy of it. Any other build, even
//! with `--cfg loom` (loom is a dev-dependency only), keeps `std`'s.
//!
//! Only what the cross-thread protocol uses lives here: a folio's atomics,
//! its owner-only return counter, the thread token that names its owner,
//! and the lock of the free list that hands folios from the thread that
//! drops them to the thread that carves them next. Counters and the
//! per-CPU locks keep `std`'s types.

#[cfg(all(test, msgsplice_loom))]
pub(super) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize};
#[cfg(all(test, msgsplice_loom))]
pub(super) use loom::sync::Mutex;
#[cfg(not(all(test, msgsplice_loom)))]
pub(super) use std::sync::atomic::{fence, AtomicBool, AtomicUsize};
#[cfg(not(all(test, msgsplice_loom)))]
pub(super) use std::sync::Mutex;

#[cfg(all(test, msgsplice_loom))]
type Inner<T> = loom::cell::UnsafeCell<T>;
#[cfg(not(all(test, msgsplice_loom)))]
type Inner<T> = std::cell::UnsafeCell<T>;

/// A cell that one thread at a time may use, by the protocol's rule rather
/// than a lock. Under loom every access is checked against that rule: two
/// accesses not ordered by happens-before fail the model.
pub(super) struct OwnerCell<T>(Inner<T>);

impl<T> OwnerCell<T> {
    pub(super) fn new(value: T) -> OwnerCell<T> {
        OwnerCell(Inner::new(value))
    }

    /// Runs `op` on the value.
    ///
    /// # Safety
    /// No other thread accesses the cell until this returns.
    #[cfg(not(all(test, msgsplice_loom)))]
    #[inline(always)]
    pub(super) unsafe fn with_mut<R>(&self, op: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the caller guarantees that this access is the only one.
        op(unsafe { &mut *self.0.get() })
    }

    /// Runs `op` on the value; loom checks that no other access overlaps.
    ///
    /// # Safety
    /// No other thread accesses the cell until this returns.
    #[cfg(all(test, msgsplice_loom))]
    pub(super) unsafe fn with_mut<R>(&self, op: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: the caller guarantees that this access is the only one,
        // and loom fails the model if it is not.
        self.0.with_mut(|p| op(unsafe { &mut *p }))
    }
}

#[cfg(not(all(test, msgsplice_loom)))]
std::thread_local! {
    static TOKEN: u8 = const { 0 };
}

/// A non-zero number unique to the calling thread among live threads (the
/// address of a thread-local), cheap to compute.
#[cfg(not(all(test, msgsplice_loom)))]
#[inline]
pub(super) fn thread_token() -> usize {
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Under loom, model threads share one OS thread, so `std` thread-locals
/// cannot tell them apart: each model thread draws a number instead.
#[cfg(all(test, msgsplice_loom))]
pub(super) fn thread_token() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    loom::thread_local! {
        static TOKEN: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}
