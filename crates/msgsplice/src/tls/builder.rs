//! Settings of a [`TlsSplicer`], and the handshake that makes one.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::{ClientConfig, ProtocolVersion, ServerConfig, SupportedCipherSuite};

use super::handshake::{drive, Established};
use super::inbound::Inbound;
use super::ktls::{enable, KtlsStatus};
use super::record::{Keys, Opener, Sealer, Version, MAX_PLAINTEXT};
use super::writer::RecordWriter;
use super::{TlsError, TlsSplicer, TlsStats};
use crate::frag::FragCache;
use crate::msg::Msg;
use crate::send;

/// Whether to hand the records to the kernel (kTLS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ktls {
    /// Use kTLS when the kernel and the session allow it, else seal in
    /// user space (the default).
    #[default]
    Auto,
    /// Always seal in user space.
    Off,
    /// Fail with [`TlsError::KtlsUnavailable`] when kTLS cannot be used.
    Require,
}

/// Settings of a [`TlsSplicer`]; [`accept`](Builder::accept) and
/// [`connect`](Builder::connect) run the handshake and make one.
#[derive(Clone, Debug)]
pub struct Builder {
    send: send::Builder,
    ktls: Ktls,
    cache: Option<FragCache>,
    batch: u64,
    key_limit: Option<u64>,
    linger: Duration,
    close_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            send: send::Builder::default(),
            ktls: Ktls::Auto,
            cache: None,
            batch: 64 * MAX_PLAINTEXT as u64,
            key_limit: None,
            linger: Duration::from_secs(1),
            close_timeout: Duration::from_secs(10),
        }
    }
}

impl Builder {
    /// The defaults: kTLS when available, the Splicer's default policy,
    /// the global fragment cache, 1 MiB batches, key updates at the
    /// cipher's confidentiality limit.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Whether to try kTLS (default [`Ktls::Auto`]).
    pub fn ktls(mut self, mode: Ktls) -> Builder {
        self.ktls = mode;
        self
    }

    /// Settings of the [`Splicer`](crate::Splicer) that sends the sealed
    /// records (zero-copy policy, thresholds). Under kTLS its SPLICE hint is
    /// turned off: the kernel's TLS layer refuses `MSG_ZEROCOPY`.
    pub fn splicer(mut self, b: send::Builder) -> Builder {
        self.send = b;
        self
    }

    /// The cache record buffers come from (default
    /// [`FragCache::global`]). A cache with larger folios fits more 16 KiB
    /// records per folio (three fit in the default 64 KiB).
    pub fn frag_cache(mut self, cache: FragCache) -> Builder {
        self.cache = Some(cache);
        self
    }

    /// Plaintext sealed per `sendmsg` (default 1 MiB; at least one record).
    /// A longer message, or one with large file ranges, goes in several
    /// batches, so the record memory held at once stays bounded.
    pub fn batch_bytes(mut self, bytes: u64) -> Builder {
        self.batch = bytes.max(MAX_PLAINTEXT as u64);
        self
    }

    /// Records sealed under one key, the KeyUpdate that ends it included
    /// (at least 2; default: the cipher suite's confidentiality limit,
    /// 2^23 records for AES-GCM in rustls). TLS 1.3 updates the key when
    /// it is used up; in TLS 1.2, a batch that would pass the limit is
    /// [`TlsError::KeyLimit`] before any of it is sealed.
    pub fn key_update_after(mut self, records: u64) -> Builder {
        self.key_limit = Some(records.max(2));
        self
    }

    /// How long [`TlsSplicer::close`] waits for the peer to close its side
    /// after close_notify (default 1 s; zero: not at all).
    pub fn linger(mut self, timeout: Duration) -> Builder {
        self.linger = timeout;
        self
    }

    /// How long an asynchronous close
    /// ([`AsyncTlsSplicer::close`](super::AsyncTlsSplicer::close)) waits
    /// for the socket to take the records still queued and close_notify
    /// (default 10 s). A blocking close waits as its socket does.
    pub fn close_timeout(mut self, timeout: Duration) -> Builder {
        self.close_timeout = timeout;
        self
    }

    /// Runs a server handshake on `sock` (connected and blocking; it may be
    /// made non-blocking afterwards). If `config` does not allow secret
    /// extraction, a copy of it that does is used (set
    /// `enable_secret_extraction` yourself to avoid that clone).
    ///
    /// A peer that stops talking blocks the handshake; bound it with a read
    /// timeout on the socket (`set_read_timeout`), which then ends it with
    /// [`TlsError::WouldBlock`]. Records always carry up to 16 KiB of
    /// plaintext: `config.max_fragment_size` is not applied.
    pub fn accept<S: AsFd>(
        self,
        config: Arc<ServerConfig>,
        sock: S,
    ) -> Result<TlsSplicer<S>, TlsError> {
        let conn = UnbufferedServerConnection::new(extractable_server(config))
            .map_err(TlsError::Handshake)?;
        let est = drive(conn, sock.as_fd())?;
        self.establish(est, sock)
    }

    /// Runs a client handshake with server `name` on `sock` (connected and
    /// blocking). Secret extraction is enabled on a copy of `config` if
    /// needed, as for [`accept`](Self::accept).
    pub fn connect<S: AsFd>(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        sock: S,
    ) -> Result<TlsSplicer<S>, TlsError> {
        let conn = UnbufferedClientConnection::new(extractable_client(config), name)
            .map_err(TlsError::Handshake)?;
        let est = drive(conn, sock.as_fd())?;
        self.establish(est, sock)
    }

    /// Runs a server handshake on `sock` (connected; made non-blocking)
    /// from a tokio task, waiting for the socket instead of blocking, and
    /// makes an [`AsyncTlsSplicer`](super::AsyncTlsSplicer). Settings and
    /// `config` as for [`accept`](Self::accept).
    ///
    /// A peer that stops talking stalls the handshake: bound it with
    /// `tokio::time::timeout`. Dropping the future abandons the connection
    /// (a handshake cannot resume).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as tokio's `AsyncFd`.
    #[cfg(feature = "tokio")]
    pub async fn accept_async<S: AsFd>(
        self,
        config: Arc<ServerConfig>,
        sock: S,
    ) -> Result<super::AsyncTlsSplicer<S>, TlsError> {
        let conn = UnbufferedServerConnection::new(extractable_server(config))
            .map_err(TlsError::Handshake)?;
        let (est, events) = super::async_tls::handshake(conn, sock.as_fd()).await?;
        let close_timeout = self.close_timeout;
        let tls = self.establish(est, sock)?;
        Ok(super::AsyncTlsSplicer::new(tls, events, close_timeout))
    }

    /// Runs a client handshake with server `name` on `sock` (connected;
    /// made non-blocking) from a tokio task; as
    /// [`accept_async`](Self::accept_async).
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime with I/O enabled, as tokio's `AsyncFd`.
    #[cfg(feature = "tokio")]
    pub async fn connect_async<S: AsFd>(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        sock: S,
    ) -> Result<super::AsyncTlsSplicer<S>, TlsError> {
        let conn = UnbufferedClientConnection::new(extractable_client(config), name)
            .map_err(TlsError::Handshake)?;
        let (est, events) = super::async_tls::handshake(conn, sock.as_fd()).await?;
        let close_timeout = self.close_timeout;
        let tls = self.establish(est, sock)?;
        Ok(super::AsyncTlsSplicer::new(tls, events, close_timeout))
    }

    fn establish<S: AsFd>(self, est: Established, sock: S) -> Result<TlsSplicer<S>, TlsError> {
        let Established {
            secrets,
            session,
            leftover,
            early_plaintext,
        } = est;
        let version = match session.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => {
                return Err(TlsError::UnexpectedMessage(
                    "a protocol version other than TLS 1.2 or 1.3",
                ))
            }
        };
        let limit = match session.cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        let inbound = Inbound::new(
            Opener::new(version, Keys::new(&rx)?, rx_seq),
            version,
            &leftover,
            early_plaintext,
        );
        let mut splicer = self.send.build(sock)?;
        let fd = splicer.get_ref().as_fd();
        let ktls = match self.ktls {
            Ktls::Off => KtlsStatus::Off,
            Ktls::Auto | Ktls::Require => enable(fd, splicer.kind(), version, &tx, tx_seq),
        };
        if self.ktls == Ktls::Require && !ktls.is_active() {
            return Err(TlsError::KtlsUnavailable(ktls));
        }
        let writer = if ktls.is_active() {
            splicer.set_splice(false);
            None
        } else {
            let cache = self.cache.unwrap_or_else(|| FragCache::global().clone());
            let sealer = Sealer::new(version, Keys::new(&tx)?, tx_seq);
            Some(RecordWriter::new(sealer, cache))
        };
        Ok(TlsSplicer {
            splicer,
            writer,
            out: Msg::with_capacity(64),
            inbound,
            session,
            version,
            ktls,
            key_limit: self.key_limit.unwrap_or(limit),
            ktls_records: 0,
            batch: self.batch,
            linger: self.linger,
            sent_close: false,
            ktls_alert: None,
            stats: TlsStats::default(),
        })
    }
}

/// `config`, or a copy of it that allows the secret extraction the record
/// layer needs.
fn extractable_server(config: Arc<ServerConfig>) -> Arc<ServerConfig> {
    if config.enable_secret_extraction {
        return config;
    }
    let mut c = (*config).clone();
    c.enable_secret_extraction = true;
    Arc::new(c)
}

/// As [`extractable_server`], for a client.
fn extractable_client(config: Arc<ClientConfig>) -> Arc<ClientConfig> {
    if config.enable_secret_extraction {
        return config;
    }
    let mut c = (*config).clone();
    c.enable_secret_extraction = true;
    Arc::new(c)
}
