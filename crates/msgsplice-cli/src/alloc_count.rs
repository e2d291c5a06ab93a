//! The counting global allocator behind "heap allocations per message":
//! the test kit's allocator, which counts per thread, so a measurement sees
//! only the sending thread's loop (see `msgsplice_testkit::alloc`).
//!
//! The binary installs it with `#[global_allocator]`; a test binary that
//! wants counts installs it too. Without it the counters stay at zero and
//! [`installed`] says so.

pub use msgsplice_testkit::alloc::{installed, thread_allocs, CountingAlloc};
