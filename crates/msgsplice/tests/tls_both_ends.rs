//! msgsplice on both ends: its client against its server, over TCP and a
//! Unix stream socket, in TLS 1.3 and 1.2, with session tickets, key
//! updates both ways and data both ways.

mod tls_support;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::thread;

use msgsplice::tls::{Builder, KtlsStatus, TlsError, TlsSplicer};
use msgsplice::{FragCache, Msg};
use rustls::{ServerConfig, SupportedCipherSuite};
use tls_support::*;

/// A server configuration that sends session tickets.
fn with_tickets(suite: Option<SupportedCipherSuite>) -> Arc<ServerConfig> {
    let mut c: ServerConfig = (*server_config(suite)).clone();
    c.send_tls13_tickets = 2;
    Arc::new(c)
}

/// Both ends exchange a message each way, the server updates its keys
/// every 2 records and the client asks for one; both close cleanly.
fn exchange<S: AsFd + Send + 'static>(
    a: S,
    b: S,
    suite: Option<SupportedCipherSuite>,
    tls13: bool,
    unix: bool,
) {
    let cache = FragCache::new();
    let big = cache.memdup(&pattern(1, 200_000)).unwrap();
    let big2 = big.clone();
    let server = thread::spawn(move || {
        let mut tls = Builder::new()
            .key_update_after(if tls13 { 2 } else { u64::MAX })
            .accept(with_tickets(suite), a)
            .unwrap();
        let mut msg = Msg::new();
        msg.push(&b"from the server:"[..]).push(big2);
        tls.send(&mut msg).unwrap();
        let mut got = Vec::new();
        tls.read_to_end(&mut got).unwrap();
        let st = tls.close().unwrap();
        (got, st)
    });
    let mut tls = TlsSplicer::connect(client_config(suite), localhost(), b).unwrap();
    if unix {
        assert_eq!(tls.ktls(), KtlsStatus::NotTcp, "kTLS is a TCP layer");
    }
    let mut head = vec![0u8; 16];
    let mut at = 0;
    while at < 16 {
        at += tls.read(&mut head[at..]).unwrap();
    }
    assert_eq!(&head, b"from the server:");
    if tls13 {
        tls.key_update(true).unwrap();
    } else {
        assert!(matches!(tls.key_update(true), Err(TlsError::NeedsTls13)));
    }
    let mut rest = vec![0u8; 200_000];
    let mut at = 0;
    while at < rest.len() {
        at += tls.read(&mut rest[at..]).unwrap();
    }
    assert!(rest[..] == big[..]);
    let mut msg = Msg::new();
    msg.push(&b"from the client"[..]);
    tls.send(&mut msg).unwrap();
    let cst = tls.close().unwrap();
    let (got, sst) = server.join().unwrap();
    assert_eq!(got, b"from the client");
    if tls13 {
        assert!(sst.key_updates_sent >= 6, "{sst:?}");
        assert_eq!(sst.key_updates_received, 1, "{sst:?}");
        assert_eq!(cst.key_updates_sent, 1, "{cst:?}");
        // Every server update and its answer to ours arrived as records.
        assert!(cst.key_updates_received >= 6, "{cst:?}");
    }
}

#[test]
fn both_ends_over_a_unix_socket() {
    for (suite, tls13) in [
        (None, true),
        (
            Some(rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256),
            false,
        ),
    ] {
        let (a, b) = UnixStream::pair().unwrap();
        exchange(a, b, suite, tls13, true);
    }
}

#[test]
fn both_ends_over_tcp() {
    for (suite, tls13) in [
        (
            Some(rustls::crypto::ring::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256),
            true,
        ),
        (
            Some(rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            false,
        ),
    ] {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let b = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        exchange(a, b, suite, tls13, false);
    }
}
