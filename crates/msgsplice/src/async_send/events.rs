//! The socket's readiness, told exactly: a private epoll instance watches
//! the socket, and tokio's reactor watches that epoll instance.
//!
//! Why not register the socket with tokio directly: once a zero-copy
//! completion is queued while the socket is writable, epoll reports
//! `EPOLLOUT | EPOLLERR` together, which mio reads as "write side closed"
//! (meant for the write end of a pipe whose reader left), and tokio keeps a
//! closed state until the registration is dropped. From then on every wait
//! for writability would return at once, and a full socket would be retried
//! in a busy loop. Reading the event bits from our own epoll instance keeps
//! `EPOLLOUT` (room to send), `EPOLLERR` (completions queued, or a socket
//! error) and `EPOLLIN` (data to read) apart, and the socket itself stays
//! free to be registered elsewhere (a `tokio::net::TcpStream` it is
//! borrowed from, say).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
use rustix::event::Timespec;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::sys::async_fd;

/// What the socket reported since the last look.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Events {
    flags: EventFlags,
    /// The `EPOLLERR` was explained by zero-copy completions, read since.
    completions: bool,
}

impl Events {
    /// Room in the send buffer, or the connection hung up or has an error
    /// (a send then reports it). An `EPOLLERR` that only meant completions
    /// does not count: under zero-copy, a full socket would otherwise be
    /// retried on every completion.
    pub(crate) fn writable(self) -> bool {
        self.flags.intersects(EventFlags::OUT | EventFlags::HUP) || self.other_error()
    }

    /// Data (or end of stream) to read, or the connection hung up or has
    /// an error (a receive then reports it).
    pub(crate) fn readable(self) -> bool {
        self.flags.intersects(EventFlags::IN | EventFlags::HUP) || self.other_error()
    }

    /// The error queue has messages (zero-copy completions), or the socket
    /// has a pending error.
    pub(crate) fn error(self) -> bool {
        self.flags.contains(EventFlags::ERR)
    }

    /// Notes that this `EPOLLERR` was explained by completions, now read.
    pub(crate) fn completions_read(mut self) -> Events {
        self.completions = true;
        self
    }

    fn other_error(self) -> bool {
        self.error() && !self.completions
    }
}

/// A private epoll instance with the socket in it, edge-triggered, itself
/// registered with tokio's reactor.
#[derive(Debug)]
pub(crate) struct SocketEvents {
    epoll: AsyncFd<OwnedFd>,
}

impl SocketEvents {
    /// Watches `sock` for `EPOLLIN`, `EPOLLOUT` (and, always, `EPOLLERR`
    /// and `EPOLLHUP`), edge-triggered. Costs an epoll file descriptor and
    /// two system calls (`epoll_create1`, `epoll_ctl`) plus the reactor's
    /// registration. Panics outside a tokio runtime with I/O enabled, as
    /// tokio's own `AsyncFd` does.
    pub(crate) fn new(sock: BorrowedFd<'_>) -> io::Result<SocketEvents> {
        let ep = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(
            &ep,
            sock,
            EventData::new_u64(0),
            EventFlags::IN | EventFlags::OUT | EventFlags::ET,
        )?;
        Ok(SocketEvents {
            epoll: async_fd::register(ep, Interest::READABLE)?,
        })
    }

    /// Waits until the socket reports something new, and says what.
    ///
    /// Edge-triggered: an event is reported once. Callers always try their
    /// operation before waiting and wait only after it would block, so an
    /// event taken here by one kind of waiter (a flush that sees `EPOLLOUT`)
    /// is never needed by another: that one tries first anyway.
    ///
    /// Costs one `epoll_wait` (with no timeout) per wake-up. Cancel-safe:
    /// the only await is tokio's readiness; what `epoll_wait` returns is
    /// returned in the same poll.
    pub(crate) async fn next(&self) -> io::Result<Events> {
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            let mut guard = self.epoll.readable().await?;
            let mut buf = [MaybeUninit::uninit()];
            let got = match epoll::wait(self.epoll.get_ref(), &mut buf[..], Some(&now)) {
                Ok((got, _)) => got.first().map(|e| e.flags),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            match got {
                Some(flags) => {
                    return Ok(Events {
                        flags,
                        completions: false,
                    })
                }
                // Nothing new since the last look: wait for the next edge.
                None => guard.clear_ready(),
            }
        }
    }
}
