//! Test parts shared by the msgsplice crates, so that each exists once.
//!
//! - [`hosts`]: two test hosts in network namespaces joined by a veth
//!   pair, whose link delivers, drops or throttles; the only place where
//!   zero-copy pages can be seen to stay in flight for long, or to leave
//!   without being copied. Needs root and iproute2 (`ip`, `tc`).
//! - [`alloc`]: a global allocator that counts allocations per thread,
//!   for "the common case allocates nothing" tests and the benchmark.
//! - [`sockets`]: connected socket pairs of every transport.
//! - [`payload`]: deterministic byte patterns, and a [`payload::Tally`]
//!   that proves every message (and segment) arrived exactly once.
//! - [`skip`]: how a test that cannot run says so, where nobody can miss
//!   it: on the real stderr, in a log a test script counts, and as a
//!   failure in CI when the test should have been able to run.
//!
//! The kit depends on no msgsplice crate: it is plain sockets, processes
//! and an allocator, so every crate (and the benchmark) can use it. Its
//! only unsafe code is the allocator's forwarding to the system allocator.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod alloc;
pub mod hosts;
pub mod payload;
pub mod skip;
pub mod sockets;

pub use skip::{require_root, skip};
