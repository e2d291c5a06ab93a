//! Shared parts of the TLS tests: a certificate made at test time, rustls
//! configurations, a loopback connection with a rustls client on a thread,
//! a tap that counts the records the client receives, and what the tests
//! against OpenSSL's command-line peers need.
#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};

use msgsplice::tls::{Builder, TlsSplicer};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, StreamOwned, SupportedCipherSuite};

/// A self-signed certificate for "localhost", made once per test binary.
pub struct Cert {
    pub der: CertificateDer<'static>,
    pub key: Vec<u8>,
    pub pem: String,
    pub key_pem: String,
}

pub fn cert() -> &'static Cert {
    static CERT: OnceLock<Cert> = OnceLock::new();
    CERT.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("rcgen makes a certificate");
        Cert {
            der: ck.cert.der().clone(),
            key: ck.signing_key.serialize_der(),
            pem: ck.cert.pem(),
            key_pem: ck.signing_key.serialize_pem(),
        }
    })
}

/// The ring provider, limited to `suite` if given.
pub fn provider(suite: Option<SupportedCipherSuite>) -> Arc<CryptoProvider> {
    let mut p = ring::default_provider();
    if let Some(s) = suite {
        p.cipher_suites = vec![s];
    }
    Arc::new(p)
}

/// Every TLS 1.3 suite, and the TLS 1.2 suites an ECDSA certificate allows.
pub fn all_suites() -> Vec<SupportedCipherSuite> {
    use ring::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// A server configuration with the test certificate. Session tickets off
/// by default, so that after the handshake the server sends only what a
/// test sends (records can be counted).
pub fn server_config(suite: Option<SupportedCipherSuite>) -> Arc<ServerConfig> {
    let c = cert();
    let mut cfg = ServerConfig::builder_with_provider(provider(suite))
        .with_safe_default_protocol_versions()
        .expect("ring supports the defaults")
        .with_no_client_auth()
        .with_single_cert(
            vec![c.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key.clone())),
        )
        .expect("the test certificate is valid");
    cfg.send_tls13_tickets = 0;
    cfg.enable_secret_extraction = true;
    Arc::new(cfg)
}

/// A client configuration that trusts the test certificate.
pub fn client_config(suite: Option<SupportedCipherSuite>) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert().der.clone())
        .expect("the test certificate parses");
    Arc::new(
        ClientConfig::builder_with_provider(provider(suite))
            .with_safe_default_protocol_versions()
            .expect("ring supports the defaults")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

pub fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("a valid name")
}

/// The kinds and lengths of the records a tap has seen.
pub type Records = Arc<Mutex<Vec<(u8, usize)>>>;

/// A socket wrapper that parses the TLS record framing of what it reads:
/// the client's view of the records the server sent.
pub struct Tap {
    pub sock: TcpStream,
    header: [u8; 5],
    have: usize,
    body_left: usize,
    pub records: Records,
}

impl Tap {
    pub fn new(sock: TcpStream) -> Tap {
        Tap {
            sock,
            header: [0; 5],
            have: 0,
            body_left: 0,
            records: Arc::default(),
        }
    }

    fn feed(&mut self, mut b: &[u8]) {
        while !b.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(b.len());
                self.body_left -= n;
                b = &b[n..];
                continue;
            }
            let n = (5 - self.have).min(b.len());
            self.header[self.have..self.have + n].copy_from_slice(&b[..n]);
            self.have += n;
            b = &b[n..];
            if self.have == 5 {
                let len = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.records.lock().unwrap().push((self.header[0], len));
                self.body_left = len;
                self.have = 0;
            }
        }
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// The client side of a test connection: rustls over a tapped socket.
pub type Client = StreamOwned<ClientConnection, Tap>;

/// Finishes the client's handshake, so that the tap's count from here on
/// is only what the server sends afterwards.
pub fn client_handshake(c: &mut Client) {
    while c.conn.is_handshaking() {
        c.conn.complete_io(&mut c.sock).expect("client handshake");
    }
}

/// A loopback connection: the server side is a `TlsSplicer` made by
/// `builder`, the client runs `client` on its own thread.
pub fn connect<T: Send + 'static>(
    builder: Builder,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    run_client: impl FnOnce(Client) -> T + Send + 'static,
) -> (TlsSplicer<TcpStream>, JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local address");
    let h = thread::spawn(move || {
        let sock = TcpStream::connect(addr).expect("connect");
        let conn = ClientConnection::new(client, localhost()).expect("client");
        run_client(StreamOwned::new(conn, Tap::new(sock)))
    });
    let (sock, _) = l.accept().expect("accept");
    let tls = builder.accept(server, sock).expect("server handshake");
    (tls, h)
}

/// Deterministic test bytes: byte `i` of stream `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 32) as u8
                ^ seed
        })
        .collect()
}

/// Ciphertext length of a record carrying `plain` bytes, for `suite`.
pub fn record_len(suite: SupportedCipherSuite, plain: usize) -> usize {
    match suite {
        SupportedCipherSuite::Tls13(_) => plain + 1 + 16,
        SupportedCipherSuite::Tls12(s) => {
            let chacha = format!("{:?}", s.common.suite).contains("CHACHA20");
            plain + 16 + if chacha { 0 } else { 8 }
        }
    }
}

/// True if the `openssl` command runs here.
pub fn have_openssl() -> bool {
    std::process::Command::new("openssl")
        .arg("version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The test certificate and key as PEM files in a fresh directory,
/// removed on drop (also when the test fails).
pub struct PemFiles {
    dir: std::path::PathBuf,
    /// The certificate.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
}

impl Drop for PemFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes the test certificate and key as PEM files in a fresh directory
/// named after `tag` and this process.
pub fn pem_files(tag: &str) -> PemFiles {
    let dir = std::env::temp_dir().join(format!("msgsplice-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, &cert().pem).unwrap();
    std::fs::write(&key_path, &cert().key_pem).unwrap();
    PemFiles {
        dir,
        cert: cert_path,
        key: key_path,
    }
}

/// Collects `child`'s output (read as it comes, so a full pipe never
/// stalls it) and waits for it at most `limit`, killing it after that.
pub fn wait_output(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    }
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        thread::sleep(std::time::Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}
