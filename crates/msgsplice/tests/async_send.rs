//! AsyncSplicer: what arrives equals what was sent (random messages of
//! every segment kind, file ranges included), with send futures dropped at
//! random points and resumed, on current-thread and multi-thread runtimes,
//! over streams and record sockets; zero-copy buffers released by flush, by a task waiting in
//! recv, and by reap; close bounded without blocking the runtime.

mod async_support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_support::{
    build, concat, pair, poll_at_most, read_to_end, run_task, runtime, seg, source, tcp_pair,
    zero_copy_on_loopback, Seg, Transport, HANG,
};
use bytes::Bytes;
use msgsplice::send::Builder;
use msgsplice::{AsyncSplicer, FragCache, Msg};
use proptest::prelude::*;

// ---- property test: random messages, random cancellations --------------

#[derive(Clone, Copy, Debug)]
enum Mode {
    SpliceOff,
    SpliceOn,
    /// SPLICE on, zero-copy kept on over loopback.
    ZeroCopy,
}

/// Sends `msgs` through an AsyncSplicer over a socket with a small send
/// buffer, each send polled a random number of times (from `cuts`) before
/// being dropped and resumed, and checks the bytes that arrive.
async fn cancelled_sends(t: Transport, mode: Mode, msgs: Vec<Vec<Seg>>, cuts: Vec<u32>) {
    let (tx, rx) = pair(t);
    rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).expect("sndbuf");
    let builder = match mode {
        Mode::SpliceOff => Builder::new().splice(false),
        Mode::SpliceOn => Builder::new(),
        Mode::ZeroCopy => zero_copy_on_loopback(),
    };
    let reader = read_to_end(rx);
    let mut sp = AsyncSplicer::with_builder(builder, tx).expect("AsyncSplicer");
    let cache = FragCache::new();
    let mut cut = cuts.iter().cycle();
    for segs in &msgs {
        let mut m = build(segs, &cache);
        loop {
            let before = m.sent();
            match poll_at_most(sp.send(&mut m), *cut.next().expect("cuts")).await {
                Some(r) => {
                    r.expect("send");
                    break;
                }
                None => assert!(before <= m.sent() && m.sent() <= m.len()),
            }
        }
        assert!(m.is_sent());
    }
    sp.flush().await.expect("flush");
    assert_eq!(sp.in_flight(), 0);
    let st = sp.stats();
    assert_eq!(st.completions, st.zerocopy_sends);
    drop(sp); // closes the socket: the reader sees the end
    let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
        .await
        .expect("join");
    let want = concat(&msgs);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the bytes differ");
}

fn messages() -> impl Strategy<Value = Vec<Vec<Seg>>> {
    prop::collection::vec(prop::collection::vec(seg(512 << 10), 0..20), 1..4)
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::SpliceOff),
        Just(Mode::SpliceOn),
        Just(Mode::ZeroCopy)
    ]
}

fn transport() -> impl Strategy<Value = Transport> {
    prop_oneof![Just(Transport::Tcp), Just(Transport::Unix)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn dropped_sends_resume_exactly_current_thread(
        t in transport(), m in mode(), msgs in messages(),
        cuts in prop::collection::vec(1u32..6, 1..8),
    ) {
        run_task(false, cancelled_sends(t, m, msgs, cuts));
    }

    #[test]
    fn dropped_sends_resume_exactly_multi_thread(
        t in transport(), m in mode(), msgs in messages(),
        cuts in prop::collection::vec(1u32..6, 1..8),
    ) {
        run_task(true, cancelled_sends(t, m, msgs, cuts));
    }
}

// ---- cancel safety, deterministically ----------------------------------

/// A send that cannot finish (the peer does not read) is dropped; the
/// cursor says how far it got, a second dropped try adds nothing while the
/// socket stays full, and once the peer reads, the same Msg resumes and the
/// peer gets every byte once.
#[test]
fn a_dropped_send_leaves_the_cursor_where_the_kernel_stopped() {
    run_task(false, async {
        let (tx, rx) = tcp_pair();
        // Small send buffer; the receive buffer stays as it is, since a tiny
        // one paces TCP on delayed acknowledgements.
        rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).expect("sndbuf");
        let mut sp = AsyncSplicer::new(tx).expect("AsyncSplicer");
        let data = &source()[..3 << 20];
        let page = FragCache::new().memdup(&data[4..1 << 20]).expect("memdup");
        let mut m = Msg::new();
        m.push(&data[..4]).push(page).push(data[1 << 20..].to_vec());
        assert!(poll_at_most(sp.send(&mut m), 3).await.is_none());
        let stopped = m.sent();
        assert!(stopped > 0 && stopped < m.len(), "sent {stopped}");
        assert!(poll_at_most(sp.send(&mut m), 1).await.is_none());
        assert_eq!(
            m.sent(),
            stopped,
            "nothing can go while the peer reads nothing"
        );
        let reader = read_to_end(rx.into());
        let n = sp.send(&mut m).await.expect("send");
        assert_eq!(n, m.len() - stopped);
        drop(sp);
        let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
        assert!(got == data, "the bytes differ");
    });
}

// ---- zero-copy buffers released ----------------------------------------

/// Zero-copy over TCP loopback (local-peer skip off, COPIED kept), the
/// engine's own reads pushed out of reach: flush releases every buffer
/// (a `Bytes` and a fragment, checked by refcount and by the cache's live
/// mappings).
#[test]
fn flush_releases_every_zero_copy_buffer() {
    run_task(true, async {
        let (tx, rx) = tcp_pair();
        let reader = read_to_end(rx.into());
        let b = zero_copy_on_loopback().completion_batch(1 << 20);
        let mut sp = AsyncSplicer::with_builder(b, tx).expect("AsyncSplicer");
        let payload = Bytes::from(source()[..64 << 10].to_vec());
        let cache = FragCache::new();
        let page = cache.memdup(&source()[1 << 20..2 << 20]).expect("memdup");
        for _ in 0..16 {
            let mut m = Msg::new();
            m.push(b"hdr").push(payload.clone()).push(page.clone());
            sp.send(&mut m).await.expect("send");
        }
        let before = sp.stats();
        assert!(
            before.zerocopy_sends > 0,
            "zero-copy never engaged: {before:?}"
        );
        sp.flush().await.expect("flush");
        let st = sp.stats();
        assert_eq!(sp.in_flight(), 0);
        assert_eq!(st.completions, st.zerocopy_sends);
        assert!(payload.is_unique(), "the splicer still holds the payload");
        // With the Splicer still alive, dropping our own fragment frees its
        // mapping: the Splicer holds no reference to it any more.
        drop(page);
        let fs = cache.stats();
        assert_eq!(fs.folios_live, 0, "a fragment is still held: {fs:?}");
        assert_eq!(fs.retired, 0);
        drop(sp);
        let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
        assert_eq!(got.len(), 16 * (3 + (64 << 10) + (1 << 20)));
    });
}

/// A connection waiting in recv for its next request releases the buffers
/// of its last reply as completions arrive: the peer replies only once it
/// sees the payload's only reference is its own, which can happen only if
/// recv reaped while it waited.
#[test]
fn a_task_waiting_in_recv_releases_zero_copy_buffers() {
    run_task(false, async {
        let (tx, mut rx) = tcp_pair();
        rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4 << 20).expect("sndbuf");
        let b = zero_copy_on_loopback().completion_batch(1 << 20);
        let mut sp = AsyncSplicer::with_builder(b, tx).expect("AsyncSplicer");
        let payload = Bytes::from(source()[..64 << 10].to_vec());
        let watched = payload.clone();
        let peer = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            rx.read_exact(&mut buf).expect("read");
            let released = (0..HANG.as_millis() / 2).any(|_| {
                std::thread::sleep(Duration::from_millis(1));
                watched.is_unique()
            });
            rx.write_all(&[released as u8]).expect("reply");
        });
        let mut m = Msg::new();
        m.push(payload);
        sp.send(&mut m).await.expect("send");
        drop(m);
        assert_eq!(sp.in_flight(), 1, "the send must still be held here");
        let mut reply = [9u8];
        assert_eq!(sp.recv(&mut reply).await.expect("recv"), 1);
        assert_eq!(
            reply[0], 1,
            "recv did not release the payload while waiting"
        );
        assert_eq!(sp.in_flight(), 0);
        tokio::task::spawn_blocking(move || peer.join().expect("peer"))
            .await
            .expect("join");
    });
}

/// reap, in a loop as a select! branch would call it, releases everything.
#[test]
fn reap_releases_completed_sends() {
    run_task(true, async {
        let (tx, rx) = tcp_pair();
        let reader = read_to_end(rx.into());
        let b = zero_copy_on_loopback().completion_batch(1 << 20);
        let mut sp = AsyncSplicer::with_builder(b, tx).expect("AsyncSplicer");
        let page = FragCache::new()
            .memdup(&source()[..256 << 10])
            .expect("memdup");
        for _ in 0..8 {
            let mut m = Msg::new();
            m.push(page.clone());
            sp.send(&mut m).await.expect("send");
        }
        assert!(sp.stats().zerocopy_sends > 0);
        let mut reaped = 0;
        while sp.in_flight() > 0 {
            let n = sp.reap().await.expect("reap");
            assert!(n > 0);
            reaped += n;
        }
        assert_eq!(reaped, sp.stats().completions);
        assert_eq!(sp.reap().await.expect("reap"), 0, "nothing in flight");
        drop(sp);
        tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
    });
}

/// With zero-copy completions queued on the socket (which epoll reports
/// together with room to send), a send waiting on a full socket is not
/// retried each time it is polled: it waits for room.
#[test]
fn a_full_zero_copy_socket_is_not_retried_on_every_poll() {
    run_task(false, async {
        let (tx, rx) = tcp_pair();
        rustix::net::sockopt::set_socket_send_buffer_size(&tx, 64 << 10).expect("sndbuf");
        let mut sp = AsyncSplicer::with_builder(zero_copy_on_loopback(), tx).expect("AsyncSplicer");
        let page = FragCache::new()
            .memdup(&source()[..64 << 10])
            .expect("memdup");
        let mut m = Msg::new();
        for _ in 0..1000 {
            m.clear();
            m.push(page.clone());
            if poll_at_most(sp.send(&mut m), 1).await.is_none() {
                break; // the socket is full and the peer reads nothing
            }
        }
        assert!(!m.is_sent() && sp.stats().zerocopy_sends > 0);
        let before = sp.stats();
        assert!(poll_at_most(sp.send(&mut m), 200).await.is_none());
        let after = sp.stats();
        let reads = after.notifications - before.notifications;
        assert!(
            after.syscalls - before.syscalls <= 10 + 2 * reads,
            "{} system calls for 200 polls",
            after.syscalls - before.syscalls
        );
        drop(rx);
    });
}

// ---- close -------------------------------------------------------------

/// close waits at most the drain timeout on the runtime's timer, so other
/// tasks of a current-thread runtime keep running meanwhile; what never
/// completed (the peer reads nothing) is retired.
#[test]
fn close_is_bounded_and_does_not_block_the_runtime() {
    runtime(false).block_on(async {
        let (tx, rx) = tcp_pair();
        rustix::net::sockopt::set_socket_recv_buffer_size(&rx, 4096).expect("rcvbuf");
        rustix::net::sockopt::set_socket_send_buffer_size(&tx, 64 << 10).expect("sndbuf");
        let b = zero_copy_on_loopback().drain_timeout(Duration::from_millis(300));
        let mut sp = AsyncSplicer::with_builder(b, tx).expect("AsyncSplicer");
        let page = FragCache::new()
            .memdup(&source()[..64 << 10])
            .expect("memdup");
        let mut m = Msg::new();
        for _ in 0..64 {
            m.clear();
            m.push(page.clone());
            if poll_at_most(sp.send(&mut m), 2).await.is_none() {
                break; // the socket is full
            }
        }
        assert!(sp.in_flight() > 0, "{:?}", sp.stats());
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let start = ticks.load(Ordering::Relaxed);
        let st = tokio::time::timeout(HANG, sp.close())
            .await
            .expect("close hung");
        ticker.abort();
        assert!(
            ticks.load(Ordering::Relaxed) > start,
            "close blocked the runtime"
        );
        assert_eq!(st.completions_pending, 0);
        assert!(st.retired_on_close > 0, "{st:?}");
        drop(rx);
    });
}

// ---- other sockets -----------------------------------------------------

/// UDP, connected (built from a tokio socket) and with a destination per
/// message, zero-copy on: each message arrives as one datagram.
#[test]
fn udp_datagrams_arrive_whole() {
    run_task(true, async {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx.set_read_timeout(Some(HANG)).expect("timeout");
        let to = rx.local_addr().expect("addr");
        let connected = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        connected.connect(to).await.expect("connect");
        let b = zero_copy_on_loopback();
        let mut sp = AsyncSplicer::from_tokio_udp(connected, b.clone()).expect("AsyncSplicer");
        let open = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let mut sp_to = AsyncSplicer::with_builder(b, open).expect("AsyncSplicer");
        let cache = FragCache::new();
        let src = source();
        let mut buf = vec![0u8; 64 << 10];
        for i in 0..32usize {
            let len = 1 + i * 997;
            let data = &src[i * 100..i * 100 + len];
            let mut m = Msg::new();
            m.push(&data[..len / 3])
                .push(cache.memdup(&data[len / 3..]).expect("memdup"));
            if i % 2 == 0 {
                sp.send(&mut m).await.expect("send");
            } else {
                sp_to.send_to(&mut m, to).await.expect("send_to");
            }
            let n = rx.recv(&mut buf).expect("recv");
            assert!(&buf[..n] == data, "datagram {i} differs");
        }
        sp.flush().await.expect("flush");
        sp_to.flush().await.expect("flush");
        assert_eq!(sp.in_flight() + sp_to.in_flight(), 0);
    });
}

/// Unix datagrams, the receiver's queue kept full so that sends wait, each
/// send dropped after a random number of polls and resumed: every record
/// arrives once, whole, in order.
#[test]
fn records_arrive_once_when_sends_are_dropped() {
    run_task(false, async {
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair().expect("pair");
        let (gate_tx, gate) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let _ = gate.recv(); // read nothing until the queue is full
            let mut got = Vec::new();
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = rx.recv(&mut buf) {
                if n == 0 {
                    break; // the end marker
                }
                got.push(buf[..n].to_vec());
            }
            got
        });
        let mut sp = AsyncSplicer::new(tx).expect("AsyncSplicer");
        let cache = FragCache::new();
        let src = source();
        let mut gate_tx = Some(gate_tx);
        let mut dropped = 0;
        let mut want = Vec::new();
        for i in 0..300usize {
            let data = &src[i * 31..][..1 + (i * 523) % (12 << 10)];
            want.push(data.to_vec());
            let mut m = Msg::new();
            m.push(&data[..data.len() / 2])
                .push(cache.memdup(&data[data.len() / 2..]).expect("memdup"));
            loop {
                match poll_at_most(sp.send(&mut m), 1 + (i % 3) as u32).await {
                    Some(r) => break r.map(drop).expect("send"),
                    None => {
                        assert_eq!(m.sent(), 0, "a record goes whole or not at all");
                        dropped += 1;
                        gate_tx.take(); // now the reader may start
                    }
                }
            }
        }
        assert!(dropped > 0, "no send ever had to wait");
        sp.send(&mut Msg::new()).await.expect("end marker");
        let got = tokio::task::spawn_blocking(move || reader.join().expect("reader"))
            .await
            .expect("join");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the records differ");
    });
}

/// An AsyncSplicer over a *borrowed* tokio stream, which the task keeps
/// reading from with tokio: a request/reply exchange with file-free
/// messages in both directions.
#[test]
fn borrowed_tokio_stream_keeps_reading_with_tokio() {
    run_task(true, async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).expect("connect");
            let mut replies = Vec::new();
            for i in 0..8u8 {
                c.write_all(&[i]).expect("request");
                let mut r = [0u8; 5 + (32 << 10)];
                c.read_exact(&mut r).expect("reply");
                replies.push(r);
            }
            replies
        });
        let (stream, _) = l.accept().await.expect("accept");
        let mut sp = AsyncSplicer::new(&stream).expect("AsyncSplicer");
        let page = FragCache::new()
            .memdup(&source()[..32 << 10])
            .expect("memdup");
        for _ in 0..8 {
            let mut req = [0u8];
            loop {
                stream.readable().await.expect("readable");
                match stream.try_read(&mut req) {
                    Ok(1) => break,
                    Ok(_) => panic!("client left"),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("read: {e}"),
                }
            }
            let mut m = Msg::new();
            m.push(b"re:").push(vec![req[0], b'\n']).push(page.clone());
            sp.send(&mut m).await.expect("send");
        }
        let replies = tokio::task::spawn_blocking(move || client.join().expect("client"))
            .await
            .expect("join");
        for (i, r) in replies.iter().enumerate() {
            assert_eq!(&r[..5], &[b'r', b'e', b':', i as u8, b'\n']);
            assert!(r[5..] == source()[..32 << 10]);
        }
    });
}
