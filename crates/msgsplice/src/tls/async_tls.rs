//! [`AsyncTlsSplicer`]: a [`TlsSplicer`] for tokio tasks (features `tls`
//! and `tokio`).
//!
//! The design, cancel safety and costs are told on [`AsyncTlsSplicer`]
//! itself, the one public item of this file.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustls::{ProtocolVersion, SupportedCipherSuite};

use super::handshake::{Established, Handshake, Need, Unbuffered};
use super::{io as tls_io, Builder, KtlsStatus, Received, TlsError, TlsSplicer, TlsStats};
use crate::async_send::{next_event, SocketEvents};
use crate::msg::Msg;

/// A TLS connection for tokio tasks: sends whole [`Msg`]s sealed into as
/// few records as their length allows, and receives, waiting where a
/// [`TlsSplicer`] would return [`TlsError::WouldBlock`].
///
/// Made by [`AsyncTlsSplicer::accept`], [`AsyncTlsSplicer::connect`], or
/// [`Builder::accept_async`] and [`Builder::connect_async`] for other
/// settings, over a connected socket (made non-blocking). kTLS is used
/// where the kernel has it, as for a [`TlsSplicer`].
///
/// ```no_run
/// use std::sync::Arc;
/// use msgsplice::tls::AsyncTlsSplicer;
/// use msgsplice::{FragCache, Msg};
/// # fn config() -> Arc<rustls::ServerConfig> { unimplemented!() }
///
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let (sock, _) = listener.accept().await?;
/// let mut tls = AsyncTlsSplicer::accept(config(), sock.into_std()?).await?;
/// let page = FragCache::global().memdup(&[7u8; 65536])?;
/// let mut msg = Msg::new();
/// msg.push(b"HEADER").push(page).push(b"TRAILER");
/// tls.send(&mut msg).await?; // 5 records
/// tls.close().await?;        // close_notify, then the peer's end
/// # Ok(())
/// # }
/// ```
///
/// # Design
///
/// Nothing of TLS is done twice. The handshake is the same sans-IO
/// handshake the blocking constructors drive (rustls's unbuffered
/// connection fed the bytes read when the socket is readable, its records
/// written when it is writable); then the same record layer seals messages
/// into fragments and the same [`Splicer`](crate::Splicer) sends them. What
/// this type adds is the waiting: the socket is non-blocking, and when the
/// record layer says [`TlsError::WouldBlock`] the task waits for the
/// socket's next events through a private epoll instance, as
/// [`AsyncSplicer`](crate::AsyncSplicer) does (its documentation tells why
/// the socket is not registered with tokio directly), reading zero-copy
/// completions as the kernel reports them, then tries again.
///
/// # Cancel safety
///
/// [`send`](AsyncTlsSplicer::send) seals a batch of the message and
/// advances the `Msg`'s cursor in the same step, with no await in between;
/// sealed records wait in the connection's queue until the socket takes
/// them. If the future is dropped, [`Msg::sent`] counts the bytes sealed
/// (accepted), whether or not the socket has taken all of their records
/// yet; the records keep their own copy of the bytes. A record may be half
/// written to the socket at that moment: the next `send` (of this message
/// or any other), [`flush`](AsyncTlsSplicer::flush), [`recv`](AsyncTlsSplicer::recv)
/// or [`close`](AsyncTlsSplicer::close) first writes the rest of it, from
/// the byte where the socket stopped; nothing is ever sealed twice, so the
/// peer's record stream stays valid. The message itself may then be
/// resumed with the same `Msg`, or abandoned (the peer then has its first
/// `sent()` bytes). [`recv`](AsyncTlsSplicer::recv) and
/// [`flush`](AsyncTlsSplicer::flush) are cancel-safe too; the handshake
/// is not (dropping it abandons the connection).
///
/// # Costs
///
/// Those of [`TlsSplicer::send`] and [`TlsSplicer::read`], plus one
/// `epoll_wait` per wake-up while the socket is full or empty. Making one
/// costs the handshake, an epoll file descriptor and its registration with
/// tokio's reactor.
pub struct AsyncTlsSplicer<S: AsFd = std::net::TcpStream> {
    tls: TlsSplicer<S>,
    events: SocketEvents,
    close_timeout: Duration,
}

impl<S: AsFd> AsyncTlsSplicer<S> {
    /// Accepts a TLS connection on `sock` (connected) with the default
    /// [`Builder`]; see [`Builder::accept_async`].
    pub async fn accept(
        config: std::sync::Arc<rustls::ServerConfig>,
        sock: S,
    ) -> Result<AsyncTlsSplicer<S>, TlsError> {
        Builder::new().accept_async(config, sock).await
    }

    /// Opens a TLS connection to `name` on `sock` (connected) with the
    /// default [`Builder`]; see [`Builder::connect_async`].
    pub async fn connect(
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        sock: S,
    ) -> Result<AsyncTlsSplicer<S>, TlsError> {
        Builder::new().connect_async(config, name, sock).await
    }

    pub(super) fn new(tls: TlsSplicer<S>, events: SocketEvents, close_timeout: Duration) -> Self {
        AsyncTlsSplicer {
            tls,
            events,
            close_timeout,
        }
    }

    /// The connection's record layer, for its counters and settings.
    pub fn tls(&self) -> &TlsSplicer<S> {
        &self.tls
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        self.tls.get_ref()
    }

    /// Whether the kernel seals this connection's records, and if not why.
    pub fn ktls(&self) -> KtlsStatus {
        self.tls.ktls()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.tls.protocol_version()
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> SupportedCipherSuite {
        self.tls.cipher_suite()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TlsStats {
        self.tls.stats()
    }

    /// Sealed bytes the socket has not taken yet (left by a dropped send).
    pub fn pending(&self) -> u64 {
        self.tls.pending()
    }

    /// Sends `msg` from its cursor to its end as application data, waiting
    /// while the socket is full, and returns the plaintext bytes this call
    /// accepted. It returns once every record is in the socket.
    ///
    /// Cancel-safe (see [Cancel safety](AsyncTlsSplicer#cancel-safety)):
    /// a dropped send
    /// leaves [`Msg::sent`] at the bytes sealed, and the records sealed but
    /// not yet written go first on the next call; none is sealed twice.
    /// Errors are [`TlsSplicer::send`]'s, never [`TlsError::WouldBlock`];
    /// [`TlsError::Closed`] once close_notify is queued.
    pub async fn send(&mut self, msg: &mut Msg<'_>) -> Result<u64, TlsError> {
        let start = msg.sent();
        loop {
            // A message already sealed only has records left to write.
            let step = if msg.is_sent() {
                self.tls.flush()
            } else {
                self.tls.send(msg).map(drop)
            };
            match step {
                Ok(()) if msg.is_sent() && self.tls.pending() == 0 => return Ok(msg.sent() - start),
                Ok(()) | Err(TlsError::WouldBlock) => {}
                Err(e) => return Err(e),
            }
            self.writable().await?;
        }
    }

    /// Writes the records still queued (after a dropped send), waiting
    /// while the socket is full. Cancel-safe.
    pub async fn flush(&mut self) -> Result<(), TlsError> {
        loop {
            match self.tls.flush() {
                Ok(()) => return Ok(()),
                Err(TlsError::WouldBlock) => self.writable().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Updates this side's sending keys (TLS 1.3), as
    /// [`TlsSplicer::key_update`], and waits until the KeyUpdate is in the
    /// socket.
    pub async fn key_update(&mut self, request_peer: bool) -> Result<(), TlsError> {
        self.tls.key_update(request_peer)?;
        self.flush().await
    }

    /// Receives application data into `buf`, waiting until some arrives.
    /// Returns 0 once the peer's close_notify has arrived (and for an
    /// empty `buf`); the errors are [`TlsSplicer::read`]'s. Key updates
    /// are applied, and answered when the peer asks.
    ///
    /// Cancel-safe: bytes received go into the connection's buffer before
    /// any wait, and application data is copied out only when the future
    /// completes. While it waits, zero-copy completions are read as the
    /// kernel reports them.
    pub async fn recv(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.tls.receive_step(buf)? {
                Received::Data(n) => return Ok(n),
                Received::End => return Ok(0),
                Received::NeedBytes => {}
            }
            // An answer to the peer's key update (or a dropped send's
            // records) may be queued: push it now if the socket takes it.
            match self.tls.flush() {
                Ok(()) | Err(TlsError::WouldBlock) => {}
                Err(e) => return Err(e),
            }
            let fd = self.tls.splicer.get_ref().as_fd();
            match tls_io::read_now(fd, self.tls.inbound.spare()) {
                Ok(0) => return Err(self.tls.inbound.eof_error()),
                Ok(n) => self.tls.inbound.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Sends close_notify: no more data from this side (the peer may still
    /// send, and [`recv`](Self::recv) still works). Queued once, as
    /// [`TlsSplicer::send_close_notify`]: from the first call on, `send`
    /// is refused, and if this future is dropped while the socket is full,
    /// the next call (or [`flush`](Self::flush), or
    /// [`close`](Self::close)) only writes what is queued.
    pub async fn send_close_notify(&mut self) -> Result<(), TlsError> {
        match self.tls.send_close_notify() {
            Ok(()) | Err(TlsError::WouldBlock) => self.flush().await,
            Err(e) => Err(e),
        }
    }

    /// Closes the connection cleanly, never blocking a runtime thread:
    ///
    /// 1. queues close_notify (once, see
    ///    [`send_close_notify`](Self::send_close_notify)) and writes every
    ///    queued record, waiting at most [`Builder::close_timeout`] for the
    ///    socket to take them ([`TlsError::CloseTimedOut`] otherwise);
    /// 2. shuts down the socket's sending side and reads what the peer
    ///    still sends until it closes, at most [`Builder::linger`]: data is
    ///    dropped, an alert other than close_notify (the peer aborted) is
    ///    returned as [`TlsError::AlertReceived`];
    /// 3. waits for zero-copy sends in flight on the runtime's timer, at
    ///    most the Splicer's drain timeout, and retires what is left.
    ///
    /// Returns the final counters. The socket is closed when dropped (if
    /// owned).
    ///
    /// # Panics
    ///
    /// If the runtime has no timer (built without `enable_time`), as
    /// `tokio::time` does.
    pub async fn close(mut self) -> Result<TlsStats, TlsError> {
        let flushed = tokio::time::timeout(self.close_timeout, self.send_close_notify()).await;
        let judged = match flushed {
            Err(_) => Err(TlsError::CloseTimedOut {
                pending: self.tls.pending(),
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => {
                let fd = self.tls.splicer.get_ref().as_fd();
                let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
                let linger = self.tls.linger;
                // The peer not closing in time is not an error: this side
                // was done anyway.
                tokio::time::timeout(linger, self.linger())
                    .await
                    .unwrap_or(Ok(()))
            }
        };
        let drain = self.tls.splicer.drain_timeout();
        // An error reading completions is the same as their never coming.
        let _ = tokio::time::timeout(drain, self.completions()).await;
        self.tls.splicer.retire_in_flight();
        let stats = self.stats();
        judged.map(|()| stats)
    }

    /// Reads and judges the peer's records until its end of stream.
    async fn linger(&mut self) -> Result<(), TlsError> {
        loop {
            self.tls.absorb()?;
            let fd = self.tls.splicer.get_ref().as_fd();
            match tls_io::read_now(fd, self.tls.inbound.spare()) {
                Ok(0) => return Ok(()),
                Ok(n) => self.tls.inbound.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable().await?,
                // Reset, or another error: the peer is gone.
                Err(_) => return Ok(()),
            }
        }
    }

    /// Waits until no zero-copy send is in flight.
    async fn completions(&mut self) -> Result<(), TlsError> {
        let sp = &mut self.tls.splicer;
        while sp.in_flight() > 0 {
            sp.poll_completions()?;
            if sp.in_flight() == 0 {
                break;
            }
            while !next_event(&self.events, sp).await?.error() {}
        }
        Ok(())
    }

    /// Waits until the socket may take more (or has an error to report).
    async fn writable(&mut self) -> Result<(), TlsError> {
        while !next_event(&self.events, &mut self.tls.splicer)
            .await?
            .writable()
        {}
        Ok(())
    }

    /// Waits until the socket has something to read (or its end, or an
    /// error).
    async fn readable(&mut self) -> Result<(), TlsError> {
        while !next_event(&self.events, &mut self.tls.splicer)
            .await?
            .readable()
        {}
        Ok(())
    }
}

impl<S: AsFd> Drop for AsyncTlsSplicer<S> {
    fn drop(&mut self) {
        // Never wait on a runtime thread: release what has completed, then
        // retire the rest (the Splicer's own drop then has nothing to wait
        // for).
        let sp = &mut self.tls.splicer;
        if sp.in_flight() > 0 {
            let _ = sp.poll_completions();
            sp.retire_in_flight();
        }
    }
}

impl<S: AsFd> AsFd for AsyncTlsSplicer<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.tls.get_ref().as_fd()
    }
}

impl<S: AsFd> std::fmt::Debug for AsyncTlsSplicer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncTlsSplicer")
            .field("tls", &self.tls)
            .finish()
    }
}

/// Runs the handshake of `conn` over `fd`, made non-blocking here, waiting
/// for the socket through a private epoll instance; returns what the
/// handshake leaves and that instance, for the connection to keep.
pub(super) async fn handshake<C: Unbuffered>(
    conn: C,
    fd: BorrowedFd<'_>,
) -> Result<(Established, SocketEvents), TlsError> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)?;
    let events = SocketEvents::new(fd)?;
    let mut hs = Handshake::new(conn);
    loop {
        match hs.advance() {
            Ok(Need::Write) => loop {
                match hs.outgoing.send_some(fd) {
                    Ok(()) if hs.outgoing.is_empty() => break,
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        while !events.next().await?.writable() {}
                    }
                    Err(e) => return Err(e.into()),
                }
            },
            Ok(Need::Read) => loop {
                match hs.incoming.receive(fd) {
                    Ok(0) => return Err(TlsError::HandshakeEof),
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        while !events.next().await?.readable() {}
                    }
                    Err(e) => return Err(e.into()),
                }
            },
            Ok(Need::Done) => return Ok((hs.finish()?, events)),
            Err(e) => {
                // Best effort, without waiting: the peer learns why.
                let _ = hs.outgoing.send_some(fd);
                return Err(e);
            }
        }
    }
}
