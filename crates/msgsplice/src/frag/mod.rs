//! The page-fragment allocator: the user-space `page_frag_cache`.
//!
//! [`FragCache`] carves fragments out of *folios*: large anonymous mappings
//! (64 KiB by default, up to 2 MiB with transparent huge pages), prefaulted
//! when created. A fragment is a [`Frag`] (shared, read-only, refcounted) or
//! a [`FragMut`] (unique, writable, frozen into a `Frag` when done).
//! [`FragBuf`] writes a header in place through [`bytes::BufMut`].
//!
//! Lifetimes follow the kernel's rule: a folio is reused only after every
//! fragment in it is dropped, and the send engine keeps a spliced fragment
//! alive until the kernel reports that it is done reading. A folio whose
//! completion can never arrive is *retired*: unmapped at its last drop,
//! never reused.
//!
//! Costs: allocation is a thread-local lookup and a bump (no lock, no atomic
//! read-modify-write); dropping a fragment is one atomic decrement; a folio
//! is mapped, recycled or unmapped once per folio, not per fragment.
//!
//! One file per job: `config.rs` (settings and builder), `buckets.rs`
//! (per-thread and per-CPU buckets, and how a thread finds its own),
//! `bump.rs` (the fast path and the refill behind it), `pool.rs` (free
//! list, mappings, counters), `cache.rs` (the public [`FragCache`]),
//! `folio.rs` (folios and their handles), `buf.rs` ([`FragBuf`]) and
//! `sync.rs` (the atomics that the loom model swaps for its own).

mod buckets;
mod buf;
mod bump;
mod cache;
mod config;
mod folio;
#[cfg(all(test, msgsplice_loom))]
mod loom_model;
mod pool;
mod sync;

pub use buf::FragBuf;
pub use cache::{FragCache, FragStats};
pub use config::{BucketMode, Builder};
#[cfg(feature = "uring")]
pub(crate) use folio::FolioHook;
pub use folio::{Frag, FragMut};

/// What can go wrong when allocating fragments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FragError {
    /// Alignments must be powers of two (1, 2, 4, ...).
    #[error("alignment {0} is not a power of two")]
    BadAlign(usize),
    /// Folio sizes must be powers of two from 4 KiB to 2 MiB.
    #[error("folio size {0} is not a power of two between 4 KiB and 2 MiB")]
    BadFolioSize(usize),
    /// The request cannot be represented (overflows the address space).
    #[error("a fragment of {0} bytes is too large")]
    TooLarge(usize),
    /// The kernel refused memory even for the smallest mapping.
    #[error("could not map {len} bytes: {source}")]
    OutOfMemory {
        /// Size of the mapping that failed.
        len: usize,
        /// The error from `mmap`.
        source: std::io::Error,
    },
}
