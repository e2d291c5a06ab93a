//! The few system-call wrappers that rustix does not provide, in one place.
//!
//! Everything `unsafe` that talks to the kernel lives here, each block with a
//! `// SAFETY:` comment. The rest of the crate calls these safe wrappers.

pub(crate) mod errqueue;
pub(crate) mod mmap;
pub(crate) mod sendmsg;
pub(crate) mod udp;
