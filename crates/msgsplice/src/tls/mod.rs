//! TLS: send a [`Msg`] as TLS records with one copy, or hand the records to
//! the kernel (kTLS) where it can seal them.
//!
//! # Design
//!
//! rustls does the handshake: certificates, key exchange, everything that
//! needs judgement. A [`TlsSplicer`] drives rustls's *unbuffered* connection
//! over the blocking socket until the handshake is done, then takes the
//! traffic secrets out of it with `dangerous_into_kernel_connection` (the
//! API rustls offers for kTLS). From then on msgsplice runs the record
//! layer itself (TLS 1.3, and TLS 1.2 with AES-GCM or ChaCha20-Poly1305),
//! with ring's AEAD, and keeps rustls's `KernelConnection` only to compute
//! the next secrets on a key update and to take a server's session tickets.
//!
//! Why not encrypt through rustls? Its unbuffered `WriteTraffic::encrypt`
//! seals one slice per call, so a header, a payload and a trailer become
//! at least three records, and a message would have to be gathered into a
//! contiguous buffer first to be filled across segment boundaries; its
//! buffered writer additionally allocates a `Vec` per record. Running the
//! record layer here lets one record take bytes from several segments, and
//! the same extracted secrets are exactly what kTLS needs.
//!
//! # How a message travels, and its copies per byte
//!
//! - **User space** (with [`Ktls::Off`], or where kTLS cannot be used; see
//!   [`KtlsStatus`]):
//!   the plaintext of a batch of the message (up to
//!   [`Builder::batch_bytes`], 1 MiB by default, so a message of that
//!   size is one batch) is laid over the fewest records: every record but
//!   the last carries 16 KiB, across segment boundaries. Each record is a
//!   fragment from a [`FragCache`] of exactly its wire size. Memory
//!   segments are copied into place (**the one user-space copy**), file
//!   ranges are read into place with `preadv` straight from the page cache
//!   (**one copy**, by the kernel, up to 64 records per call), and the AEAD
//!   seals each record in place. The sealed fragments go to the
//!   [`Splicer`] in one `sendmsg` per batch, under the same policy as any
//!   fragment: spliceable, so with `MSG_ZEROCOPY` where it pays the kernel
//!   sends them without a further copy; otherwise the kernel copies them
//!   into the socket (a second copy, as for any plain send). Per byte: 1
//!   copy in user space + 1 in the kernel (0 with zero-copy to a NIC).
//! - **kTLS** (Linux with the `tls` module, TLS 1.3): the secrets go to the
//!   kernel (`TCP_ULP "tls"`, `TLS_TX`) and the Splicer sends the message
//!   as plaintext: memory is copied once by the kernel while it seals, and
//!   file ranges go by `sendfile`, which the kernel encrypts straight from
//!   the page cache. Zero copies in user space. `MSG_ZEROCOPY` is not
//!   used (kTLS refuses it). Found at run time: see [`probe_ktls`] and
//!   [`KtlsStatus`]. The kernel does not count records against the key's
//!   limit, so msgsplice counts an upper bound and sends a key update
//!   before it (a kernel that cannot rekey a socket then ends the
//!   connection with [`TlsError::KeyLimit`], after about 2^23 records).
//!
//! Receiving stays simple: records are read into one buffer in large
//! `recv`s, opened in place and copied out by [`TlsSplicer::read`];
//! close_notify, alerts, key updates (answered when the peer asks) and
//! session tickets are handled there.
//!
//! Closing: close_notify is the last record sealed, queued once; from then
//! on the connection refuses to send, and a full non-blocking socket only
//! delays the alert (a retry flushes it, never seals another).
//! [`TlsSplicer::close`] then reads the peer's last records and reports an
//! abort (an alert other than close_notify) as an error.
//!
//! For tokio (feature `tokio`), `AsyncTlsSplicer` drives the same sans-IO
//! handshake and the same record layer from a task, waiting for the socket
//! where the blocking API would block or say
//! [`WouldBlock`](TlsError::WouldBlock); its sends are cancel-safe.
//!
//! # Costs
//!
//! In steady state a memory message of up to 1 MiB costs one `sendmsg`,
//! one fragment bump per record and no heap allocation. The AEAD costs far
//! more than the copy (the README has the measurements), and the kernel's
//! loopback send path about as much as the sealing. Against rustls's
//! buffered writer, which also copies each byte
//! once, what this layer saves is records (one per 16 KiB of message, not
//! one per part), heap allocations (none, against one per record) and
//! system calls (against a flush per write): a few percent of a sender's
//! time on loopback, more where the sealed fragments can be sent without
//! a copy (`MSG_ZEROCOPY` to a NIC) or under kTLS.

#[cfg(feature = "tokio")]
mod async_tls;
mod builder;
mod close;
mod error;
mod handshake;
mod inbound;
mod io;
mod ktls;
mod record;
mod writer;

use std::fmt;
use std::net::TcpStream;
use std::os::fd::AsFd;

use rustls::{ProtocolVersion, SupportedCipherSuite};

#[cfg(feature = "tokio")]
pub use async_tls::AsyncTlsSplicer;
pub use builder::{Builder, Ktls};
pub use error::TlsError;
pub use ktls::{probe_ktls, KtlsStatus};
pub use record::MAX_PLAINTEXT;

pub(crate) use record::Cipher;

use handshake::Session;
use inbound::{Event, Inbound};
use record::{ContentType, Keys, Opener, Sealer, Version};
use writer::RecordWriter;

use crate::msg::Msg;
use crate::send::{SendStats, Splicer};
#[cfg(doc)]
use crate::FragCache;

/// Handshake message types handled after the handshake.
const HS_NEW_SESSION_TICKET: u8 = 4;
const HS_KEY_UPDATE: u8 = 24;
const HS_HELLO_REQUEST: u8 = 0;
/// Alert levels (RFC 8446 section 6; TLS 1.3 ignores the level, TLS 1.2
/// does not).
const ALERT_WARNING: u8 = 1;
const ALERT_FATAL: u8 = 2;
/// Alert descriptions sent: close_notify, and those sent on errors.
const ALERT_CLOSE_NOTIFY: u8 = 0;
const ALERT_UNEXPECTED_MESSAGE: u8 = 10;
const ALERT_BAD_RECORD_MAC: u8 = 20;
const ALERT_RECORD_OVERFLOW: u8 = 22;

/// What the records received so far gave ([`TlsSplicer::receive_step`]).
enum Received {
    /// This many bytes of application data were copied out.
    Data(usize),
    /// The peer's close_notify: no more data.
    End,
    /// More bytes from the socket are needed.
    NeedBytes,
}

/// Counters of one [`TlsSplicer`], from [`TlsSplicer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsStats {
    /// Messages sent completely.
    pub messages: u64,
    /// Application data bytes accepted by [`TlsSplicer::send`].
    pub plaintext_bytes: u64,
    /// Records sealed in user space (application data and control).
    pub records: u64,
    /// Plaintext bytes copied from memory segments into records: the one
    /// user-space copy. Zero under kTLS.
    pub bytes_copied: u64,
    /// Plaintext bytes read from file ranges straight into records.
    pub file_bytes_read: u64,
    /// `preadv` calls that read them.
    pub file_reads: u64,
    /// Key updates sent (TLS 1.3).
    pub key_updates_sent: u64,
    /// Key updates received (TLS 1.3).
    pub key_updates_received: u64,
    /// Records received from the peer.
    pub records_received: u64,
    /// The underlying [`Splicer`]'s counters: ciphertext fragments in user
    /// space, plaintext under kTLS.
    pub send: SendStats,
}

/// A TLS connection that sends whole [`Msg`]s: each message is sealed into
/// as few records as its length allows and sent in one call, with one copy
/// per byte (or none, under kTLS).
///
/// Made by [`TlsSplicer::accept`] (server) or [`TlsSplicer::connect`]
/// (client) over a connected, blocking socket, or through a [`Builder`].
///
/// ```no_run
/// use std::net::TcpListener;
/// use std::sync::Arc;
/// use msgsplice::tls::TlsSplicer;
/// use msgsplice::{FragCache, Msg};
/// # fn config() -> Arc<rustls::ServerConfig> { unimplemented!() }
///
/// let (sock, _) = TcpListener::bind("127.0.0.1:0")?.accept()?;
/// let mut tls = TlsSplicer::accept(config(), sock)?;
/// let page = FragCache::global().memdup(&[7u8; 65536])?;
/// let mut msg = Msg::new();
/// msg.push(b"HEADER").push(page).push(b"TRAILER");
/// tls.send(&mut msg)?; // 5 records, one sendmsg
/// tls.close()?;        // close_notify
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TlsSplicer<S: AsFd = TcpStream> {
    splicer: Splicer<S>,
    /// The record sealer; `None` when the kernel seals (kTLS).
    writer: Option<RecordWriter>,
    /// Sealed records not yet taken by the socket, in order.
    out: Msg<'static>,
    inbound: Inbound,
    session: Session,
    version: Version,
    ktls: KtlsStatus,
    /// Records sealed under one key before a key update (TLS 1.3) or an
    /// error (TLS 1.2).
    key_limit: u64,
    /// kTLS: an upper bound of the records the kernel sealed under the
    /// current key.
    ktls_records: u64,
    batch: u64,
    linger: std::time::Duration,
    /// Closed for sending: close_notify (or a fatal alert) is queued or
    /// sent, and nothing may be sealed after it.
    sent_close: bool,
    /// kTLS: an alert the kernel has not taken yet (the socket was full);
    /// [`flush`](TlsSplicer::flush) sends it.
    ktls_alert: Option<[u8; 2]>,
    stats: TlsStats,
}

impl<S: AsFd> TlsSplicer<S> {
    /// Accepts a TLS connection on `sock` (a connected, blocking socket)
    /// with the default [`Builder`]: runs the handshake, then tries kTLS.
    pub fn accept(config: std::sync::Arc<rustls::ServerConfig>, sock: S) -> Result<Self, TlsError> {
        Builder::new().accept(config, sock)
    }

    /// Opens a TLS connection to `name` on `sock` (connected, blocking)
    /// with the default [`Builder`].
    pub fn connect(
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
        sock: S,
    ) -> Result<Self, TlsError> {
        Builder::new().connect(config, name, sock)
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        self.splicer.get_ref()
    }

    /// The Splicer that sends the records (or, under kTLS, the plaintext).
    pub fn splicer(&self) -> &Splicer<S> {
        &self.splicer
    }

    /// Whether the kernel seals this connection's records, and if not why.
    pub fn ktls(&self) -> KtlsStatus {
        self.ktls
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> ProtocolVersion {
        self.session.protocol_version()
    }

    /// The negotiated cipher suite.
    pub fn cipher_suite(&self) -> SupportedCipherSuite {
        self.session.cipher_suite()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TlsStats {
        TlsStats {
            records_received: self.inbound.records,
            send: self.splicer.stats(),
            ..self.stats
        }
    }

    /// Sealed bytes waiting for the socket (non-blocking sockets only),
    /// close_notify included.
    pub fn pending(&self) -> u64 {
        let alert = self.ktls_alert.map_or(0, |a| a.len() as u64);
        self.out.remaining() + alert
    }

    /// Sends `msg` from its cursor as application data, and advances the
    /// cursor. Returns the plaintext bytes accepted by this call.
    ///
    /// In user space the message is sealed in batches of
    /// [`Builder::batch_bytes`]: each batch is one `sendmsg` of its records
    /// (plus one `preadv` per 64 records of file data). On a blocking
    /// socket everything goes before this returns. On a non-blocking one,
    /// sealed records the socket would not take stay queued: the call
    /// returns what was accepted (or [`TlsError::WouldBlock`] if nothing
    /// was), and [`flush`](Self::flush) or the next `send` pushes them out
    /// first. Under kTLS the message goes as plaintext through the
    /// [`Splicer`] (file ranges by `sendfile`).
    ///
    /// A file range past the end of its file fails before anything is
    /// sealed ([`TlsError::Send`] with `PastEof`). Once close_notify is
    /// queued ([`send_close_notify`](Self::send_close_notify)), even if the
    /// socket has not taken it yet, the call is [`TlsError::Closed`] and
    /// nothing is sealed.
    pub fn send(&mut self, msg: &mut Msg<'_>) -> Result<u64, TlsError> {
        if self.sent_close {
            return Err(TlsError::Closed);
        }
        self.flush()?;
        if self.writer.is_none() {
            // The kernel does not count records against the key's limit:
            // count an upper bound (full records, plus one record closed
            // early at each segment boundary) and update the key first.
            let bound = RecordWriter::records_for(msg.remaining()) + msg.segments().len() as u64;
            if self.ktls_records.saturating_add(bound) >= self.key_limit {
                self.key_update(false)?;
            }
            self.ktls_records += bound;
            let n = self.splicer.send(msg)?;
            self.stats.plaintext_bytes += n;
            if msg.is_sent() {
                self.stats.messages += 1;
            }
            return Ok(n);
        }
        if msg.sent() == 0 && msg.has_file() {
            crate::send::file::check_ranges(msg.segments())?;
        }
        let mut accepted = 0;
        while !msg.is_sent() {
            let len = self.key_budget(msg.remaining().min(self.batch))?;
            let Some(w) = self.writer.as_mut() else {
                break; // not reached: checked above
            };
            w.seal_msg(msg, len, &mut self.out, &mut self.stats)?;
            accepted += len;
            match self.flush() {
                Ok(()) => {}
                Err(TlsError::WouldBlock) => break,
                Err(e) => return Err(e),
            }
        }
        if msg.is_sent() {
            self.stats.messages += 1;
        }
        Ok(accepted)
    }

    /// Sends the sealed records still queued (after a `send` or
    /// [`send_close_notify`](Self::send_close_notify) on a non-blocking
    /// socket stopped short), from the byte where the socket stopped:
    /// nothing is sealed again. [`TlsError::WouldBlock`] if the socket is
    /// still full.
    pub fn flush(&mut self) -> Result<(), TlsError> {
        if !self.out.is_sent() {
            self.splicer.send(&mut self.out)?;
            if !self.out.is_sent() {
                return Err(TlsError::WouldBlock);
            }
        }
        self.out.clear();
        if let Some(body) = self.ktls_alert {
            let fd = self.splicer.get_ref().as_fd();
            ktls::send_control(fd, ContentType::Alert, &body)?;
            self.ktls_alert = None;
        }
        Ok(())
    }

    /// Reads application data into `buf`. Returns 0 once the peer's
    /// close_notify has arrived (and for an empty `buf`). An end of stream
    /// without close_notify is an error ([`TlsError::UnexpectedEof`] or
    /// [`TlsError::TruncatedRecord`]), a reset [`TlsError::PeerReset`].
    ///
    /// Key updates are applied on the way, and answered when the peer asks
    /// (that sends a record); session tickets go to rustls's store.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.receive_step(buf)? {
                Received::Data(n) => return Ok(n),
                Received::End => return Ok(0),
                Received::NeedBytes => {
                    let fd = self.splicer.get_ref().as_fd();
                    match io::read_some(fd, self.inbound.spare())? {
                        0 => return Err(self.inbound.eof_error()),
                        n => self.inbound.filled(n),
                    }
                }
            }
        }
    }

    /// Processes the records received so far, sans I/O, until application
    /// data is copied into `buf` (not empty), the peer's close_notify is
    /// found, or more bytes are needed. Key updates and session tickets
    /// are handled on the way.
    fn receive_step(&mut self, buf: &mut [u8]) -> Result<Received, TlsError> {
        loop {
            let n = self.inbound.take_plaintext(buf);
            if n > 0 {
                return Ok(Received::Data(n));
            }
            if self.inbound.peer_closed {
                return Ok(Received::End);
            }
            let ev = if self.inbound.handshake_pending() {
                self.inbound.handshake_message()
            } else {
                self.inbound.next()
            };
            match ev.map_err(|e| self.fatal(e))? {
                Some(Event::Data | Event::Nothing) => {}
                Some(Event::CloseNotify) => return Ok(Received::End),
                Some(Event::Handshake(ty, body)) => self.post_handshake(ty, &body)?,
                None => return Ok(Received::NeedBytes),
            }
        }
    }

    /// True once the peer's close_notify has been read.
    pub fn peer_closed(&self) -> bool {
        self.inbound.peer_closed && !self.inbound.has_plaintext()
    }

    /// Updates this side's sending keys (TLS 1.3): sends a KeyUpdate and
    /// seals everything after it with the next secrets. With
    /// `request_peer`, asks the peer to update its keys too. Done by itself
    /// before the cipher's usage limit is reached. [`TlsError::Closed`]
    /// once close_notify is queued: nothing may follow it.
    pub fn key_update(&mut self, request_peer: bool) -> Result<(), TlsError> {
        if self.sent_close {
            return Err(TlsError::Closed);
        }
        if self.version != Version::Tls13 {
            return Err(TlsError::NeedsTls13);
        }
        let msg = [HS_KEY_UPDATE, 0, 0, 1, u8::from(request_peer)];
        if let Some(w) = self.writer.as_mut() {
            // The KeyUpdate goes under the old keys, everything after it
            // under the new ones.
            w.seal_control(ContentType::Handshake, &msg, &mut self.out, &mut self.stats)?;
            let (seq, secrets) = self.session.update_tx()?;
            w.sealer = Sealer::new(Version::Tls13, Keys::new(&secrets)?, seq);
        } else {
            let fd = self.splicer.get_ref().as_fd();
            ktls::send_control(fd, ContentType::Handshake, &msg)?;
            let (seq, secrets) = self.session.update_tx()?;
            ktls::set_keys(fd, &secrets, seq).map_err(|_| TlsError::KeyLimit)?;
            self.ktls_records = 0;
        }
        self.stats.key_updates_sent += 1;
        match self.flush() {
            Ok(()) | Err(TlsError::WouldBlock) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// How much of `want` plaintext bytes may be sealed under the current
    /// key: at most [`Builder::key_update_after`] records per key, one of
    /// them kept for the KeyUpdate that ends it (TLS 1.3; done here when
    /// the key is used up). In TLS 1.2, where keys cannot be updated, a
    /// batch that would pass the limit is [`TlsError::KeyLimit`] before
    /// anything of it is sealed.
    fn key_budget(&mut self, want: u64) -> Result<u64, TlsError> {
        let Some(w) = self.writer.as_ref() else {
            return Ok(want);
        };
        let left = self.key_limit.saturating_sub(w.sealer.seq());
        let records = match self.version {
            Version::Tls12 if RecordWriter::records_for(want) > left => {
                return Err(TlsError::KeyLimit)
            }
            Version::Tls12 => left,
            Version::Tls13 if left <= 1 => {
                self.key_update(false)?;
                self.key_limit.saturating_sub(1).max(1)
            }
            Version::Tls13 => left - 1,
        };
        Ok(want.min(records.saturating_mul(MAX_PLAINTEXT as u64)))
    }

    /// Queues the last record of this side, an alert: sealed into the
    /// queue (user space) or kept for the kernel (kTLS), to be sent by
    /// [`flush`](Self::flush). Marks the connection closed for sending
    /// first, so that however often a full socket makes the caller retry,
    /// the alert is queued once.
    fn queue_final_alert(&mut self, level: u8, desc: u8) -> Result<(), TlsError> {
        debug_assert!(!self.sent_close);
        self.sent_close = true;
        let body = [level, desc];
        match self.writer.as_mut() {
            Some(w) => w.seal_control(ContentType::Alert, &body, &mut self.out, &mut self.stats),
            None => {
                self.ktls_alert = Some(body);
                Ok(())
            }
        }
    }

    /// Tells the peer why the connection ends (best effort) and returns
    /// the error.
    fn fatal(&mut self, e: TlsError) -> TlsError {
        let desc = match e {
            TlsError::BadRecordMac => ALERT_BAD_RECORD_MAC,
            TlsError::RecordOverflow { .. } => ALERT_RECORD_OVERFLOW,
            TlsError::UnexpectedMessage(_) => ALERT_UNEXPECTED_MESSAGE,
            _ => return e,
        };
        if !self.sent_close && self.queue_final_alert(ALERT_FATAL, desc).is_ok() {
            let _ = self.flush();
        }
        e
    }

    /// A handshake message after the handshake.
    fn post_handshake(&mut self, ty: u8, body: &[u8]) -> Result<(), TlsError> {
        match (self.version, ty) {
            (Version::Tls13, HS_NEW_SESSION_TICKET) => self.session.new_session_ticket(body),
            (Version::Tls13, HS_KEY_UPDATE) => {
                let request = match body {
                    [0] => false,
                    [1] => true,
                    _ => return Err(self.fatal(TlsError::UnexpectedMessage("malformed KeyUpdate"))),
                };
                // The new keys start with the next record, so a KeyUpdate
                // must end its record (RFC 8446 section 5.1).
                if self.inbound.handshake_partial() {
                    return Err(self.fatal(TlsError::UnexpectedMessage(
                        "KeyUpdate not at the end of a record",
                    )));
                }
                let (seq, secrets) = self.session.update_rx()?;
                self.inbound.opener = Opener::new(Version::Tls13, Keys::new(&secrets)?, seq);
                self.stats.key_updates_received += 1;
                if request && !self.sent_close {
                    self.key_update(false)?;
                }
                Ok(())
            }
            // Renegotiation is not supported: a HelloRequest may be ignored
            // (RFC 5246 section 7.4.1.1).
            (Version::Tls12, HS_HELLO_REQUEST) => Ok(()),
            _ => Err(self.fatal(TlsError::UnexpectedMessage(
                "a handshake message not allowed after the handshake",
            ))),
        }
    }
}

impl<S: AsFd> std::io::Read for TlsSplicer<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Ok(TlsSplicer::read(self, buf)?)
    }
}

impl<S: AsFd> fmt::Debug for TlsSplicer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSplicer")
            .field("version", &self.version)
            .field("ktls", &self.ktls)
            .field("pending", &self.pending())
            .field("stats", &self.stats())
            .finish()
    }
}
