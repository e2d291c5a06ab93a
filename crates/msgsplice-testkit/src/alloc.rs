//! A global allocator that counts heap allocations per thread.
//!
//! [`CountingAlloc`] wraps the system allocator and bumps a thread-local
//! counter on every `alloc`, `alloc_zeroed` and `realloc`;
//! [`thread_allocs`] reads the calling thread's counter. Counting per
//! thread means a measurement sees only the thread it watches: the test
//! harness, a draining reader or a server's other threads allocate as they
//! like without making an "allocates nothing" test flaky.
//!
//! The counter is a `const`-initialised thread-local `Cell` without a
//! destructor: no lazy registration, no allocation, no shared cache line,
//! so counting costs one thread-local increment and adds no cross-thread
//! traffic to an allocator benchmark.
//!
//! A program (or test binary) installs it with
//! `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
//! Without it the counters stay at zero and [`installed`] says so. Tests in
//! one binary share the allocator, but as each counts its own thread they
//! do not disturb each other.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc;

#[inline]
fn bump() {
    // `try_with`: never panic inside the allocator, even while a thread
    // is being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; `bump` touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's `layout`, forwarded unchanged under the
        // same `GlobalAlloc::alloc` contract.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged, as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator with
        // this `layout` (the caller's contract); forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: as in `dealloc`, `ptr` and `layout` are `System`'s;
        // forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations (including reallocations) made so far by the calling
/// thread; zero if [`CountingAlloc`] is not the global allocator. Costs one
/// thread-local read.
#[inline]
pub fn thread_allocs() -> u64 {
    ALLOCS.try_with(|c| c.get()).unwrap_or(0)
}

/// Runs `f` and returns its result with the heap allocations the calling
/// thread made inside it (allocations of other threads are not counted).
pub fn count_allocs<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = thread_allocs();
    let out = f();
    (out, thread_allocs() - before)
}

/// True if [`CountingAlloc`] is this program's global allocator (checked by
/// making one allocation and watching the counter).
pub fn installed() -> bool {
    let (_, n) = count_allocs(|| drop(std::hint::black_box(Box::new(0u64))));
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static A: CountingAlloc = CountingAlloc;

    /// Each allocation of this thread is seen; another thread's are not.
    #[test]
    fn counts_this_threads_allocations_only() {
        assert!(installed());
        let (v, n) = count_allocs(|| std::hint::black_box(Vec::<u8>::with_capacity(10)));
        assert_eq!(n, 1);
        // Warm up: the first spawn may initialise process-wide state.
        std::thread::scope(|s| drop(s.spawn(|| ())));
        let (_, n) = count_allocs(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for i in 0..50 {
                        drop(std::hint::black_box(vec![1u8; 100 + i]));
                    }
                });
            })
        });
        // Spawning allocates here; the thread's own vector is not counted.
        let (_, spawn_only) = count_allocs(|| std::thread::scope(|s| drop(s.spawn(|| ()))));
        assert_eq!(n, spawn_only);
        drop(v);
    }
}
