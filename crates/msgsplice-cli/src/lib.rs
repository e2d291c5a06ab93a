//! The `msgsplice` command's machinery: the side-by-side benchmark
//! (`msgsplice bench`) and, as they land, the other subcommands.
//!
//! The binary (`src/main.rs`) only picks the subcommand; each subcommand is
//! a module with a `main(words) -> ExitCode` that parses its own options.
//!
//! - [`bench`](mod@bench): sections (allocator, memcpy, send strategies over TCP, Unix
//!   sockets and from files, UDP GSO with and without zero-copy), each
//!   printing one table of median, spread and ratio against a baseline;
//!   JSON and SVG output.
//! - [`alloc_count`]: the counting global allocator behind "heap
//!   allocations per message".
//! - [`nfs`](mod@nfs): `msgsplice nfs serve DIR`, a read-only NFSv3 export
//!   of a directory (msgsplice-rpc's `NfsServer`) that prints its URL.
//! - [`args`]: hand-written option parsing shared by the subcommands.
#![warn(missing_docs)]
#![deny(unsafe_code)]

// A `GlobalAlloc` cannot be written without `unsafe`.
#[allow(unsafe_code)]
pub mod alloc_count;
pub mod args;
// Two bench modules still hold `unsafe`: the SPSC ring's slots
// (`bench::ring`) and `getrusage` (`bench::nfs::procs`, which rustix does
// not wrap). The allowance belongs on those two modules alone.
#[allow(unsafe_code)]
pub mod bench;
pub mod nfs;

/// Unit tests count allocations too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc_count::CountingAlloc = alloc_count::CountingAlloc;
