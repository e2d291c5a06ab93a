//! Ending a TLS connection on a full non-blocking socket (close_notify
//! queued once, nothing sent after it, a peer's abort reported), and the
//! asynchronous TLS API: handshakes and sends on current-thread and
//! multi-thread runtimes, against rustls and OpenSSL, with send futures
//! dropped at random points and resumed.

#[path = "../tls_support/mod.rs"]
mod tls_support;

mod close;
mod openssl;
mod sends;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::pin::pin;
use std::task::Poll;
use std::thread;

use rustls::{ClientConnection, StreamOwned};
use tls_support::*;

/// Records of `len` ciphertext bytes among those a tap saw.
fn count_len(records: &Records, len: usize) -> usize {
    records
        .lock()
        .expect("tap records")
        .iter()
        .filter(|&&(_, l)| l == len)
        .count()
}

/// What a rustls client read: the plaintext up to close_notify (or the
/// error that ended it), after which the rest of the stream was read raw
/// so that the tap counts every record that came.
struct Received {
    data: Vec<u8>,
    end: Result<(), String>,
    records: Records,
}

/// Reads to close_notify through rustls, then the raw rest of the stream.
fn receive_all(mut c: Client) -> Received {
    let mut data = Vec::new();
    let end = c
        .read_to_end(&mut data)
        .map(drop)
        .map_err(|e| e.to_string());
    let _ = c.sock.read_to_end(&mut Vec::new());
    Received {
        data,
        end,
        records: c.sock.records.clone(),
    }
}

/// A record that no key opens, written raw to `sock`: the rustls peer
/// rejects it with a bad_record_mac alert.
fn forge_record(mut sock: &TcpStream) {
    let mut forged = vec![23, 3, 3, 0, 40];
    forged.extend_from_slice(&[0x42; 40]);
    sock.write_all(&forged).expect("write the forged record");
}

/// The rustls peer of an abort: it reads until rustls rejects a record
/// (rustls then sends its alert), shuts its side down and reads to the end,
/// so that the alert is not lost to a reset.
fn abort_on_forged_record(mut c: Client) -> String {
    client_handshake(&mut c);
    let err = c
        .read(&mut [0u8; 64])
        .expect_err("the forged record is rejected");
    let _ = c.sock.sock.shutdown(Shutdown::Write);
    let _ = c.sock.sock.read_to_end(&mut Vec::new());
    err.to_string()
}

/// Both runtime flavours the API must work on.
fn runtimes() -> Vec<(&'static str, tokio::runtime::Runtime)> {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("current-thread runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("multi-thread runtime");
    vec![("current-thread", current), ("multi-thread", multi)]
}

/// Polls `fut` at most `polls` times (yielding to the runtime between
/// polls) and drops it if it has not finished by then.
async fn poll_at_most<F: Future>(fut: F, polls: u32) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        if let Poll::Ready(out) =
            std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// A loopback connection whose client side is a rustls client running
/// `run_client` on a thread; returns the server's socket, not yet TLS.
fn loopback<T: Send + 'static>(
    run_client: impl FnOnce(Client) -> T + Send + 'static,
) -> (TcpStream, thread::JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().expect("local address");
    let h = thread::spawn(move || {
        let sock = TcpStream::connect(addr).expect("connect");
        let conn = ClientConnection::new(client_config(None), localhost()).expect("client");
        run_client(StreamOwned::new(conn, Tap::new(sock)))
    });
    let (sock, _) = l.accept().expect("accept");
    (sock, h)
}

/// A small deterministic generator (xorshift), so that a failing seed can
/// be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A file of pattern bytes that messages take ranges of.
fn data_file() -> &'static (std::fs::File, Vec<u8>) {
    static FILE: std::sync::OnceLock<(std::fs::File, Vec<u8>)> = std::sync::OnceLock::new();
    FILE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("msgsplice-tls-async-{}", std::process::id()));
        let data = pattern(77, 3 << 20);
        std::fs::write(&path, &data).expect("write the data file");
        let f = std::fs::File::open(&path).expect("open the data file");
        let _ = std::fs::remove_file(&path);
        (f, data)
    })
}
