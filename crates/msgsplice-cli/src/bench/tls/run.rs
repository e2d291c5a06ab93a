//! One run of one contender: a fresh loopback connection, the sender on
//! the calling thread, a rustls receiver on another, and the counts.

use std::io::{self, BufRead, BufReader, IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::frag::Frag;
use msgsplice::tls::{Builder, Ktls, TlsSplicer};
use msgsplice::Msg;
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection, StreamOwned};

use crate::alloc_count;
use crate::bench::net::harness::Verifier;
use crate::bench::net::pattern;
use crate::bench::pair::ThreadPair;

/// Messages sent before allocations and CPU time are counted.
pub const WARMUP: u64 = 8;
/// A timed run sends at least this many messages.
const MIN_MESSAGES: u64 = 32;
/// The receiver's socket buffer.
const RECV_BUF: usize = 256 << 10;

/// The ways to send a message over TLS that the section compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// rustls `writer().write_all` of the three parts, then `write_tls`.
    RustlsWriter,
    /// rustls `StreamOwned::write_all` of each part.
    RustlsStream,
    /// msgsplice `TlsSplicer::send`, SPLICE on or off.
    Splicer {
        /// The Splicer's SPLICE hint.
        splice: bool,
    },
}

/// Every contender, the baseline first.
pub const CONTENDERS: [Contender; 4] = [
    Contender::RustlsWriter,
    Contender::RustlsStream,
    Contender::Splicer { splice: true },
    Contender::Splicer { splice: false },
];

impl Contender {
    /// The row's name.
    pub fn name(self) -> &'static str {
        match self {
            Contender::RustlsWriter => "rustls writer + write_tls",
            Contender::RustlsStream => "rustls StreamOwned, 3 writes",
            Contender::Splicer { splice: true } => "msgsplice TlsSplicer",
            Contender::Splicer { splice: false } => "msgsplice TlsSplicer, SPLICE off",
        }
    }
}

/// What the receiving thread does with the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// rustls decrypts every record and every plaintext byte is checked.
    Decrypt,
    /// After the handshake (done by rustls) the ciphertext is read and
    /// dropped: the sender sets the pace. Only the byte count is checked.
    Discard,
}

/// What one run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Messages sent.
    pub messages: u64,
    /// Plaintext bytes the receiver read and verified.
    pub bytes: u64,
    /// First send to the receiver's close_notify.
    pub elapsed: Duration,
    /// Sending thread's CPU time per message after warm-up, microseconds.
    pub cpu_us_per_msg: f64,
    /// Write system calls per message (all messages).
    pub writes_per_msg: f64,
    /// Heap allocations per message after warm-up (None without the
    /// counting allocator).
    pub allocs_per_msg: Option<f64>,
    /// msgsplice only: plaintext bytes copied in user space per message
    /// byte, from its counters.
    pub user_copies_per_byte: Option<f64>,
}

/// Server and client configurations with a certificate made now.
pub struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Configs {
    /// A self-signed certificate for "localhost" and the two ends' settings
    /// (rustls's ring provider, its default cipher suites).
    pub fn new() -> Result<Configs, String> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
        let der: CertificateDer<'static> = ck.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
        let provider = Arc::new(ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .map_err(|e| e.to_string())?;
        server.enable_secret_extraction = true;
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).map_err(|e| e.to_string())?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Configs {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}

/// A socket that counts the write calls rustls makes on it.
struct Counted {
    sock: TcpStream,
    writes: u64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes += 1;
        self.sock.write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.writes += 1;
        self.sock.write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sending side of one connection, after its handshake.
enum Sender {
    // Both boxed: keys, key schedules and buffers make them large.
    Rustls(Box<StreamOwned<ServerConnection, Counted>>),
    Splicer(Box<TlsSplicer<TcpStream>>),
}

impl Sender {
    fn accept(c: Contender, cfg: &Configs, sock: TcpStream) -> Result<Sender, String> {
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        match c {
            Contender::RustlsWriter | Contender::RustlsStream => {
                let mut conn =
                    ServerConnection::new(cfg.server.clone()).map_err(|e| e.to_string())?;
                conn.set_buffer_limit(None);
                let mut sock = Counted { sock, writes: 0 };
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)
                        .map_err(|e| format!("handshake: {e}"))?;
                }
                sock.writes = 0;
                Ok(Sender::Rustls(Box::new(StreamOwned::new(conn, sock))))
            }
            Contender::Splicer { splice } => Builder::new()
                .ktls(Ktls::Off)
                .splicer(msgsplice::send::Builder::new().splice(splice))
                .accept(cfg.server.clone(), sock)
                .map(|t| Sender::Splicer(Box::new(t)))
                .map_err(|e| format!("handshake: {e}")),
        }
    }

    fn send(
        &mut self,
        c: Contender,
        header: &[u8],
        payload: &Frag,
        trailer: &[u8],
    ) -> io::Result<()> {
        match (self, c) {
            (Sender::Rustls(s), Contender::RustlsWriter) => {
                let mut w = s.conn.writer();
                w.write_all(header)?;
                w.write_all(payload)?;
                w.write_all(trailer)?;
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                Ok(())
            }
            (Sender::Rustls(s), _) => {
                s.write_all(header)?;
                s.write_all(payload)?;
                s.write_all(trailer)
            }
            (Sender::Splicer(t), _) => {
                let mut msg = Msg::new();
                msg.push(header).push(payload.clone()).push(trailer);
                t.send(&mut msg)?;
                Ok(())
            }
        }
    }

    fn writes(&self) -> u64 {
        match self {
            Sender::Rustls(s) => s.sock.writes,
            Sender::Splicer(t) => t.stats().send.syscalls,
        }
    }

    /// Sends close_notify and closes. Returns the user-space copies per
    /// plaintext byte (msgsplice only).
    fn close(self) -> io::Result<Option<f64>> {
        match self {
            Sender::Rustls(mut s) => {
                s.conn.send_close_notify();
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                let _ = s.sock.sock.shutdown(std::net::Shutdown::Write);
                Ok(None)
            }
            Sender::Splicer(t) => {
                let st = t.close()?;
                Ok(Some(
                    (st.bytes_copied + st.file_bytes_read) as f64
                        / st.plaintext_bytes.max(1) as f64,
                ))
            }
        }
    }
}

/// The calling thread's CPU time so far, from the scheduler's statistics.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// The receiving end: rustls decrypts, the verifier checks. Returns the
/// bytes read and when close_notify arrived.
fn receive(
    sock: TcpStream,
    cfg: Arc<ClientConfig>,
    expected: &[u8],
    mode: Receiver,
) -> Result<(u64, Instant), String> {
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn = ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut rd = BufReader::with_capacity(RECV_BUF, &sock);
    let mut wr = &sock;
    if mode == Receiver::Discard {
        while conn.is_handshaking() {
            conn.complete_io(&mut (&sock)).map_err(|e| e.to_string())?;
        }
        // Ciphertext bytes from here to the end of the stream.
        let mut total = 0u64;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match (&sock).read(&mut buf) {
                Ok(0) => return Ok((total, Instant::now())),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    let mut v = Verifier::new(expected);
    loop {
        while conn.wants_write() {
            conn.write_tls(&mut wr).map_err(|e| e.to_string())?;
        }
        match conn.read_tls(&mut rd) {
            Ok(0) => return Err("the connection ended without close_notify".into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
        let state = conn.process_new_packets().map_err(|e| e.to_string())?;
        let mut reader = conn.reader();
        loop {
            match reader.fill_buf() {
                Ok([]) => break,
                Ok(chunk) => {
                    let n = chunk.len();
                    v.feed(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.to_string()),
            }
        }
        if state.peer_has_closed() {
            let total = v.total();
            if total % expected.len() as u64 != 0 {
                return Err(format!("{total} bytes is not a whole number of messages"));
            }
            v.check(total / expected.len() as u64)?;
            return Ok((total, Instant::now()));
        }
    }
}

/// One timed run of `c` on a fresh loopback connection, on two threads of
/// its own (see [`run_on`]).
pub fn run(
    c: Contender,
    cfg: &Configs,
    payload: &Frag,
    header: &[u8],
    trailer: &[u8],
    stop: Result<Duration, u64>,
    mode: Receiver,
) -> Result<RunResult, String> {
    let expected = [header, &payload[..], trailer].concat();
    std::thread::scope(|s| {
        let pair = ThreadPair::spawn(s);
        let msg = Parts {
            header,
            payload,
            trailer,
            expected: &expected,
        };
        run_on(&pair, c, cfg, &msg, stop, mode)
    })
}

/// The message of a run and the bytes it should deliver.
pub struct Parts<'a> {
    /// The header (128 B in the section).
    pub header: &'a [u8],
    /// The payload.
    pub payload: &'a Frag,
    /// The trailer (8 B in the section).
    pub trailer: &'a [u8],
    /// header + payload + trailer.
    pub expected: &'a [u8],
}

/// One timed run of `c` on a fresh loopback connection: the sender on the
/// first thread of `pair`, the receiver on the second. The section keeps
/// one pair for all its runs, pinned to two CPUs where the machine has
/// two, so every run places its threads alike and the fragment cache and
/// the allocator see long-lived threads, as in a server.
pub fn run_on<'env>(
    pair: &ThreadPair<'env>,
    c: Contender,
    cfg: &'env Configs,
    msg: &Parts<'env>,
    stop: Result<Duration, u64>,
    mode: Receiver,
) -> Result<RunResult, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let client = cfg.client.clone();
    let expected = msg.expected;
    let (header, payload, trailer) = (msg.header, msg.payload, msg.trailer);
    let receiver = move || {
        let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        receive(sock, client, expected, mode)
    };
    let sender = move || {
        let (sock, _) = l.accept().map_err(|e| e.to_string())?;
        drop(l);
        let mut tx = Sender::accept(c, cfg, sock)?;
        let counting = alloc_count::installed();
        let start = Instant::now();
        let (mut cpu0, mut allocs0) = (thread_cpu(), alloc_count::thread_allocs());
        let mut messages = 0u64;
        loop {
            let done = match stop {
                Ok(d) => messages >= MIN_MESSAGES && start.elapsed() >= d,
                Err(n) => messages >= n,
            };
            if done {
                break;
            }
            if messages == WARMUP {
                (cpu0, allocs0) = (thread_cpu(), alloc_count::thread_allocs());
            }
            tx.send(c, header, payload, trailer)
                .map_err(|e| format!("send: {e}"))?;
            messages += 1;
        }
        let (cpu1, allocs1) = (thread_cpu(), alloc_count::thread_allocs());
        let writes = tx.writes();
        let copies = tx.close().map_err(|e| format!("close: {e}"))?;
        let steady = messages.saturating_sub(WARMUP).max(1) as f64;
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64() * 1e6 / steady,
            _ => f64::NAN,
        };
        let allocs = (counting && messages > WARMUP).then(|| (allocs1 - allocs0) as f64 / steady);
        Ok::<_, String>((start, messages, cpu, writes, allocs, copies))
    };
    let (sent, received) = pair.run(sender, receiver);
    let (start, messages, cpu, writes, allocs, copies) = sent?;
    let (wire, end) = received?;
    let bytes = messages * expected.len() as u64;
    // Decrypt: exact plaintext; Discard: ciphertext, a little more.
    if wire < bytes || (mode == Receiver::Decrypt && wire != bytes) {
        return Err(format!(
            "{} sent {messages} messages, {wire} bytes arrived",
            c.name()
        ));
    }
    Ok(RunResult {
        messages,
        bytes,
        elapsed: end.saturating_duration_since(start),
        cpu_us_per_msg: cpu,
        writes_per_msg: writes as f64 / messages.max(1) as f64,
        allocs_per_msg: allocs,
        user_copies_per_byte: copies,
    })
}

/// The sender's fixed costs for one message of `len` plaintext bytes, with
/// no I/O: sealing it in 16 KiB records with ring's AES-256-GCM (what every
/// contender does) and copying it once (what every contender does too).
/// Returns (seal, copy) in microseconds per message, each the best of a
/// few repetitions over `dur`.
pub fn fixed_costs(len: usize, dur: Duration) -> Result<(f64, f64), String> {
    use ::ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = UnboundKey::new(&AES_256_GCM, &[0x42; 32]).map_err(|_| "ring key".to_string())?;
    let key = LessSafeKey::new(key);
    let src = pattern(len, 5);
    let mut buf = vec![0u8; len];
    let (mut seal, mut copy) = (f64::MAX, f64::MAX);
    let mut seq = 0u64;
    let start = Instant::now();
    while start.elapsed() < dur || seal == f64::MAX {
        let t = Instant::now();
        for rec in buf.chunks_mut(16 << 10) {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            seq += 1;
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from([23u8; 5]),
                    rec,
                )
                .map_err(|_| "ring seal".to_string())?;
            let _ = std::hint::black_box(tag);
        }
        seal = seal.min(t.elapsed().as_secs_f64() * 1e6);
        let t = Instant::now();
        std::hint::black_box(&mut buf[..]).copy_from_slice(std::hint::black_box(&src));
        copy = copy.min(t.elapsed().as_secs_f64() * 1e6);
    }
    Ok((seal, copy))
}
