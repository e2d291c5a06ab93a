//! Blocking reads and writes on the socket for the handshake and for
//! control records, with `EINTR` retried and `SIGPIPE` suppressed.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::net::{recv, send, RecvFlags, SendFlags};

/// One `recv` into `buf`; `Ok(0)` at end of stream.
pub(crate) fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(fd, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `send` until all of `buf` is written (`MSG_NOSIGNAL`: a closed peer is
/// `EPIPE`, not a signal). On a non-blocking socket a full buffer is
/// `WouldBlock`, with part of `buf` possibly written: used only where that
/// cannot happen (the handshake requires a blocking socket).
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// After this side has shut down writing: reads and discards what the peer
/// still sends until it closes (end of stream, or an error) or `timeout`
/// passes. Closing a socket with unread received bytes makes the kernel
/// send a reset and drop whatever of ours is still queued, so the peer
/// could lose the end of the stream; lingering until the peer's end
/// avoids that (as web servers' "lingering close" does). Returns true if
/// the peer's end was seen.
pub(crate) fn linger(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + timeout;
    let mut scratch = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&ts)) {
            Ok(0) => return false,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
        if fds[0].revents().is_empty() {
            continue;
        }
        match recv(fd, &mut scratch[..], RecvFlags::DONTWAIT) {
            Ok((0, _)) => return true,
            Ok(_) | Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(_) => return true,
        }
    }
}
