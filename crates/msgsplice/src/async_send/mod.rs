//! [`AsyncSplicer`]: the send engine for tokio (feature `tokio`).
//!
//! # Design
//!
//! An `AsyncSplicer` is a [`Splicer`] over a non-blocking socket plus a way
//! to wait: the same [`Msg`], policy, completion tracking and counters, and
//! no second engine. Every operation tries the system call first and waits
//! only when the kernel says it would block, then tries again.
//!
//! It waits through a private epoll instance that watches the socket
//! (edge-triggered, `EPOLLIN | EPOLLOUT`, and `EPOLLERR` which epoll always
//! reports), itself registered with tokio's reactor. The socket is not
//! registered with tokio directly because tokio cannot tell a queued
//! zero-copy completion from a closed socket: epoll reports `EPOLLOUT |
//! EPOLLERR`, which tokio keeps as "write closed" for good, and every later
//! wait for room would return at once. Through the private instance the
//! three events stay apart, and the socket may still be registered
//! elsewhere: build an `AsyncSplicer` over a `&tokio::net::TcpStream` and
//! keep reading from the stream with tokio (but write only through the
//! `AsyncSplicer`: the stream's own write readiness meets the confusion
//! above).
//!
//! # Zero-copy completions, and the idle connection
//!
//! While the task sends, the engine reads completions itself, one
//! error-queue read per [`Builder::completion_batch`] zero-copy sends. When
//! the task *waits* inside the `AsyncSplicer` (the socket is full, or
//! [`recv`](AsyncSplicer::recv), [`flush`](AsyncSplicer::flush),
//! [`reap`](AsyncSplicer::reap)), each `EPOLLERR` makes it read the error
//! queue at once and release the buffers of completed sends: no timer, no
//! extra task, no system call while nothing happens.
//!
//! An idle connection is one whose task waits for the next request; if it
//! waits in [`recv`](AsyncSplicer::recv), the last replies' fragments are
//! released as their completions arrive, with no call made for that
//! purpose. A task that waits elsewhere (a channel, a read on another
//! handle of the socket) can add [`reap`](AsyncSplicer::reap) to its
//! `select!`, or call [`flush`](AsyncSplicer::flush) before going idle;
//! otherwise the fragments stay held until the next call on this
//! `AsyncSplicer`. A background task that reaped for the connection would
//! need the engine behind a lock on every send; waiting where the task
//! already waits costs nothing.
//!
//! # Cancel safety
//!
//! [`send`](AsyncSplicer::send) and [`send_to`](AsyncSplicer::send_to)
//! are cancel-safe in this sense: the message's progress lives in the
//! `Msg`, which the engine advances synchronously between awaits. If the
//! future is dropped, [`Msg::sent`] says exactly how many bytes are in the
//! kernel, and the next `send` of the same `Msg` resumes at that byte. On a
//! stream socket a dropped send may thus leave part of a message on the
//! wire; resume it (or close the connection) before sending another message.
//! Datagrams are sent whole or not at all. [`recv`](AsyncSplicer::recv),
//! [`flush`](AsyncSplicer::flush) and [`reap`](AsyncSplicer::reap) are
//! cancel-safe too: completions read before the drop are accounted for.
//!
//! # Costs
//!
//! Per message, in steady state, the same as [`Splicer::send`]: one
//! `sendmsg` for a memory-only message, and no heap allocation (the
//! futures are plain `async fn` state machines, not boxed, and tokio's
//! readiness wait allocates nothing; a counting allocator saw none over
//! 2000 messages of header, fragment and trailer on Unix stream, TCP, and
//! TCP with zero-copy). A send that finds the socket full adds one
//! `epoll_wait` per wake-up (not counted in [`SendStats::syscalls`], which
//! counts the engine's calls). Each `EPOLLERR` seen while sends are in
//! flight costs one error-queue read per notification, plus at most one
//! that finds the queue empty. Creating an `AsyncSplicer` costs an epoll
//! file descriptor, `epoll_create1`, `epoll_ctl`, tokio's registration, and
//! what [`Builder::build`] costs.
//!
//! # Fairness
//!
//! A socket with room never makes `send` wait, so each `send` takes one
//! unit of tokio's cooperative budget (`tokio::task::coop`): a task that
//! sends message after message yields its worker once its budget is spent,
//! as it would reading or writing a tokio socket, and other connections on
//! the same worker get their turn.
//!
//! ```
//! use msgsplice::{AsyncSplicer, FragCache, Msg};
//! use tokio::io::AsyncReadExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let (a, mut b) = tokio::net::UnixStream::pair()?;
//! let mut sp = AsyncSplicer::new(&a)?;
//! let page = FragCache::global().memdup(&[7u8; 4096])?;
//!
//! let mut msg = Msg::new();
//! msg.push(b"HEAD").push(page).push(b"TAIL".to_vec());
//! sp.send(&mut msg).await?;
//! sp.flush().await?; // every spliced fragment released
//!
//! let mut got = vec![0u8; 4 + 4096 + 4];
//! b.read_exact(&mut got).await?;
//! assert_eq!(&got[4096 + 4..], b"TAIL");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod events;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd};

pub(crate) use events::{Events, SocketEvents};

use crate::msg::Msg;
use crate::send::{Builder, SendError, SendStats, Splicer};

/// Sends [`Msg`]s over one socket from a tokio task, splicing what it can:
/// a [`Splicer`] that waits instead of returning
/// [`SendError::WouldBlock`]. See the [module documentation](self) for the
/// design, cancel safety and costs.
///
/// Works with TCP, UDP and Unix sockets, owned or borrowed (any `AsFd`:
/// `tokio::net` and `std::net` sockets, `OwnedFd`, or references to them),
/// on current-thread and multi-thread runtimes. Creating one sets the
/// socket non-blocking.
///
/// Dropping it does not wait: sends still in flight are retired (see
/// [`SendStats::retired_on_close`]). Use [`close`](AsyncSplicer::close) to
/// drain them first.
pub struct AsyncSplicer<S: AsFd> {
    sp: Splicer<S>,
    events: SocketEvents,
}

impl<S: AsFd> AsyncSplicer<S> {
    /// An `AsyncSplicer` with the default settings (SPLICE on).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as tokio's `AsyncFd`.
    pub fn new(sock: S) -> Result<AsyncSplicer<S>, SendError> {
        AsyncSplicer::with_builder(Builder::default(), sock)
    }

    /// An `AsyncSplicer` with the settings of `builder`. Sets the socket
    /// non-blocking (one `ioctl`; it is the open file's flag, so it holds
    /// for every descriptor of it). Fails as [`Builder::build`] does, or
    /// with [`SendError::Io`] if the epoll instance cannot be made (out of
    /// file descriptors).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as tokio's `AsyncFd`.
    pub fn with_builder(builder: Builder, sock: S) -> Result<AsyncSplicer<S>, SendError> {
        let sp = builder.build(sock)?;
        rustix::io::ioctl_fionbio(sp.as_fd(), true).map_err(io::Error::from)?;
        let events = SocketEvents::new(sp.as_fd())?;
        Ok(AsyncSplicer { sp, events })
    }

    /// The engine, for its settings and counters.
    pub fn splicer(&self) -> &Splicer<S> {
        &self.sp
    }

    /// The engine, to change its settings ([`Splicer::set_splice`],
    /// [`Splicer::set_gso_segment`]). Sending through it directly returns
    /// [`SendError::WouldBlock`] when the socket is full, as for any
    /// non-blocking socket.
    pub fn splicer_mut(&mut self) -> &mut Splicer<S> {
        &mut self.sp
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        self.sp.get_ref()
    }

    /// A snapshot of the engine's counters.
    pub fn stats(&self) -> SendStats {
        self.sp.stats()
    }

    /// Zero-copy sends whose buffers are still held for the kernel.
    pub fn in_flight(&self) -> usize {
        self.sp.in_flight()
    }

    /// Sends `msg` from its cursor to its end, waiting while the socket is
    /// full. Returns the bytes this call sent.
    ///
    /// Cancel-safe: if the future is dropped, [`Msg::sent`] says how far
    /// the message got, and the next `send` of the same `Msg` resumes at
    /// that byte. Errors are [`Splicer::send`]'s, never
    /// [`SendError::WouldBlock`].
    ///
    /// Costs what [`Splicer::send`] costs, plus one `epoll_wait` per
    /// wake-up while the socket is full.
    pub async fn send(&mut self, msg: &mut Msg<'_>) -> Result<u64, SendError> {
        self.drive(msg, |sp, msg| sp.send(msg)).await
    }

    /// UDP: sends `msg` as one datagram to `addr`, waiting while the socket
    /// is full. As [`Splicer::send_to`]; cancel-safe as
    /// [`send`](AsyncSplicer::send) (a datagram goes whole or not at all).
    pub async fn send_to(&mut self, msg: &mut Msg<'_>, addr: SocketAddr) -> Result<u64, SendError> {
        self.drive(msg, |sp, msg| sp.send_to(msg, addr)).await
    }

    /// Tries `step` until the message is sent, waiting for room between
    /// tries. Completions reported while waiting are read at once.
    async fn drive<'m>(
        &mut self,
        msg: &mut Msg<'m>,
        mut step: impl FnMut(&mut Splicer<S>, &mut Msg<'m>) -> Result<u64, SendError>,
    ) -> Result<u64, SendError> {
        // One unit of the task's cooperative budget per message: a socket
        // with room never makes `send` wait, so without this a task sending
        // in a loop would keep its worker from every other task. Taken
        // before any byte moves, so a future dropped here changes nothing.
        tokio::task::coop::consume_budget().await;
        let start = msg.sent();
        loop {
            match step(&mut self.sp, msg) {
                Ok(_) if msg.is_sent() => return Ok(msg.sent() - start),
                // Stopped short: the socket is full.
                Ok(_) | Err(SendError::WouldBlock) => {}
                Err(e) => return Err(e),
            }
            while !self.next_event().await?.writable() {}
        }
    }

    /// Receives into `buf` (a `recv` on the socket: the next bytes of a
    /// stream, or one datagram), waiting until something arrives. Returns
    /// the bytes received; 0 at the end of a stream.
    ///
    /// While it waits, zero-copy completions are read as the kernel reports
    /// them, so a connection that waits here for its next request does not
    /// keep the fragments of its last replies. Cancel-safe: nothing is
    /// received unless the future completes. Errors are classified as for
    /// sends ([`SendError::PeerReset`], [`SendError::NotConnected`], ...).
    /// Costs one `recv`, plus one `epoll_wait` per wake-up when it has to
    /// wait.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, SendError> {
        loop {
            match rustix::net::recv(self.sp.as_fd(), &mut *buf, rustix::net::RecvFlags::empty()) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(SendError::from_os(e.into(), 0)),
            }
            while !self.next_event().await?.readable() {}
        }
    }

    /// Waits until every zero-copy send has completed and its buffers are
    /// released ([`in_flight`](AsyncSplicer::in_flight) is 0). Returns at
    /// once, with no system call, when nothing is in flight.
    ///
    /// Call it before a connection goes idle somewhere else than
    /// [`recv`](AsyncSplicer::recv), to give its folios back. It has no
    /// timeout of its own: over a network, completions come when the peer
    /// acknowledges the data; wrap it in `tokio::time::timeout` if the peer
    /// may stall. Cancel-safe. Costs one error-queue read per completion
    /// notification, plus one `epoll_wait` per wake-up.
    pub async fn flush(&mut self) -> Result<(), SendError> {
        while self.in_flight() > 0 {
            self.sp.poll_completions()?;
            if self.in_flight() == 0 {
                break;
            }
            while !self.next_event().await?.error() {}
        }
        Ok(())
    }

    /// Waits until the kernel reports completed zero-copy sends, releases
    /// their buffers, and returns how many sends completed (at least one).
    /// Returns 0 at once when nothing is in flight, so guard a `select!`
    /// branch with `if sp.in_flight() > 0`. Cancel-safe.
    pub async fn reap(&mut self) -> Result<u64, SendError> {
        if self.in_flight() == 0 {
            return Ok(0);
        }
        // Counted from here: waiting reads completions too.
        let before = self.stats().completions;
        loop {
            self.sp.poll_completions()?;
            let done = self.stats().completions - before;
            if done > 0 || self.in_flight() == 0 {
                return Ok(done);
            }
            while !self.next_event().await?.error() {}
        }
    }

    /// Waits up to [`Builder::drain_timeout`] for the sends in flight, on
    /// the runtime's timer (never blocking a runtime thread), retires what
    /// is left, and returns the final counters (see
    /// [`SendStats::retired_on_close`]). Then closes the socket if owned.
    ///
    /// # Panics
    ///
    /// If the runtime has no timer (built without `enable_time`), as
    /// `tokio::time` does.
    pub async fn close(mut self) -> SendStats {
        let limit = self.sp.drain_timeout();
        // An error reading completions is the same as their never coming.
        let _ = tokio::time::timeout(limit, self.flush()).await;
        self.sp.retire_in_flight();
        self.sp.stats()
    }

    /// Waits for the socket's next events; reads the error queue at once
    /// if they include `EPOLLERR` and sends are in flight.
    async fn next_event(&mut self) -> Result<Events, SendError> {
        next_event(&self.events, &mut self.sp).await
    }
}

/// Waits for the next events of `sp`'s socket, watched by `events`; reads
/// the error queue at once if they include `EPOLLERR` and sends are in
/// flight. The one wait of [`AsyncSplicer`], shared with the TLS layer's
/// asynchronous connection (which keeps its [`Splicer`] inside its own
/// record layer). Cancel-safe: completions read are accounted for in `sp`.
pub(crate) async fn next_event<S: AsFd>(
    events: &SocketEvents,
    sp: &mut Splicer<S>,
) -> Result<Events, SendError> {
    let ev = events.next().await?;
    if ev.error() && sp.in_flight() > 0 && sp.poll_completions()? > 0 {
        return Ok(ev.completions_read());
    }
    Ok(ev)
}

impl AsyncSplicer<std::net::TcpStream> {
    /// An `AsyncSplicer` that owns a tokio TCP stream. The stream leaves
    /// tokio's own registration (see the [module documentation](self) for
    /// why); to keep reading from it with tokio, build over `&stream` with
    /// [`with_builder`](AsyncSplicer::with_builder) instead.
    pub fn from_tokio_tcp(
        stream: tokio::net::TcpStream,
        builder: Builder,
    ) -> Result<AsyncSplicer<std::net::TcpStream>, SendError> {
        AsyncSplicer::with_builder(builder, stream.into_std()?)
    }
}

impl AsyncSplicer<std::os::unix::net::UnixStream> {
    /// An `AsyncSplicer` that owns a tokio Unix stream; as
    /// [`from_tokio_tcp`](AsyncSplicer::from_tokio_tcp).
    pub fn from_tokio_unix(
        stream: tokio::net::UnixStream,
        builder: Builder,
    ) -> Result<AsyncSplicer<std::os::unix::net::UnixStream>, SendError> {
        AsyncSplicer::with_builder(builder, stream.into_std()?)
    }
}

impl AsyncSplicer<std::net::UdpSocket> {
    /// An `AsyncSplicer` that owns a tokio UDP socket; as
    /// [`from_tokio_tcp`](AsyncSplicer::from_tokio_tcp).
    pub fn from_tokio_udp(
        sock: tokio::net::UdpSocket,
        builder: Builder,
    ) -> Result<AsyncSplicer<std::net::UdpSocket>, SendError> {
        AsyncSplicer::with_builder(builder, sock.into_std()?)
    }
}

impl<S: AsFd> Drop for AsyncSplicer<S> {
    fn drop(&mut self) {
        // Never wait on a runtime thread: release what has completed, then
        // retire the rest (the Splicer's own drop then has nothing to wait
        // for).
        if self.sp.in_flight() > 0 {
            let _ = self.sp.poll_completions();
            self.sp.retire_in_flight();
        }
    }
}

impl<S: AsFd> AsFd for AsyncSplicer<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sp.as_fd()
    }
}

impl<S: AsFd> std::fmt::Debug for AsyncSplicer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSplicer")
            .field("splicer", &self.sp)
            .finish()
    }
}
