//! The few system-call wrappers that rustix does not provide, in one place.
//!
//! Everything `unsafe` that talks to the kernel lives here, each block with a
//! `// SAFETY:` comment. The rest of the crate calls these safe wrappers.

#[cfg(feature = "tokio")]
pub(crate) mod async_fd;
pub(crate) mod errqueue;
#[cfg(feature = "tls")]
pub(crate) mod ktls;
pub(crate) mod mmap;
pub(crate) mod sendmsg;
pub(crate) mod sockopt;
pub(crate) mod udp;
#[cfg(feature = "uring")]
pub(crate) mod uring;
