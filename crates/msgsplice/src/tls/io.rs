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
