//! Blocking reads and writes on the socket for the handshake and for
//! control records, with `EINTR` retried and `SIGPIPE` suppressed.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags, Timespec};
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

/// One `send` of `buf` (`MSG_NOSIGNAL`); returns the bytes the socket
/// took. On a non-blocking socket a full buffer is `WouldBlock`.
pub(crate) fn write_some(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    loop {
        match send(fd, buf, SendFlags::NOSIGNAL) {
            Ok(n) => return Ok(n),
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
        buf = &buf[write_some(fd, buf)?..];
    }
    Ok(())
}

/// One `recv` into `buf` that never waits (`MSG_DONTWAIT`, whatever the
/// socket's mode): `WouldBlock` when nothing has arrived, `Ok(0)` at the
/// end of the stream.
pub(crate) fn read_now(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match recv(fd, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((n, _)) => return Ok(n),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits until `fd` has something to read (data, its end, or an error),
/// at most until `deadline`. False if the deadline came first.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Instant) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::IN)];
        // A wait too long for a timespec is cut to a second, then redone.
        let ts = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&ts)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return true,
            // poll itself failed (out of memory): let the read tell.
            Err(_) => return true,
        }
    }
}
