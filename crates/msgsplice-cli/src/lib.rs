//! The `msgsplice` command's machinery: the side-by-side benchmark
//! (`msgsplice bench`) and, as they land, the other subcommands.
//!
//! The binary (`src/main.rs`) only picks the subcommand; each subcommand is
//! a module with a `main(words) -> ExitCode` that parses its own options.
//!
//! - [`bench`](mod@bench): sections (allocator, memcpy, send strategies over TCP, Unix
//!   sockets and from files), each printing one table of median, spread
//!   and ratio against a baseline; JSON and SVG output.
//! - [`alloc_count`]: the counting global allocator behind "heap
//!   allocations per message".
//! - [`args`]: hand-written option parsing shared by the subcommands.
#![warn(missing_docs)]

pub mod alloc_count;
pub mod args;
pub mod bench;

/// Unit tests count allocations too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc_count::CountingAlloc = alloc_count::CountingAlloc;
