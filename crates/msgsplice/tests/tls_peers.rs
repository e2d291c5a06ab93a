//! TLS against peers no one here wrote (OpenSSL's command-line client and
//! server), and against peers that misbehave: resets in the middle of a
//! record, truncation, tampering, key updates, a full socket.

mod tls_support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use msgsplice::tls::{Builder, TlsError, TlsSplicer};
use msgsplice::{FragCache, Msg};
use msgsplice_testkit::skip;
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tls_support::*;

/// `openssl s_client` (verifying our certificate and host name) reads a
/// header + 200 KiB + trailer message and the close_notify after it, in TLS
/// 1.3 (with session tickets from the handshake) and TLS 1.2.
#[test]
fn openssl_s_client_reads_a_known_payload() {
    if !have_openssl() {
        return skip(
            "openssl_s_client_reads_a_known_payload",
            "no openssl binary",
        );
    }
    let pem = pem_files("s_client");
    let cache = FragCache::new();
    for proto in ["-tls1_3", "-tls1_2"] {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let child = Command::new("openssl")
            .args(["s_client", "-connect", &addr, "-quiet", proto])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-verify_return_error")
            .arg("-CAfile")
            .arg(&pem.cert)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sock, _) = l.accept().unwrap();
        let mut cfg: ServerConfig = (*server_config(None)).clone();
        cfg.send_tls13_tickets = 2;
        // s_client keeps its side open after close_notify; don't wait long.
        let mut tls = Builder::new()
            .linger(Duration::from_millis(200))
            .accept(Arc::new(cfg), sock)
            .expect("handshake with openssl");
        let mut msg = Msg::new();
        let payload = cache.memdup(&pattern(9, 200 << 10)).unwrap();
        msg.push(&b"HEADER\n"[..])
            .push(payload.clone())
            .push(&b"\nTRAILER"[..]);
        tls.send(&mut msg).unwrap();
        tls.close().unwrap();
        let out = wait_output(child, Duration::from_secs(20));
        let mut want = b"HEADER\n".to_vec();
        want.extend_from_slice(&payload);
        want.extend_from_slice(b"\nTRAILER");
        assert!(
            out.stdout == want,
            "{proto}: openssl printed {} bytes, expected {}; stderr: {}",
            out.stdout.len(),
            want.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Our client against `openssl s_server`: OpenSSL decrypts what we seal
/// and we take its session tickets (TLS 1.3), then close with
/// close_notify. s_server prints what it received.
#[test]
fn openssl_s_server_reads_our_client() {
    if !have_openssl() {
        return skip("openssl_s_server_reads_our_client", "no openssl binary");
    }
    let pem = pem_files("s_server");
    // A free port for s_server: bind, note it, release it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &port.to_string(),
            "-naccept",
            "1",
            "-quiet",
        ])
        .args(["-tls1_3", "-cert"])
        .arg(&pem.cert)
        .arg("-key")
        .arg(&pem.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("s_server did not listen: {e}"),
        }
    };
    let mut tls = TlsSplicer::connect(client_config(None), localhost(), sock).expect("handshake");
    let payload = pattern(5, 100 << 10);
    let mut msg = Msg::new();
    msg.push(&b"BEGIN\n"[..])
        .push(payload.clone())
        .push(&b"\nEND\n"[..]);
    tls.send(&mut msg).unwrap();
    tls.close().unwrap();
    let out = wait_output(child, Duration::from_secs(20));
    let mut want = b"BEGIN\n".to_vec();
    want.extend_from_slice(&payload);
    want.extend_from_slice(b"\nEND\n");
    assert!(
        out.stdout.starts_with(&want),
        "s_server printed {} bytes, expected {} first; stderr: {}",
        out.stdout.len(),
        want.len(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes `sock`'s close send a reset (SO_LINGER with a zero timeout).
fn reset_on_close(sock: &TcpStream) {
    rustix::net::sockopt::set_socket_linger(sock.as_fd(), Some(Duration::ZERO)).expect("SO_LINGER");
}

/// A client that reads a little of a large message and then resets the
/// connection: the sender gets a typed error, not a panic, and the bytes
/// it reports accepted never exceed what it was given.
#[test]
fn peer_reset_while_sending_is_a_typed_error() {
    let (mut tls, client) = connect(
        Builder::new().batch_bytes(256 << 10),
        server_config(None),
        client_config(None),
        |mut c| {
            let mut buf = [0u8; 20_000];
            c.read_exact(&mut buf).unwrap();
            reset_on_close(&c.sock.sock);
        },
    );
    let cache = FragCache::new();
    let chunk = cache.memdup(&pattern(1, 1 << 20)).unwrap();
    let mut msg = Msg::new();
    for _ in 0..64 {
        msg.push(chunk.clone());
    }
    let r = tls.send(&mut msg);
    client.join().unwrap();
    let r = r.and_then(|_| {
        // The reset may land after the last byte was queued: the next
        // send sees it.
        let mut again = Msg::new();
        again.push(chunk.clone());
        tls.send(&mut again)
    });
    match r {
        Err(TlsError::PeerReset | TlsError::Closed) => {}
        other => panic!("expected PeerReset or Closed, got {other:?}"),
    }
}

/// After the handshake the client sends 10 bytes of a 105-byte record and
/// stops: with a reset, `read` says PeerReset; with a clean TCP close,
/// TruncatedRecord; with a close between records but no close_notify,
/// UnexpectedEof.
#[test]
fn peer_vanishing_mid_record_is_a_typed_error() {
    for how in ["reset", "fin", "between"] {
        let (mut tls, client) = connect(
            Builder::new(),
            server_config(None),
            client_config(None),
            move |mut c| {
                client_handshake(&mut c);
                let s = &mut c.sock.sock;
                if how != "between" {
                    s.write_all(&[23, 3, 3, 0, 100, 1, 2, 3, 4, 5]).unwrap();
                }
                thread::sleep(Duration::from_millis(50));
                if how == "reset" {
                    reset_on_close(s);
                } else {
                    s.shutdown(Shutdown::Write).unwrap();
                    // Hold the socket until the server has read the end.
                    let _ = s.read(&mut [0u8; 64]);
                }
            },
        );
        let r = tls.read(&mut [0u8; 100]);
        drop(tls);
        client.join().unwrap();
        match (how, r) {
            ("reset", Err(TlsError::PeerReset)) => {}
            ("fin", Err(TlsError::TruncatedRecord { got: 10, want: 105 })) => {}
            ("between", Err(TlsError::UnexpectedEof)) => {}
            (how, other) => panic!("{how}: got {other:?}"),
        }
    }
}

/// A forged record fails authentication: `read` says BadRecordMac and the
/// client is told with a bad_record_mac alert.
#[test]
fn tampered_record_is_rejected_with_an_alert() {
    let (mut tls, client) = connect(
        Builder::new(),
        server_config(None),
        client_config(None),
        |mut c| {
            client_handshake(&mut c);
            let mut forged = vec![23, 3, 3, 0, 40];
            forged.extend_from_slice(&[0x42; 40]);
            c.sock.sock.write_all(&forged).unwrap();
            let mut buf = Vec::new();
            c.read_to_end(&mut buf).unwrap_err().to_string()
        },
    );
    assert!(matches!(
        tls.read(&mut [0u8; 10]),
        Err(TlsError::BadRecordMac)
    ));
    drop(tls);
    let err = client.join().unwrap();
    assert!(err.contains("BadRecordMac"), "client saw: {err}");
}

/// The client asks for a key update; the server applies it while reading,
/// answers with its own, and what it sends afterwards decrypts.
/// Automatic updates every 3 records keep the stream readable; in TLS 1.2
/// the same limit is an error.
#[test]
fn key_updates() {
    let (mut tls, client) = connect(
        Builder::new().key_update_after(3),
        server_config(None),
        client_config(None),
        |mut c| {
            client_handshake(&mut c);
            c.conn.refresh_traffic_keys().unwrap();
            c.write_all(b"ping").unwrap();
            let mut got = Vec::new();
            c.read_to_end(&mut got)
                .map(|_| got)
                .map_err(|e| e.to_string())
        },
    );
    assert_eq!(tls.read(&mut [0u8; 4]).unwrap(), 4);
    assert_eq!(tls.stats().key_updates_received, 1);
    assert_eq!(tls.stats().key_updates_sent, 1, "answered the request");
    let cache = FragCache::new();
    let page = cache.memdup(&pattern(4, 65536)).unwrap();
    let mut want = Vec::new();
    for _ in 0..10 {
        let mut msg = Msg::new();
        msg.push(page.clone());
        tls.send(&mut msg).unwrap();
        want.extend_from_slice(&page);
    }
    let st = tls.close().unwrap();
    assert!(st.key_updates_sent >= 10, "{st:?}");
    assert!(client.join().unwrap().unwrap() == want);

    use rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as S12;
    let (mut tls, client) = connect(
        Builder::new().key_update_after(3),
        server_config(Some(S12)),
        client_config(Some(S12)),
        |mut c| {
            let _ = c.read_to_end(&mut Vec::new());
        },
    );
    let mut msg = Msg::new();
    msg.push(page.clone());
    assert!(matches!(tls.send(&mut msg), Err(TlsError::KeyLimit)));
    assert!(matches!(tls.key_update(false), Err(TlsError::NeedsTls13)));
    drop(tls);
    client.join().unwrap();
}

/// Our client against a rustls server that sends session tickets: the
/// tickets are handed to rustls, data flows both ways, both ends close
/// cleanly.
#[test]
fn client_side_against_a_rustls_server() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut cfg: ServerConfig = (*server_config(None)).clone();
        cfg.send_tls13_tickets = 3;
        let conn = ServerConnection::new(Arc::new(cfg)).unwrap();
        let mut c = StreamOwned::new(conn, s);
        let mut got = vec![0u8; 70_000];
        c.read_exact(&mut got).unwrap();
        c.write_all(b"reply").unwrap();
        c.conn.send_close_notify();
        c.flush().unwrap();
        let mut rest = Vec::new();
        let end = c.read_to_end(&mut rest).map_err(|e| e.to_string());
        (got, end)
    });
    let sock = TcpStream::connect(addr).unwrap();
    let mut tls = TlsSplicer::connect(client_config(None), localhost(), sock).unwrap();
    let data = pattern(8, 70_000);
    let mut msg = Msg::new();
    msg.push(&data[..]);
    tls.send(&mut msg).unwrap();
    let mut reply = Vec::new();
    tls.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply");
    assert!(tls.peer_closed());
    tls.close().unwrap();
    let (got, end) = server.join().unwrap();
    assert!(got == data);
    assert_eq!(end, Ok(0), "the server saw our close_notify");
}

/// On a non-blocking socket whose peer is not reading, `send` accepts what
/// it sealed and queues what the socket would not take; `flush` finishes
/// once the peer reads, and every byte arrives.
#[test]
fn nonblocking_send_queues_and_flushes() {
    let (mut tls, client) = connect(
        Builder::new(),
        server_config(None),
        client_config(None),
        |mut c| {
            client_handshake(&mut c);
            thread::sleep(Duration::from_millis(200));
            let mut got = Vec::new();
            c.read_to_end(&mut got)
                .map(|_| got)
                .map_err(|e| e.to_string())
        },
    );
    tls.get_ref().set_nonblocking(true).unwrap();
    let cache = FragCache::new();
    let data = pattern(6, 16 << 20);
    let mut msg = Msg::new();
    for i in 0..16 {
        msg.push(cache.memdup(&data[i << 20..(i + 1) << 20]).unwrap());
    }
    let mut stalls = 0;
    while !msg.is_sent() || tls.pending() > 0 {
        let r = if msg.is_sent() {
            tls.flush()
        } else {
            tls.send(&mut msg).map(|_| ())
        };
        match r {
            Ok(()) => {}
            Err(TlsError::WouldBlock) => {
                stalls += 1;
                thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(stalls > 0, "the socket should have filled up");
    tls.get_ref().set_nonblocking(false).unwrap();
    tls.close().unwrap();
    assert!(client.join().unwrap().unwrap() == data);
}

/// A peer that connects and says nothing: a read timeout on the socket
/// ends the handshake with WouldBlock instead of blocking forever; a peer
/// that is not TLS at all fails it.
#[test]
fn silent_or_foreign_peers_end_the_handshake() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let silent = TcpStream::connect(addr).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    match TlsSplicer::accept(server_config(None), s) {
        Err(TlsError::WouldBlock) => {}
        other => panic!("expected WouldBlock, got {other:?}"),
    }
    drop(silent);

    let mut http = TcpStream::connect(addr).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (s, _) = l.accept().unwrap();
    match TlsSplicer::accept(server_config(None), s) {
        Err(TlsError::Handshake(_)) => {}
        other => panic!("expected a handshake error, got {other:?}"),
    }
}
