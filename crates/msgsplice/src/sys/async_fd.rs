//! Registering a descriptor with tokio's reactor (feature `tokio`).

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd` with the current tokio runtime's reactor for `interest`.
/// The `AsyncFd` owns the descriptor and closes it when dropped.
///
/// Panics outside a tokio runtime with I/O enabled, as tokio does.
pub(crate) fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which owns it until it
    // is dropped (or `into_inner`); an `OwnedFd` is open and refers to the
    // same open file for its whole life, and its `as_raw_fd` always returns
    // the same number, which is what `register_with_interest` asks.
    unsafe { AsyncFd::register_with_interest(fd, interest) }.map_err(io::Error::from)
}
