//! The `msgsplice` command's machinery: the side-by-side benchmark
//! (`msgsplice bench`) and the read-only NFSv3 export (`msgsplice nfs
//! serve`).
//!
//! The binary (`src/main.rs`) parses the command line with [`cli::Cli`]
//! and hands each subcommand its parsed options.
//!
//! - [`bench`](mod@bench): sections (allocator, memcpy, send strategies
//!   over TCP, Unix sockets and from files, UDP GSO with and without
//!   zero-copy, the NFSv3 export, TLS), each printing one table of median,
//!   spread and ratio against a baseline; JSON and SVG output.
//! - [`alloc_count`]: the counting global allocator behind "heap
//!   allocations per message".
//! - [`nfs`](mod@nfs): `msgsplice nfs serve DIR`, a read-only NFSv3 export
//!   of a directory (msgsplice-rpc's `NfsServer`) that prints its URL.
//! - [`cli`]: the command line (clap), and the value parsers the
//!   subcommands share.
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod alloc_count;
pub mod bench;
pub mod cli;
pub mod nfs;

/// Unit tests count allocations too.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc_count::CountingAlloc = alloc_count::CountingAlloc;

/// The examples of `docs/design.md`, compiled and run as doctests here,
/// the crate that depends on every part they use (msgsplice with TLS,
/// rustls, rcgen, bytes).
#[cfg(doctest)]
#[doc = include_str!("../../../docs/design.md")]
struct DesignDoctests;
