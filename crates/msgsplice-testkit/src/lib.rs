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
//! - [`ring`]: the bounded single-producer, single-consumer ring that the
//!   allocator benchmark hands every contender's values over through.
//! - [`cpu`]: CPU time of reaped child processes (benchmarked servers).
//! - [`skip`]: how a test that cannot run says so, where nobody can miss
//!   it: on the real stderr, in a log a test script counts, and as a
//!   failure in CI when the test should have been able to run.
//!
//! The kit depends on no msgsplice crate: it is plain sockets, processes
//! and an allocator, so every crate (and the benchmark) can use it. Its
//! unsafe code is in three small modules, each block with its reason: the
//! allocator's forwarding to the system allocator, the ring's slots, and
//! the `getrusage` call.
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod alloc;
pub mod cpu;
pub mod hosts;
pub mod payload;
pub mod ring;
pub mod skip;
pub mod sockets;

pub use skip::{require_root, skip};
