//! Closing: close_notify queued once on a full socket, through the
//! blocking API and the asynchronous one; a peer's abort reported; an
//! asynchronous close bounded without blocking the runtime.

use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use msgsplice::tls::{Builder, Ktls, TlsError};
use msgsplice::{FragCache, Msg};
use rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 as TLS12;

use super::tls_support::*;
use super::*;

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

/// The asynchronous close on a full socket, reader held back: a send
/// dropped half-way, close_notify asked for twice with its future dropped
/// each time, a send refused as closed; once the reader goes on, `close`
/// finishes and the peer has every byte accepted and exactly one
/// close_notify.
#[test]
fn async_close_notify_is_queued_once() {
    for (flavour, rt) in runtimes() {
        let (go, wait) = mpsc::channel::<()>();
        let (sock, client) = loopback(move |mut c| {
            client_handshake(&mut c);
            c.sock.records.lock().expect("tap").clear();
            let _ = wait.recv();
            receive_all(c)
        });
        rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4096).expect("sndbuf");
        let (want, suite) = rt.block_on(async {
            let mut tls = Builder::new()
                .ktls(Ktls::Off)
                .accept_async(server_config(None), sock)
                .await
                .expect("async handshake");
            // Whole records only, so that no data record has close_notify's size.
            let page = FragCache::new()
                .memdup(&pattern(3, 256 << 14))
                .expect("memdup");
            let mut msg = Msg::new();
            msg.push(page.clone());
            assert!(
                poll_at_most(tls.send(&mut msg), 3).await.is_none(),
                "4 MiB cannot fit in the socket while the reader waits"
            );
            assert!(tls.pending() > 0);
            for _ in 0..2 {
                assert!(poll_at_most(tls.send_close_notify(), 2).await.is_none());
            }
            let mut late = Msg::new();
            late.push(&b"after close_notify"[..]);
            assert!(matches!(tls.send(&mut late).await, Err(TlsError::Closed)));
            assert!(tls.tls().is_closed_for_sending());
            let want = page[..msg.sent() as usize].to_vec();
            let suite = tls.cipher_suite();
            go.send(()).expect("client waits");
            tls.close().await.expect("close");
            (want, suite)
        });
        let got = client.join().expect("client thread");
        assert_eq!(got.end, Ok(()), "{flavour}: the client saw close_notify");
        assert!(got.data == want, "{flavour}: the bytes accepted arrived");
        assert_eq!(
            count_len(&got.records, record_len(suite, 2)),
            1,
            "{flavour}: exactly one close_notify"
        );
    }
}

/// A peer that aborts (a fatal alert) while this side closes: the
/// asynchronous `close` reports the alert.
#[test]
fn async_close_reports_the_peers_abort() {
    for (flavour, rt) in runtimes() {
        let (sock, client) = loopback(abort_on_forged_record);
        let r = rt.block_on(async {
            let tls = Builder::new()
                .linger(Duration::from_secs(30))
                .accept_async(server_config(None), sock)
                .await
                .expect("async handshake");
            forge_record(tls.get_ref());
            tls.close().await
        });
        match r {
            Err(TlsError::AlertReceived(rustls::AlertDescription::BadRecordMac)) => {}
            other => panic!("{flavour}: expected the peer's bad_record_mac, got {other:?}"),
        }
        let err = client.join().expect("client thread");
        assert!(err.contains("decrypt"), "{flavour}: client saw: {err}");
    }
}

/// A peer that never reads: the asynchronous close gives up after its
/// timeout with CloseTimedOut, and while it waits the runtime thread runs
/// other tasks (on a current-thread runtime, the other branch of a
/// `join!` finishes first).
#[test]
fn async_close_times_out_without_blocking_the_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (done, wait) = mpsc::channel::<()>();
    let (sock, client) = loopback(move |mut c| {
        client_handshake(&mut c);
        let _ = wait.recv();
    });
    rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4096).expect("sndbuf");
    let order = rt.block_on(async {
        let mut tls = Builder::new()
            .close_timeout(Duration::from_millis(300))
            .accept_async(server_config(None), sock)
            .await
            .expect("async handshake");
        let page = FragCache::new()
            .memdup(&pattern(1, 4 << 20))
            .expect("memdup");
        let mut msg = Msg::new();
        msg.push(page);
        assert!(poll_at_most(tls.send(&mut msg), 3).await.is_none());
        let order = Mutex::new(Vec::new());
        let closing = async {
            let r = tls.close().await;
            assert!(
                matches!(r, Err(TlsError::CloseTimedOut { pending }) if pending > 0),
                "{r:?}"
            );
            order.lock().expect("order").push("close");
        };
        let other = async {
            tokio::task::yield_now().await;
            order.lock().expect("order").push("other task");
        };
        tokio::join!(closing, other);
        order.into_inner().expect("order")
    });
    let _ = done.send(());
    client.join().expect("client thread");
    assert_eq!(order, ["other task", "close"]);
}
