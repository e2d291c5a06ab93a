//! Completion accounting and typed errors, over real sockets.

mod common;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use common::{pair, read_to_end, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg, SendError, Splicer};

fn page(cache: &FragCache, len: usize, byte: u8) -> msgsplice::Frag {
    let mut f = cache.alloc(len, 4096).unwrap();
    f.fill(byte);
    f.freeze()
}

/// Every zero-copy send takes one id and completes exactly once; unread
/// completions coalesce into ranges (fewer notifications than sends); on
/// loopback every one of them says COPIED.
#[test]
fn every_zerocopy_send_completes_exactly_once() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .on_copied(OnCopied::Keep)
        .completion_batch(100_000) // read nothing during the sends
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let p = page(&cache, 16 << 10, 1);
    for _ in 0..200 {
        let mut m = Msg::new();
        m.push(b"hdr").push(p.clone());
        sp.send(&mut m).unwrap();
    }
    let st = sp.stats();
    assert_eq!(
        (st.zerocopy_sends, st.syscalls),
        (200, 201),
        "+1 SO_ZEROCOPY"
    );
    assert_eq!(st.bytes_spliced, 200 * (16 << 10));
    assert_eq!(st.bytes_copied, 200 * 3, "headers copied into frags");
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    let st = sp.stats();
    assert_eq!(st.completions, 200);
    assert_eq!(st.unexpected_completions, 0);
    assert_eq!(st.completions_pending, 0);
    assert!(st.notifications < 200, "ranges coalesce: {st:?}");
    assert_eq!(st.completions_copied, 200, "loopback delivery copies");
    drop(sp);
    assert_eq!(h.join().unwrap().unwrap().len(), 200 * (3 + (16 << 10)));
}

/// Empty messages (or only empty segments) cost no system call and take no
/// completion id: later completions still match.
#[test]
fn empty_messages_take_no_id_and_no_syscall() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .zerocopy_threshold(0)
        .on_copied(OnCopied::Keep) // zero-copy to a local peer
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let p = page(&cache, 4096, 2);
    for i in 0..20 {
        let mut m = Msg::new();
        if i % 2 == 0 {
            m.push(p.slice(0..0)).push(&[][..]).push(Vec::new());
            assert_eq!(sp.send(&mut m).unwrap(), 0);
        } else {
            m.push(p.clone());
            assert_eq!(sp.send(&mut m).unwrap(), 4096);
        }
    }
    let st = sp.stats();
    assert_eq!(st.messages, 20);
    assert_eq!(st.zerocopy_sends, 10);
    assert_eq!(st.syscalls, 11, "10 sends and one setsockopt");
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    let st = sp.stats();
    assert_eq!((st.completions, st.unexpected_completions), (10, 0));
    drop(sp);
    assert_eq!(h.join().unwrap().unwrap().len(), 10 * 4096);
}

/// To a peer on this host the default policy never starts zero-copy (local
/// delivery copies every page): one getpeername, then plain sends, the
/// same bytes. `OnCopied::Keep` still zero-copies there.
#[test]
fn default_policy_skips_zerocopy_to_a_local_peer() {
    for t in [Transport::Tcp4, Transport::Tcp6] {
        let Ok((tx, rx)) = pair(t) else {
            msgsplice_testkit::skip::skip_unsupported(
                "default_policy_skips_zerocopy_to_a_local_peer",
                format!("no {t:?} socket pair"),
            );
            continue;
        };
        let h = read_to_end(rx);
        let cache = FragCache::new();
        let mut sp = Builder::new().frag_cache(cache.clone()).build(tx).unwrap();
        let p = page(&cache, 64 << 10, 4);
        for _ in 0..10 {
            let mut m = Msg::new();
            m.push(b"hdr").push(p.clone());
            sp.send(&mut m).unwrap();
        }
        let st = sp.stats();
        assert!(
            st.zerocopy_local_peer && st.zerocopy_stopped,
            "{t:?}: {st:?}"
        );
        assert_eq!(st.zerocopy_sends, 0, "{t:?}");
        assert_eq!(st.syscalls, 1 + 10, "{t:?}: getpeername and the sends");
        drop(sp);
        assert_eq!(h.join().unwrap().unwrap().len(), 10 * (3 + (64 << 10)));
    }
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .on_copied(OnCopied::Keep)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let p = page(&cache, 64 << 10, 5);
    let mut m = Msg::new();
    m.push(p.clone());
    sp.send(&mut m).unwrap();
    let st = sp.stats();
    assert!(!st.zerocopy_local_peer);
    assert_eq!(st.zerocopy_sends, 1);
    drop(sp);
    assert_eq!(h.join().unwrap().unwrap().len(), 64 << 10);
}

/// A send on a socket closed for writing fails with a typed BrokenPipe
/// and takes no id: the completions of the earlier sends still add up.
#[test]
fn broken_pipe_is_typed_and_takes_no_id() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .on_copied(OnCopied::Keep) // zero-copy to a local peer
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let p = page(&cache, 32 << 10, 3);
    for _ in 0..5 {
        let mut m = Msg::new();
        m.push(p.clone());
        sp.send(&mut m).unwrap();
    }
    rustix::net::shutdown(sp.get_ref(), rustix::net::Shutdown::Write).unwrap();
    let mut m = Msg::new();
    m.push(p.clone());
    assert!(matches!(sp.send(&mut m), Err(SendError::BrokenPipe)));
    assert_eq!(m.sent(), 0);
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    let st = sp.stats();
    assert_eq!((st.zerocopy_sends, st.completions), (5, 5));
    assert_eq!(st.unexpected_completions, 0);
    assert_eq!(h.join().unwrap().unwrap().len(), 5 * (32 << 10));
}

/// A reset from the peer is reported as PeerReset.
#[test]
fn peer_reset_is_typed() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let rx = TcpStream::from(rx);
    rustix::net::sockopt::set_socket_linger(&rx, Some(Duration::ZERO)).unwrap();
    drop(rx); // RST
    std::thread::sleep(Duration::from_millis(50));
    let mut sp = Splicer::new(tx).unwrap();
    let mut m = Msg::new();
    m.push(b"hello".to_vec());
    let e = sp.send(&mut m).unwrap_err();
    assert!(matches!(e, SendError::PeerReset), "{e:?}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
}

/// A record larger than the socket can take is a typed error, not a
/// partial record.
#[test]
fn oversized_record_is_message_too_large() {
    let (tx, _rx) = pair(Transport::UnixSeqpacket).unwrap();
    let mut sp = Splicer::new(tx).unwrap();
    let big = vec![0u8; 4 << 20];
    let mut m = Msg::new();
    m.push(&big[..]);
    let e = sp.send(&mut m).unwrap_err();
    assert!(
        matches!(e, SendError::MessageTooLarge { len } if len == 4 << 20),
        "{e:?}"
    );
}

/// Only sockets of supported kinds are accepted, with typed errors.
#[test]
fn socket_kinds_are_found_and_checked() {
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    assert!(matches!(Splicer::new(f), Err(SendError::NotASocket)));
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    assert_eq!(Splicer::new(u).unwrap().kind(), msgsplice::SocketKind::Udp);
    let netlink = rustix::net::socket(
        rustix::net::AddressFamily::NETLINK,
        rustix::net::SocketType::DGRAM,
        None,
    )
    .unwrap();
    assert!(matches!(
        Splicer::new(netlink),
        Err(SendError::UnsupportedSocket { .. })
    ));
    for (t, k) in [
        (Transport::Tcp4, msgsplice::SocketKind::Tcp),
        (Transport::UnixStream, msgsplice::SocketKind::UnixStream),
        (
            Transport::UnixSeqpacket,
            msgsplice::SocketKind::UnixSeqpacket,
        ),
    ] {
        let (a, _b): (OwnedFd, OwnedFd) = pair(t).unwrap();
        assert_eq!(Splicer::new(a.as_fd()).unwrap().kind(), k);
    }
    let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
    assert_eq!(
        Splicer::new(a).unwrap().kind(),
        msgsplice::SocketKind::UnixDatagram
    );
}

/// Unix sockets never use zero-copy, even with SPLICE on and large frags.
#[test]
fn unix_stream_copies_memory() {
    let (tx, rx) = pair(Transport::UnixStream).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new().zerocopy_threshold(0).build(tx).unwrap();
    let mut m = Msg::new();
    m.push(page(&cache, 64 << 10, 9));
    sp.send(&mut m).unwrap();
    let st = sp.stats();
    assert_eq!((st.zerocopy_sends, st.bytes_copied), (0, 64 << 10));
    drop(sp);
    assert_eq!(h.join().unwrap().unwrap().len(), 64 << 10);
}

/// OnCopied::StopAfter switches zero-copy off once completions keep
/// saying COPIED (always, on loopback), as the default does after 64;
/// OnCopied::Keep keeps it on. The local-peer shortcut is off here, so the
/// COPIED count is what stops it.
#[test]
fn copied_completions_follow_the_policy() {
    for (policy, stops) in [
        (Some(OnCopied::StopAfter(8)), true),
        (None, true),
        (Some(OnCopied::Keep), false),
    ] {
        let (tx, rx) = pair(Transport::Tcp4).unwrap();
        let h = read_to_end(rx);
        let cache = FragCache::new();
        let b = match policy {
            Some(p) => Builder::new().on_copied(p),
            None => Builder::new(),
        };
        let mut sp = b
            .completion_batch(1)
            .skip_zerocopy_to_local_peers(false)
            .frag_cache(cache.clone())
            .build(tx)
            .unwrap();
        let p = page(&cache, 16 << 10, 4);
        for _ in 0..100 {
            let mut m = Msg::new();
            m.push(p.clone());
            sp.send(&mut m).unwrap();
            if sp.in_flight() > 0 {
                sp.wait_completions(Duration::from_secs(5)).unwrap();
            }
        }
        let st = sp.stats();
        assert_eq!(st.zerocopy_stopped, stops, "{policy:?}: {st:?}");
        assert!(!st.zerocopy_local_peer);
        if stops {
            assert!(st.zerocopy_sends >= 8 && st.zerocopy_sends < 80, "{st:?}");
        } else {
            assert_eq!(st.zerocopy_sends, 100);
        }
        drop(sp);
        assert_eq!(h.join().unwrap().unwrap().len(), 100 * (16 << 10));
    }
}

/// With too many sends in flight (after reading what has completed),
/// messages are copied instead (and still arrive), rather than holding ever
/// more memory.
#[test]
fn in_flight_bound_defers_to_copy() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let rx = std::thread::spawn(move || {
        let mut s = TcpStream::from(rx);
        let mut v = Vec::new();
        s.read_to_end(&mut v).map(|_| v)
    });
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .on_copied(OnCopied::Keep)
        .max_in_flight(4)
        .completion_batch(1 << 20)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    for i in 0..40u8 {
        let mut m = Msg::new();
        m.push(page(&cache, 16 << 10, i));
        sp.send(&mut m).unwrap();
        assert!(sp.in_flight() <= 4);
    }
    let st = sp.stats();
    // Which sends find room depends on when completions arrive; each one
    // either went zero-copy or was deferred to a copy.
    assert!(st.zerocopy_sends >= 4);
    assert_eq!(st.zerocopy_sends + st.zerocopy_deferred, 40);
    drop(sp);
    let got = rx.join().unwrap().unwrap();
    for (i, chunk) in got.chunks(16 << 10).enumerate() {
        assert!(chunk.iter().all(|&b| b == i as u8), "message {i}");
    }
}
