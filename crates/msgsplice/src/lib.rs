//! msgsplice: send a whole message in one call, splicing what can be spliced
//! and copying the rest.
//!
//! This is the user-space counterpart of Linux's `MSG_SPLICE_PAGES` work
//! (Linux 6.5). A server builds a message from a protocol header, data pages
//! and a trailer, and hands it over in one call; parts whose lifetime the
//! library can hold are given to the kernel by reference, the rest is
//! copied, and the code looks the same either way.
//!
//! # Layers
//!
//! - [`frag`]: the page-fragment allocator. [`frag::FragCache`] hands out
//!   refcounted [`frag::Frag`]s carved from large folios, with no lock and no
//!   atomic per allocation; a folio is reused only when every fragment in
//!   it, and every kernel read of it, is finished.
//! - `sys` (private): the few system-call wrappers rustix lacks. All
//!   `unsafe` that talks to the kernel lives there.
#![warn(missing_docs)]

pub mod frag;
mod sys;

pub use frag::{Frag, FragBuf, FragCache, FragMut};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
