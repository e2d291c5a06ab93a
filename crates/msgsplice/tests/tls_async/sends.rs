//! Random messages sent with futures dropped at random points.

use std::time::Duration;

use msgsplice::tls::{AsyncTlsSplicer, TlsError};
use msgsplice::{FragCache, Msg};

use super::tls_support::*;
use super::*;

/// A random message: a header, fragments and file ranges (and sometimes a
/// trailer); returns it with its plaintext.
fn random_message(rng: &mut Rng, cache: &FragCache) -> (Msg<'static>, Vec<u8>) {
    let (file, file_data) = data_file();
    let mut msg = Msg::new();
    let mut plain = Vec::new();
    let header = pattern(rng.below(250) as u8, 1 + rng.below(300) as usize);
    plain.extend_from_slice(&header);
    msg.push(header);
    for _ in 0..1 + rng.below(5) {
        let len = match rng.below(4) {
            0 => rng.below(100),
            1 => rng.below(20_000),
            _ => rng.below(300_000),
        } as usize;
        if rng.below(2) == 0 {
            let bytes = pattern(rng.below(250) as u8, len);
            plain.extend_from_slice(&bytes);
            msg.push(cache.memdup(&bytes).expect("memdup"));
        } else {
            let at = rng.below((file_data.len() - len) as u64) as usize;
            plain.extend_from_slice(&file_data[at..at + len]);
            msg.push_file(file, at as u64, len as u64);
        }
    }
    if rng.below(2) == 0 {
        plain.extend_from_slice(b"TRAILER");
        msg.push(&b"TRAILER"[..]);
    }
    (msg, plain)
}

/// Sends `count` random messages, each send polled a random number of
/// times and dropped if unfinished; a dropped message is resumed, or
/// sometimes abandoned (the peer then has the bytes it accepted). Returns
/// the plaintext the peer must receive.
async fn send_with_drops<S: std::os::fd::AsFd>(
    tls: &mut AsyncTlsSplicer<S>,
    rng: &mut Rng,
    count: usize,
) -> (Vec<u8>, u64) {
    let cache = FragCache::new();
    let mut want = Vec::new();
    let mut drops = 0;
    for _ in 0..count {
        let (mut msg, plain) = random_message(rng, &cache);
        loop {
            let before = msg.sent();
            let polls = 1 + rng.below(6) as u32;
            match poll_at_most(tls.send(&mut msg), polls).await {
                Some(r) => {
                    r.expect("send");
                    break;
                }
                None => {
                    drops += 1;
                    assert!(before <= msg.sent() && msg.sent() <= msg.len());
                    if rng.below(8) == 0 {
                        break; // abandoned
                    }
                }
            }
        }
        want.extend_from_slice(&plain[..msg.sent() as usize]);
    }
    (want, drops)
}

/// Random messages (header, fragments, file ranges) sent with futures
/// dropped at random points and resumed, on both runtime flavours: a
/// rustls client decrypts exactly the bytes accepted, then close_notify.
/// The client's request, behind a key update it asks to be answered, is
/// read with `recv` first.
#[test]
fn dropped_sends_resume_byte_exact() {
    for (flavour, rt) in runtimes() {
        for seed in [1u64, 0x5eed, 0xdead_beef] {
            let (sock, client) = loopback(|mut c| {
                // A key update the server must apply and answer in `recv`.
                client_handshake(&mut c);
                c.conn.refresh_traffic_keys().expect("key update");
                c.write_all(b"GET").expect("request");
                thread::sleep(Duration::from_millis(20));
                receive_all(c)
            });
            rustix::net::sockopt::set_socket_send_buffer_size(&sock, 4096).expect("sndbuf");
            // Spawned, so that the futures are proven Send.
            let task = async move {
                let mut tls = AsyncTlsSplicer::accept(server_config(None), sock)
                    .await
                    .expect("async handshake");
                let mut req = [0u8; 16];
                let n = tls.recv(&mut req).await.expect("recv");
                assert_eq!(&req[..n], b"GET");
                assert_eq!(tls.stats().key_updates_received, 1);
                assert_eq!(tls.stats().key_updates_sent, 1, "answered");
                let mut rng = Rng(seed);
                let sent = send_with_drops(&mut tls, &mut rng, 24).await;
                tls.close().await.expect("close");
                sent
            };
            let (want, drops) =
                rt.block_on(async { tokio::spawn(task).await.expect("the sending task") });
            let got = client.join().expect("client thread");
            assert_eq!(got.end, Ok(()), "{flavour} seed {seed}");
            assert!(
                got.data == want,
                "{flavour} seed {seed}: {} bytes arrived, {} expected ({drops} drops)",
                got.data.len(),
                want.len()
            );
            assert!(drops > 0, "{flavour} seed {seed}: no send was ever dropped");
        }
    }
}

/// A peer that is no TLS peer fails the asynchronous handshake with a
/// handshake error (and is told with an alert); a silent one leaves it
/// waiting, without blocking the runtime, until the caller's timeout drops
/// it.
#[test]
fn async_handshake_fails_on_foreign_or_silent_peers() {
    for (flavour, rt) in runtimes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let http = thread::spawn(move || {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("request");
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            answer
        });
        let (sock, _) = l.accept().expect("accept");
        let r = rt.block_on(AsyncTlsSplicer::accept(server_config(None), sock));
        assert!(matches!(r, Err(TlsError::Handshake(_))), "{flavour}: {r:?}");
        drop(r);
        let answer = http.join().expect("http peer");
        assert_eq!(answer.first(), Some(&21), "{flavour}: an alert record");

        let silent = TcpStream::connect(addr).expect("connect");
        let (sock, _) = l.accept().expect("accept");
        let r = rt.block_on(async {
            tokio::time::timeout(
                Duration::from_millis(100),
                AsyncTlsSplicer::accept(server_config(None), sock),
            )
            .await
        });
        assert!(
            r.is_err(),
            "{flavour}: the silent peer's handshake timed out"
        );
        drop(silent);
    }
}
