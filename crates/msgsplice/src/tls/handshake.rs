//! The handshake: rustls's unbuffered connection driven until both sides
//! can send application data, then turned into a [`KernelConnection`] and
//! the traffic secrets.
//!
//! rustls does the whole protocol (certificates, key exchange, the
//! transcript); [`Handshake`] only keeps the bytes between it and the
//! socket, sans I/O, and [`drive`] moves them over a blocking socket (the
//! asynchronous driver is in `async_tls`). Two
//! buffers serve the handshake and are dropped after it: the bytes received
//! (records rustls has not consumed yet) and the bytes to send.

use std::os::fd::BorrowedFd;

use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{ConnectionState, EncodeError, UnbufferedStatus};
use rustls::{ExtractedSecrets, ProtocolVersion, SupportedCipherSuite};

use super::io::{read_some, write_all, write_some};
use super::record::Header;
use super::TlsError;

/// rustls's view of a connection after the handshake: it computes the next
/// traffic secrets on a key update and takes the server's session tickets.
pub(crate) enum Session {
    Server(KernelConnection<ServerConnectionData>),
    Client(KernelConnection<ClientConnectionData>),
}

impl Session {
    pub(crate) fn protocol_version(&self) -> ProtocolVersion {
        match self {
            Session::Server(k) => k.protocol_version(),
            Session::Client(k) => k.protocol_version(),
        }
    }

    pub(crate) fn cipher_suite(&self) -> SupportedCipherSuite {
        match self {
            Session::Server(k) => k.negotiated_cipher_suite(),
            Session::Client(k) => k.negotiated_cipher_suite(),
        }
    }

    pub(crate) fn update_tx(
        &mut self,
    ) -> Result<(u64, rustls::ConnectionTrafficSecrets), TlsError> {
        match self {
            Session::Server(k) => k.update_tx_secret(),
            Session::Client(k) => k.update_tx_secret(),
        }
        .map_err(TlsError::Session)
    }

    pub(crate) fn update_rx(
        &mut self,
    ) -> Result<(u64, rustls::ConnectionTrafficSecrets), TlsError> {
        match self {
            Session::Server(k) => k.update_rx_secret(),
            Session::Client(k) => k.update_rx_secret(),
        }
        .map_err(TlsError::Session)
    }

    /// A NewSessionTicket's body (without the 4-byte handshake header).
    /// Only a server sends them; a client receiving one is an error.
    pub(crate) fn new_session_ticket(&mut self, body: &[u8]) -> Result<(), TlsError> {
        match self {
            Session::Client(k) => k.handle_new_session_ticket(body).map_err(TlsError::Session),
            Session::Server(_) => Err(TlsError::UnexpectedMessage(
                "a client sent a NewSessionTicket",
            )),
        }
    }
}

/// What the handshake leaves behind.
pub(crate) struct Established {
    pub(crate) secrets: ExtractedSecrets,
    pub(crate) session: Session,
    /// Bytes received after the handshake's last record: the beginning of
    /// the peer's record stream, still encrypted.
    pub(crate) leftover: Vec<u8>,
    /// Application data rustls already decrypted while finishing the
    /// handshake (a peer that sent data right behind its Finished).
    pub(crate) early_plaintext: Vec<u8>,
}

/// The two rustls unbuffered connection types, seen the same way.
pub(crate) trait Unbuffered {
    type Data;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn handshaking(&self) -> bool;
    fn into_session(self) -> Result<(ExtractedSecrets, Session), rustls::Error>;
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn into_session(self) -> Result<(ExtractedSecrets, Session), rustls::Error> {
        let (s, k) = self.dangerous_into_kernel_connection()?;
        Ok((s, Session::Server(k)))
    }
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
    fn handshaking(&self) -> bool {
        self.is_handshaking()
    }
    fn into_session(self) -> Result<(ExtractedSecrets, Session), rustls::Error> {
        let (s, k) = self.dangerous_into_kernel_connection()?;
        Ok((s, Session::Client(k)))
    }
}

/// What to do after a state was handled and its bytes discarded.
enum Next {
    /// Ask rustls again.
    Continue,
    /// rustls has records ready to go: send them before anything else.
    Transmit,
    /// rustls needs the next record.
    Read,
    /// rustls could send application data: done, unless it still waits
    /// for the peer's Finished.
    Traffic,
}

/// What a [`Handshake`] needs from its driver before it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Send [`Handshake::outgoing`]'s bytes.
    Write,
    /// Receive more bytes from the peer.
    Read,
    /// The handshake is complete and everything is sent:
    /// [`Handshake::finish`].
    Done,
}

/// A handshake in progress, sans I/O: rustls's connection and the bytes
/// in both directions. [`advance`](Handshake::advance) runs rustls as far
/// as the bytes received allow and says what it needs; a driver (blocking
/// here, asynchronous in `async_tls`) moves the bytes.
pub(crate) struct Handshake<C> {
    conn: C,
    pub(crate) incoming: Incoming,
    pub(crate) outgoing: Outgoing,
    early_plaintext: Vec<u8>,
}

impl<C: Unbuffered> Handshake<C> {
    pub(crate) fn new(conn: C) -> Handshake<C> {
        Handshake {
            conn,
            incoming: Incoming::new(),
            outgoing: Outgoing::new(),
            early_plaintext: Vec::new(),
        }
    }

    /// Runs rustls until it needs bytes sent or received, or is done. On
    /// an error, the fatal alert rustls wants to send (if any) is left in
    /// `outgoing`, for the driver to send on a best-effort basis.
    pub(crate) fn advance(&mut self) -> Result<Need, TlsError> {
        loop {
            let UnbufferedStatus { discard, state } = self.conn.process(self.incoming.shown());
            let next = match state {
                Err(e) => {
                    queue_alert(&mut self.conn, &mut self.outgoing);
                    return Err(TlsError::Handshake(e));
                }
                Ok(state) => handle(state, &mut self.outgoing, &mut self.early_plaintext)?,
            };
            self.incoming.discard(discard);
            match next {
                Next::Continue => {}
                Next::Transmit => return Ok(Need::Write),
                _ if !self.outgoing.is_empty() => return Ok(Need::Write),
                // A TLS 1.3 server may send from its Finished on, before the
                // client's Finished has arrived: wait for that too.
                Next::Traffic if !self.conn.handshaking() => return Ok(Need::Done),
                Next::Traffic | Next::Read => {
                    if !self.incoming.show_buffered() {
                        return Ok(Need::Read);
                    }
                }
            }
        }
    }

    /// Extracts the secrets of the completed handshake.
    pub(crate) fn finish(self) -> Result<Established, TlsError> {
        let (secrets, session) = self.conn.into_session().map_err(TlsError::Handshake)?;
        // rustls consumed every record it was shown before reaching traffic:
        // what it was not shown is the start of the peer's record stream.
        Ok(Established {
            secrets,
            session,
            leftover: self.incoming.unshown().to_vec(),
            early_plaintext: self.early_plaintext,
        })
    }
}

/// Drives `conn` over the blocking socket `fd` until the handshake is
/// complete and nothing is left to send, then extracts the secrets.
pub(crate) fn drive<C: Unbuffered>(conn: C, fd: BorrowedFd<'_>) -> Result<Established, TlsError> {
    let mut hs = Handshake::new(conn);
    loop {
        match hs.advance() {
            Ok(Need::Write) => hs.outgoing.send_all(fd)?,
            Ok(Need::Read) => {
                if hs.incoming.receive(fd)? == 0 {
                    return Err(TlsError::HandshakeEof);
                }
            }
            Ok(Need::Done) => return hs.finish(),
            Err(e) => {
                // Best effort: the peer learns why, if it still listens.
                let _ = hs.outgoing.send_all(fd);
                return Err(e);
            }
        }
    }
}

/// Handles one state rustls reports: encodes its records, keeps the
/// application data it decrypted, and says what it needs next. Records
/// rustls asks to transmit are marked done at once: they wait in
/// `outgoing`, in order, and the driver sends them before reading again.
fn handle<D>(
    state: ConnectionState<'_, '_, D>,
    outgoing: &mut Outgoing,
    early_plaintext: &mut Vec<u8>,
) -> Result<Next, TlsError> {
    match state {
        ConnectionState::EncodeTlsData(mut s) => {
            outgoing.encode(|buf| s.encode(buf))?;
            Ok(Next::Continue)
        }
        ConnectionState::TransmitTlsData(s) => {
            s.done();
            Ok(Next::Transmit)
        }
        ConnectionState::ReadTraffic(mut r) => {
            while let Some(rec) = r.next_record() {
                let rec = rec.map_err(TlsError::Handshake)?;
                early_plaintext.extend_from_slice(rec.payload);
            }
            Ok(Next::Continue)
        }
        ConnectionState::BlockedHandshake => Ok(Next::Read),
        ConnectionState::WriteTraffic(_) => Ok(Next::Traffic),
        ConnectionState::PeerClosed | ConnectionState::Closed => Err(TlsError::HandshakeEof),
        _ => Err(TlsError::UnexpectedMessage("early data is not accepted")),
    }
}

/// The bytes received during the handshake. rustls is shown
/// `buf[..shown]`, whole records only, one more each time it asks for
/// more; so it stops at the end of the handshake, and every later record
/// (data, or a KeyUpdate that arrived right behind the peer's Finished) is
/// left to msgsplice's record layer.
pub(crate) struct Incoming {
    buf: Vec<u8>,
    /// Bytes received: `buf[..used]`.
    used: usize,
    shown: usize,
}

impl Incoming {
    fn new() -> Incoming {
        Incoming {
            buf: vec![0u8; 16 << 10],
            used: 0,
            shown: 0,
        }
    }

    /// The records rustls may see.
    fn shown(&mut self) -> &mut [u8] {
        &mut self.buf[..self.shown]
    }

    /// The bytes received that rustls has not been shown.
    fn unshown(&self) -> &[u8] {
        &self.buf[self.shown..self.used]
    }

    /// Drops the first `n` bytes, which rustls has consumed.
    fn discard(&mut self, n: usize) {
        self.buf.copy_within(n..self.used, 0);
        self.used -= n;
        self.shown -= n;
    }

    /// Shows rustls one more whole record if one has been received; false
    /// if more bytes are needed first. Bytes that are no TLS record are
    /// all shown, for rustls to reject them and say why.
    fn show_buffered(&mut self) -> bool {
        match next_record(self.unshown()) {
            Framing::Complete(n) => {
                self.shown += n;
                true
            }
            Framing::Invalid if self.used > self.shown => {
                self.shown = self.used;
                true
            }
            Framing::Invalid | Framing::Partial => false,
        }
    }

    /// One `recv` from `fd` (blocking or not, as the socket is); `Ok(0)`
    /// at the end of the stream.
    pub(crate) fn receive(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<usize> {
        if self.used == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = read_some(fd, &mut self.buf[self.used..])?;
        self.used += n;
        Ok(n)
    }
}

/// The handshake's records waiting to be sent: `buf[sent..used]`.
pub(crate) struct Outgoing {
    buf: Vec<u8>,
    used: usize,
    /// Bytes the socket took already (a non-blocking socket may take part).
    sent: usize,
}

impl Outgoing {
    fn new() -> Outgoing {
        Outgoing {
            buf: vec![0u8; 16 << 10],
            used: 0,
            sent: 0,
        }
    }

    /// True when every record encoded has been sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.sent == self.used
    }

    /// Appends what `encode` writes, growing the buffer as often as it
    /// says it needs more room.
    fn encode(
        &mut self,
        mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
    ) -> Result<(), TlsError> {
        loop {
            match encode(&mut self.buf[self.used..]) {
                Ok(n) => {
                    self.used += n;
                    return Ok(());
                }
                Err(EncodeError::InsufficientSize(need)) => {
                    self.buf.resize(self.used + need.required_size, 0);
                }
                Err(_) => return Err(TlsError::UnexpectedMessage("handshake encoding")),
            }
        }
    }

    /// Writes every waiting record to the (blocking) socket.
    fn send_all(&mut self, fd: BorrowedFd<'_>) -> Result<(), TlsError> {
        write_all(fd, &self.buf[self.sent..self.used])?;
        self.sent = 0;
        self.used = 0;
        Ok(())
    }

    /// One `send` of what is waiting (a non-blocking socket may take
    /// part of it, or refuse with `WouldBlock`).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn send_some(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<()> {
        self.sent += write_some(fd, &self.buf[self.sent..self.used])?;
        if self.sent == self.used {
            self.sent = 0;
            self.used = 0;
        }
        Ok(())
    }
}

/// What the bytes at the start of a buffer hold.
enum Framing {
    /// A whole record of this many bytes.
    Complete(usize),
    /// The start of one (or nothing yet).
    Partial,
    /// A header no TLS peer sends (content type, version or length).
    Invalid,
}

/// Frames the record at the start of `buf`, by the record layer's own
/// header parser (the version is not known yet, so the larger limit holds).
fn next_record(buf: &[u8]) -> Framing {
    match Header::parse_any_version(buf) {
        Ok(Some(h)) if h.record_len() <= buf.len() => Framing::Complete(h.record_len()),
        Ok(_) => Framing::Partial,
        Err(_) => Framing::Invalid,
    }
}

/// After a handshake error rustls may have a fatal alert to send: encode
/// it into `outgoing`, so the peer learns why.
fn queue_alert<C: Unbuffered>(conn: &mut C, outgoing: &mut Outgoing) {
    let UnbufferedStatus { state, .. } = conn.process(&mut []);
    if let Ok(ConnectionState::EncodeTlsData(mut s)) = state {
        let _ = outgoing.encode(|buf| s.encode(buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_whole_records_only() {
        let rec = [22, 3, 1, 0, 2, 0xaa, 0xbb, 23];
        assert!(matches!(next_record(&rec[..4]), Framing::Partial));
        assert!(matches!(next_record(&rec[..6]), Framing::Partial));
        assert!(matches!(next_record(&rec), Framing::Complete(7)));
        assert!(matches!(next_record(b"GET / HTTP/1.1"), Framing::Invalid));
    }

    use std::sync::Arc;

    use rustls::crypto::ring::{cipher_suite, default_provider};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ConnectionTrafficSecrets, ServerConfig};

    /// A server and a client configuration limited to `suite`, over a
    /// certificate made here, both allowing secret extraction.
    fn configs(suite: SupportedCipherSuite) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let mut provider = default_provider();
        provider.cipher_suites = vec![suite];
        let provider = Arc::new(provider);
        let key = PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        server.enable_secret_extraction = true;
        // Tickets would follow the handshake under the traffic keys, for
        // the record layer: none, so that both ends end on the same record.
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        (Arc::new(server), Arc::new(client))
    }

    /// Moves up to `chunk` bytes of what `from` has to send into `to`'s
    /// received bytes, as a socket would deliver them.
    fn deliver<A, B>(from: &mut Handshake<A>, to: &mut Handshake<B>, chunk: usize) {
        let out = &mut from.outgoing;
        let n = (out.used - out.sent).min(chunk);
        let inc = &mut to.incoming;
        if inc.buf.len() < inc.used + n {
            inc.buf.resize(inc.used + n, 0);
        }
        inc.buf[inc.used..inc.used + n].copy_from_slice(&out.buf[out.sent..out.sent + n]);
        inc.used += n;
        out.sent += n;
        if out.is_empty() {
            out.sent = 0;
            out.used = 0;
        }
    }

    fn key_bytes(s: &ConnectionTrafficSecrets) -> Vec<u8> {
        match s {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv }
            | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
            | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                [key.as_ref(), iv.as_ref()].concat()
            }
            _ => panic!("a cipher this test does not know"),
        }
    }

    /// Two sans-IO handshakes, a server and a client, meet with no socket
    /// between them, their bytes delivered whole or in pieces as small as
    /// one byte: both finish, with matching keys and nothing left over.
    #[test]
    fn two_handshakes_meet_in_memory() {
        let suites = [
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        for suite in suites {
            for chunk in [1, 7, 100, usize::MAX] {
                let (scfg, ccfg) = configs(suite);
                let name = ServerName::try_from("localhost").unwrap();
                let mut srv = Handshake::new(UnbufferedServerConnection::new(scfg).unwrap());
                let mut cli = Handshake::new(UnbufferedClientConnection::new(ccfg, name).unwrap());
                let mut rounds = 0;
                loop {
                    let c = cli.advance().unwrap();
                    deliver(&mut cli, &mut srv, chunk);
                    let s = srv.advance().unwrap();
                    deliver(&mut srv, &mut cli, chunk);
                    if (c, s) == (Need::Done, Need::Done) {
                        break;
                    }
                    rounds += 1;
                    assert!(rounds < 100_000, "the handshakes make no progress");
                }
                let (srv, cli) = (srv.finish().unwrap(), cli.finish().unwrap());
                assert_eq!(key_bytes(&srv.secrets.tx.1), key_bytes(&cli.secrets.rx.1));
                assert_eq!(key_bytes(&cli.secrets.tx.1), key_bytes(&srv.secrets.rx.1));
                assert_eq!(srv.secrets.tx.0, cli.secrets.rx.0, "sequence numbers");
                assert!(srv.leftover.is_empty() && cli.leftover.is_empty());
            }
        }
    }

    /// A peer that is no TLS peer: the handshake fails and leaves the
    /// alert that tells the peer why, for the driver to send.
    #[test]
    fn foreign_bytes_fail_with_an_alert_to_send() {
        let (scfg, _) = configs(cipher_suite::TLS13_AES_128_GCM_SHA256);
        let mut srv = Handshake::new(UnbufferedServerConnection::new(scfg).unwrap());
        assert_eq!(srv.advance().unwrap(), Need::Read);
        let http = b"GET / HTTP/1.1\r\n\r\n";
        srv.incoming.buf[..http.len()].copy_from_slice(http);
        srv.incoming.used = http.len();
        assert!(matches!(srv.advance(), Err(TlsError::Handshake(_))));
        assert!(!srv.outgoing.is_empty(), "an alert waits to be sent");
        assert_eq!(srv.outgoing.buf[0], 21, "an alert record");
    }
}
