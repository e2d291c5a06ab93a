//! Ending a TLS connection on a full non-blocking socket (close_notify
//! queued once, nothing sent after it, a peer's abort reported), and the
//! asynchronous TLS API: handshakes and sends on current-thread and
//! multi-thread runtimes, against rustls and OpenSSL, with send futures
//! dropped at random points and resumed.

mod tls_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use msgsplice::tls::{Builder, Ktls, TlsError};
use msgsplice::{FragCache, Msg};
use rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as TLS12;
use tls_support::*;

// ---- shared parts of this file -----------------------------------------

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

// ---- the blocking API on a non-blocking socket ---------------------------

/// With the socket full and the reader held back, close_notify is asked
/// for three times and the connection flushed once more: it is queued
/// once, a `send` in between is refused as closed, and once the reader
/// goes on it receives every byte accepted and exactly one close_notify
/// (TLS 1.3 and 1.2).
#[test]
fn close_notify_is_queued_once_on_a_full_socket() {
    for suite in [None, Some(TLS12)] {
        let (go, wait) = mpsc::channel::<()>();
        let (mut tls, client) = connect(
            Builder::new().ktls(Ktls::Off),
            server_config(suite),
            client_config(suite),
            move |mut c| {
                client_handshake(&mut c);
                c.sock.records.lock().expect("tap").clear();
                let _ = wait.recv();
                receive_all(c)
            },
        );
        let sock = tls.get_ref();
        rustix::net::sockopt::set_socket_send_buffer_size(sock, 4096).expect("sndbuf");
        sock.set_nonblocking(true).expect("non-blocking");
        // Whole records only, so that no data record has close_notify's size.
        let page = FragCache::new()
            .memdup(&pattern(3, 16 << 14))
            .expect("memdup");
        let mut want = Vec::new();
        while tls.pending() == 0 {
            assert!(want.len() < 256 << 20, "the socket never filled");
            let mut msg = Msg::new();
            msg.push(page.clone());
            match tls.send(&mut msg) {
                Ok(_) | Err(TlsError::WouldBlock) => {}
                Err(e) => panic!("send: {e}"),
            }
            want.extend_from_slice(&page[..msg.sent() as usize]);
        }
        for _ in 0..3 {
            match tls.send_close_notify() {
                Err(TlsError::WouldBlock) => {}
                other => panic!("the full socket should refuse: {other:?}"),
            }
        }
        assert!(matches!(tls.flush(), Err(TlsError::WouldBlock)));
        assert!(tls.is_closed_for_sending());
        let mut late = Msg::new();
        late.push(&b"after close_notify"[..]);
        assert!(matches!(tls.send(&mut late), Err(TlsError::Closed)));
        assert_eq!(late.sent(), 0);
        assert!(matches!(tls.key_update(false), Err(TlsError::Closed)));
        let suite = tls.cipher_suite();
        go.send(()).expect("client waits");
        loop {
            match tls.send_close_notify() {
                Ok(()) => break,
                Err(TlsError::WouldBlock) => thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("flushing close_notify: {e}"),
            }
        }
        tls.get_ref().set_nonblocking(false).expect("blocking");
        tls.close().expect("close");
        let got = client.join().expect("client thread");
        assert_eq!(got.end, Ok(()), "{suite:?}: the client saw close_notify");
        assert!(got.data == want, "{suite:?}: the bytes accepted arrived");
        assert_eq!(
            count_len(&got.records, record_len(suite, 2)),
            1,
            "{suite:?}: exactly one close_notify"
        );
        assert_eq!(
            count_len(&got.records, record_len(suite, 1 << 14)),
            want.len() >> 14,
            "{suite:?}: the data records"
        );
    }
}

/// A peer that aborts (a fatal alert) while this side closes: `close`
/// reports the alert instead of returning Ok.
#[test]
fn close_reports_the_peers_abort() {
    let (tls, client) = connect(
        Builder::new().linger(Duration::from_secs(30)),
        server_config(None),
        client_config(None),
        abort_on_forged_record,
    );
    forge_record(tls.get_ref());
    match tls.close() {
        Err(TlsError::AlertReceived(rustls::AlertDescription::BadRecordMac)) => {}
        other => panic!("expected the peer's bad_record_mac alert, got {other:?}"),
    }
    let err = client.join().expect("client thread");
    assert!(err.contains("decrypt"), "client saw: {err}");
}
