//! A global allocator that counts heap allocations per thread.
//!
//! The send benchmark reports "heap allocations per message" (DESIGN.md:
//! the common case must allocate nothing). [`CountingAlloc`] wraps the
//! system allocator and bumps a thread-local counter on every `alloc`,
//! `alloc_zeroed` and `realloc`; [`thread_allocs`] reads the calling
//! thread's counter, so a measurement sees only the sending thread's loop.
//!
//! The counter is a `const`-initialised thread-local `Cell` without a
//! destructor: no lazy registration, no allocation, no shared cache line,
//! so counting costs one thread-local increment (about a nanosecond) and
//! adds no cross-thread traffic to the allocator benchmark.
//!
//! The binary installs it with `#[global_allocator]`; a test binary that
//! wants counts installs it too. Without it the counters stay at zero and
//! [`installed`] says so.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting allocations per thread.
pub struct CountingAlloc;

#[inline]
fn bump() {
    // `try_with`: never panic inside the allocator, even while a thread
    // is being torn down.
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; counting touches only a
// thread-local `Cell` and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged (see the impl's comment).
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Heap allocations (including reallocations) made so far by the calling
/// thread; zero if [`CountingAlloc`] is not the global allocator.
#[inline]
pub fn thread_allocs() -> u64 {
    ALLOCS.try_with(|c| c.get()).unwrap_or(0)
}

/// True if [`CountingAlloc`] is this program's global allocator (checked by
/// making one allocation and watching the counter).
pub fn installed() -> bool {
    let before = thread_allocs();
    drop(std::hint::black_box(Box::new(0u64)));
    thread_allocs() > before
}
