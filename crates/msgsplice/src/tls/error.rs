//! What a TLS connection can report.

use std::io;

use crate::frag::FragError;
use crate::send::SendError;

/// What can go wrong on a [`TlsSplicer`](super::TlsSplicer): during the
/// handshake, while sending, or while reading.
///
/// After any error but [`WouldBlock`](TlsError::WouldBlock) the connection
/// is unusable: a TLS record stream cannot resume after a lost or rejected
/// record. Close it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused the handshake (certificate, protocol version, cipher
    /// suites, or a peer that does not speak TLS).
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    /// The peer closed the connection before the handshake finished.
    #[error("the peer closed the connection during the TLS handshake")]
    HandshakeEof,
    /// The peer reset the connection (`ECONNRESET`), possibly in the middle
    /// of a record. Bytes already accepted may not have arrived.
    #[error("the peer reset the connection")]
    PeerReset,
    /// The connection is closed for sending: the peer went away (`EPIPE`),
    /// or this side already queued close_notify (or a fatal alert after an
    /// error), even if the socket has not taken it yet.
    #[error("the connection is closed for sending")]
    Closed,
    /// An asynchronous close waited
    /// [`Builder::close_timeout`](super::Builder::close_timeout) for the
    /// socket to take the last records (close_notify included) and the
    /// peer did not read them: the connection was closed without them.
    #[error("closing timed out with {pending} bytes of records not taken by the peer")]
    CloseTimedOut {
        /// Bytes of sealed records the socket had not taken.
        pending: u64,
    },
    /// A non-blocking socket is full and nothing could be accepted now.
    /// Wait until it is writable, then call
    /// [`flush`](super::TlsSplicer::flush) or resend the same `Msg`.
    #[error("the socket is full; wait until it is writable and flush or resend")]
    WouldBlock,
    /// The connection ended in the middle of a record: the peer stopped
    /// (or was cut off) after `got` of the record's `want` bytes.
    #[error("the connection ended in the middle of a TLS record ({got} of {want} bytes)")]
    TruncatedRecord {
        /// Bytes of the record that arrived (header included).
        got: usize,
        /// Bytes the record's header announced (header included).
        want: usize,
    },
    /// The connection ended between records but without close_notify: the
    /// data may have been cut short by an attacker or a crash.
    #[error("the connection ended without close_notify; the data may be truncated")]
    UnexpectedEof,
    /// A record failed authentication: corrupted or forged, or the two
    /// sides disagree about keys. A `bad_record_mac` alert is sent.
    #[error("a TLS record failed authentication (bad_record_mac)")]
    BadRecordMac,
    /// A record is larger than the protocol allows.
    #[error("a TLS record of {len} bytes exceeds the protocol's limit")]
    RecordOverflow {
        /// The length found.
        len: usize,
    },
    /// The peer sent something the protocol does not allow here.
    #[error("unexpected TLS message: {0}")]
    UnexpectedMessage(&'static str),
    /// The peer sent a fatal alert (or a warning other than close_notify
    /// in TLS 1.3).
    #[error("the peer sent the alert {0:?}")]
    AlertReceived(rustls::AlertDescription),
    /// The negotiated AEAD is not one this record layer implements
    /// (AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305).
    #[error("the negotiated cipher is not supported by msgsplice's record layer")]
    UnsupportedCipher,
    /// The keys have sealed as many records as the cipher allows and this
    /// version cannot update them (TLS 1.2), or the kernel took over and
    /// refused the new ones: reconnect.
    #[error("the traffic keys reached their usage limit; reconnect")]
    KeyLimit,
    /// Key updates exist only in TLS 1.3.
    #[error("key updates need TLS 1.3")]
    NeedsTls13,
    /// kTLS was required ([`Ktls::Require`](super::Ktls::Require)) but the
    /// kernel or the session cannot use it.
    #[error("kTLS is required but unavailable: {0}")]
    KtlsUnavailable(super::KtlsStatus),
    /// rustls failed after the handshake (a key update or a session ticket
    /// it could not process).
    #[error("TLS session error: {0}")]
    Session(rustls::Error),
    /// Another error of the underlying [`Splicer`](crate::Splicer).
    #[error(transparent)]
    Send(SendError),
    /// No memory for record buffers.
    #[error(transparent)]
    Frag(#[from] FragError),
    /// Another error from the kernel.
    #[error("TLS I/O failed: {0}")]
    Io(io::Error),
}

impl From<SendError> for TlsError {
    fn from(e: SendError) -> TlsError {
        match e {
            SendError::WouldBlock => TlsError::WouldBlock,
            SendError::PeerReset => TlsError::PeerReset,
            SendError::BrokenPipe => TlsError::Closed,
            e => TlsError::Send(e),
        }
    }
}

impl From<io::Error> for TlsError {
    fn from(e: io::Error) -> TlsError {
        match e.kind() {
            io::ErrorKind::WouldBlock => TlsError::WouldBlock,
            io::ErrorKind::ConnectionReset => TlsError::PeerReset,
            io::ErrorKind::BrokenPipe => TlsError::Closed,
            _ => TlsError::Io(e),
        }
    }
}

impl From<TlsError> for io::Error {
    fn from(e: TlsError) -> io::Error {
        let kind = match &e {
            TlsError::WouldBlock => io::ErrorKind::WouldBlock,
            TlsError::PeerReset => io::ErrorKind::ConnectionReset,
            TlsError::Closed => io::ErrorKind::BrokenPipe,
            TlsError::CloseTimedOut { .. } => io::ErrorKind::TimedOut,
            TlsError::HandshakeEof | TlsError::TruncatedRecord { .. } | TlsError::UnexpectedEof => {
                io::ErrorKind::UnexpectedEof
            }
            TlsError::Io(_) => {
                if let TlsError::Io(inner) = e {
                    return inner;
                }
                io::ErrorKind::Other
            }
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}
