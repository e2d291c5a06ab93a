//! UDP and UDP6 over loopback: one message is one datagram, whole and with
//! its boundaries; GSO leaves as segments of the chosen size; limits are
//! typed errors before any byte is sent; the default policy stops
//! zero-copy where the kernel copies anyway.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use common::{build, concat, queued_datagrams, recv_datagrams, seg_of, udp_receiver, SegSpec};
use msgsplice::send::{Builder, OnCopied, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};
use msgsplice::{Frag, FragCache, Msg, SendError, Splicer};
use proptest::prelude::*;

fn loopback(v6: bool) -> IpAddr {
    if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    }
}

/// A receiver on loopback and a sender connected to it; `None` (with a
/// message) if this host has no IPv6 loopback.
fn pair(v6: bool) -> Option<(UdpSocket, UdpSocket)> {
    let rx = match udp_receiver(loopback(v6)) {
        Ok(r) => r,
        Err(e) if v6 => {
            msgsplice_testkit::skip::skip_unsupported("udp6 loopback pair", e);
            return None;
        }
        Err(e) => panic!("bind: {e}"),
    };
    let tx = UdpSocket::bind((loopback(v6), 0)).expect("bind");
    tx.connect(rx.local_addr().unwrap()).expect("connect");
    Some((tx, rx))
}

/// `len` bytes of the test pattern in one fragment (page-aligned).
fn payload(cache: &FragCache, len: usize, seed: usize) -> Frag {
    let mut f = cache.alloc(len, 4096).expect("alloc");
    for (j, b) in f.iter_mut().enumerate() {
        *b = (j.wrapping_mul(31).wrapping_add(seed) % 253) as u8;
    }
    f.freeze()
}

fn seg() -> impl Strategy<Value = SegSpec> {
    let len = prop_oneof![2 => Just(0usize), 5 => 1usize..512, 4 => 512usize..8000];
    seg_of(len)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random messages of every segment kind (0 to 8 segments, up to 64000
    /// bytes, fragments at odd folio offsets), each sent as one datagram
    /// over UDP or UDP6, connected or by `send_to`, with SPLICE off, on, or
    /// on with zero-copy forced for every size: each arrives as exactly one
    /// datagram holding exactly the message; zero-copy ids stay in step.
    #[test]
    fn each_message_is_one_whole_datagram(
        msgs in prop::collection::vec(prop::collection::vec(seg(), 0..9), 1..6),
        v6 in any::<bool>(),
        connected in any::<bool>(),
        mode in 0u8..3,
    ) {
        let Some((tx, rx)) = pair(v6) else { return Ok(()) };
        let to = rx.local_addr().unwrap();
        let cache = FragCache::new();
        let mut b = Builder::new().frag_cache(cache.clone()).on_copied(OnCopied::Keep);
        b = match mode {
            0 => b.splice(false),
            1 => b,
            _ => b.zerocopy_threshold(0),
        };
        let mut sp = b.build(tx).expect("splicer");
        for specs in &msgs {
            let mut m = build(specs, &cache);
            let n = if connected { sp.send(&mut m) } else { sp.send_to(&mut m, to) };
            prop_assert_eq!(n.expect("send"), m.len());
            prop_assert!(m.is_sent());
            let got = recv_datagrams(&rx, 1).expect("recv");
            prop_assert_eq!(&got[0], &concat(specs));
        }
        prop_assert_eq!(queued_datagrams(&rx), 0, "one datagram per message");
        prop_assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
        let st = sp.stats();
        prop_assert_eq!(st.messages, msgs.len() as u64);
        prop_assert_eq!(st.completions, st.zerocopy_sends);
        prop_assert_eq!(st.unexpected_completions, 0);
        if mode == 0 {
            prop_assert_eq!(st.zerocopy_sends, 0);
        }
    }
}

/// With a GSO segment size, one send leaves as segments of exactly that
/// size (the last one shorter), in order, over UDP and UDP6, SPLICE off and
/// on; the size can change from one message to the next, and 0 sends one
/// plain datagram. One system call per message.
#[test]
fn gso_leaves_as_segments_of_the_chosen_size() {
    let cache = FragCache::new();
    for v6 in [false, true] {
        for splice in [false, true] {
            let Some((tx, rx)) = pair(v6) else { continue };
            let mut sp = Builder::new()
                .splice(splice)
                .on_copied(OnCopied::Keep)
                .gso_segment(1400)
                .frag_cache(cache.clone())
                .build(tx)
                .unwrap();
            assert_eq!(sp.gso_segment(), 1400);
            let cases: [(u16, usize); 7] = [
                (1400, 64_400),
                (1000, MAX_UDP_PAYLOAD_V4 as usize),
                (3000, 20_001),
                (1400, 1400),
                (1400, 100),
                (0, 30_000),
                (512, 127 * 512 + 100),
            ];
            for (i, &(seg, len)) in cases.iter().enumerate() {
                sp.set_gso_segment(seg).unwrap();
                let head = [i as u8; 16];
                let body = payload(&cache, len - head.len(), i);
                let mut m = Msg::new();
                m.push(&head[..]).push(body.clone());
                let calls = sp.stats().syscalls;
                assert_eq!(sp.send(&mut m).unwrap(), len as u64);
                let calls = sp.stats().syscalls - calls;
                assert!(calls <= 2, "one send (+ SO_ZEROCOPY once): {calls}");

                let n = if seg == 0 {
                    1
                } else {
                    len.div_ceil(seg.into())
                };
                let got = recv_datagrams(&rx, n).unwrap();
                let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
                for (k, &s) in sizes.iter().enumerate() {
                    let want = if seg == 0 {
                        len
                    } else {
                        (len - k * usize::from(seg)).min(seg.into())
                    };
                    assert_eq!(s, want, "v6 {v6} seg {seg} len {len}: {sizes:?}");
                }
                let whole: Vec<u8> = got.concat();
                assert_eq!(&whole[..16], &head);
                assert!(whole[16..] == body[..], "payload of case {i}");
                assert_eq!(queued_datagrams(&rx), 0);
            }
            assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
            let st = sp.stats();
            assert_eq!(st.zerocopy_sends > 0, splice, "{st:?}");
            assert_eq!(st.completions, st.zerocopy_sends);
        }
    }
}

/// Every limit is a typed error before any byte goes: no system call is
/// made and nothing arrives.
#[test]
fn limits_are_typed_errors_before_anything_is_sent() {
    let cache = FragCache::new();
    let big = payload(&cache, 70_000, 0);
    let msg_of = |len: usize| {
        let mut m = Msg::new();
        m.push(big.slice(..len));
        m
    };
    let (tx, rx) = pair(false).unwrap();
    let mut sp = Splicer::new(tx).unwrap();
    let e = sp.send(&mut msg_of(MAX_UDP_PAYLOAD_V4 as usize + 1));
    assert!(
        matches!(e, Err(SendError::MessageTooLarge { len: 65_508 })),
        "{e:?}"
    );
    sp.set_gso_segment(500).unwrap();
    let e = sp.send(&mut msg_of(128 * 500 + 1));
    assert!(
        matches!(
            e,
            Err(SendError::TooManySegments {
                len: 64_001,
                segment: 500,
                max: 128
            })
        ),
        "{e:?}"
    );
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    let mut m = Msg::new();
    m.push(b"head").push_file(&f, 0, 100);
    assert!(matches!(
        sp.send(&mut m),
        Err(SendError::FileOnRecordSocket)
    ));
    let v6: SocketAddr = "[fd00:213::2]:9".parse().unwrap();
    assert!(matches!(
        sp.send_to(&mut msg_of(10), v6),
        Err(SendError::WrongAddressFamily { addr }) if addr == v6
    ));
    assert_eq!(sp.stats().syscalls, 0, "the kernel was never asked");
    assert_eq!(queued_datagrams(&rx), 0);

    // IPv6 allows 20 bytes more, and no more.
    if let Some((tx6, rx6)) = pair(true) {
        let mut sp6 = Splicer::new(tx6).unwrap();
        let e = sp6.send(&mut msg_of(MAX_UDP_PAYLOAD_V6 as usize + 1));
        assert!(matches!(e, Err(SendError::MessageTooLarge { .. })), "{e:?}");
        let n = sp6.send(&mut msg_of(MAX_UDP_PAYLOAD_V6 as usize)).unwrap();
        assert_eq!(n, MAX_UDP_PAYLOAD_V6);
        assert_eq!(recv_datagrams(&rx6, 1).unwrap()[0].len(), 65_527);
    }

    // Destinations and GSO need UDP.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let mut sp = Splicer::new(tcp).unwrap();
    let to = l.local_addr().unwrap();
    assert!(matches!(
        sp.send_to(&mut msg_of(1), to),
        Err(SendError::UdpOnly { .. })
    ));
    assert!(matches!(
        sp.set_gso_segment(1400),
        Err(SendError::UdpOnly { .. })
    ));
    let (u, _) = std::os::unix::net::UnixDatagram::pair().unwrap();
    assert!(matches!(
        Builder::new().gso_segment(1400).build(u),
        Err(SendError::UdpOnly { .. })
    ));
}

/// `send_to` on unconnected sockets: each datagram reaches its own
/// destination; an IPv6 socket reaches an IPv4 receiver through an
/// IPv4-mapped address; a connected socket's peer can be overridden.
#[test]
fn send_to_reaches_each_destination() {
    let cache = FragCache::new();
    let r4 = udp_receiver(loopback(false)).unwrap();
    let r4b = udp_receiver(loopback(false)).unwrap();
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sp = Builder::new()
        .zerocopy_threshold(0)
        .on_copied(OnCopied::Keep)
        .build(tx)
        .unwrap();
    for i in 0..6u8 {
        let to = if i % 2 == 0 { &r4 } else { &r4b };
        let mut m = Msg::new();
        m.push(vec![i; 3]).push(payload(&cache, 2000, i.into()));
        sp.send_to(&mut m, to.local_addr().unwrap()).unwrap();
        let got = recv_datagrams(to, 1).unwrap();
        assert_eq!(&got[0][..3], &[i; 3]);
        assert_eq!(got[0].len(), 2003);
    }
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    assert_eq!(sp.stats().zerocopy_sends, 6);

    // A dual-stack IPv6 socket, to IPv4 (mapped) and IPv6, with GSO.
    let Ok(tx6) = UdpSocket::bind("[::]:0") else {
        msgsplice_testkit::skip::skip_unsupported("udp6 send_to", "no IPv6");
        return;
    };
    let r6 = udp_receiver(loopback(true)).unwrap();
    let mut sp6 = Builder::new().gso_segment(1000).build(tx6).unwrap();
    for to in [&r4, &r6] {
        let mut m = Msg::new();
        m.push(payload(&cache, 2500, 7));
        sp6.send_to(&mut m, to.local_addr().unwrap()).unwrap();
        let sizes: Vec<usize> = recv_datagrams(to, 3)
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [1000, 1000, 500]);
    }

    // Connected to one, sent to another.
    let (tx, rx) = pair(false).unwrap();
    let mut sp = Splicer::new(tx).unwrap();
    let mut m = Msg::new();
    m.push(b"elsewhere");
    sp.send_to(&mut m, r4b.local_addr().unwrap()).unwrap();
    assert_eq!(recv_datagrams(&r4b, 1).unwrap()[0], b"elsewhere");
    assert_eq!(queued_datagrams(&rx), 0);
}

/// A connected socket whose peer port is closed reports the ICMP error on
/// a later send as `ConnectionRefused`, with nothing sent; zero-copy ids
/// stay in step across it.
#[test]
fn closed_port_is_connection_refused() {
    let cache = FragCache::new();
    let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
    let to = gone.local_addr().unwrap();
    drop(gone);
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    tx.connect(to).unwrap();
    let mut sp = Builder::new()
        .zerocopy_threshold(0)
        .on_copied(OnCopied::Keep)
        .build(tx)
        .unwrap();
    let mut refused = 0;
    for _ in 0..6 {
        let mut m = Msg::new();
        m.push(payload(&cache, 4096, 1));
        match sp.send(&mut m) {
            Ok(n) => assert_eq!(n, 4096),
            Err(SendError::ConnectionRefused) => {
                assert_eq!(m.sent(), 0);
                refused += 1;
            }
            Err(e) => panic!("{e:?}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(refused > 0, "the ICMP error was reported");
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    let st = sp.stats();
    assert_eq!(st.zerocopy_sends, 6 - refused);
    assert_eq!(st.completions, st.zerocopy_sends);
    assert_eq!(st.unexpected_completions, 0);
}

/// On loopback every zero-copy completion says COPIED, and zero-copy was
/// measured slower than a plain copy there. The default policy sees a
/// loopback peer and never starts it; told not to look at the peer, it
/// stops after 64 COPIED completions, and later messages are copied.
#[test]
fn default_policy_stops_zero_copy_on_loopback() {
    let cache = FragCache::new();
    let (tx, rx) = pair(false).unwrap();
    let mut sp = Builder::new()
        .gso_segment(1400)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let body = payload(&cache, 64_384, 3);
    let segments = 64_400usize.div_ceil(1400);
    for _ in 0..5 {
        let mut m = Msg::new();
        m.push(b"sixteen byte hdr").push(body.clone());
        sp.send(&mut m).unwrap();
        recv_datagrams(&rx, segments).unwrap();
    }
    let st = sp.stats();
    assert!(st.zerocopy_local_peer && st.zerocopy_stopped, "{st:?}");
    assert_eq!((st.zerocopy_sends, st.bytes_spliced), (0, 0), "{st:?}");
    drop(sp);

    let (tx, rx) = pair(false).unwrap();
    let mut sp = Builder::new()
        .gso_segment(1400)
        .skip_zerocopy_to_local_peers(false)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    for round in 0..3 {
        for _ in 0..40 {
            let mut m = Msg::new();
            m.push(b"sixteen byte hdr").push(body.clone());
            sp.send(&mut m).unwrap();
            recv_datagrams(&rx, segments).unwrap();
        }
        sp.wait_completions(Duration::from_secs(10)).unwrap();
        eprintln!("round {round}: {:?}", sp.stats());
    }
    let st = sp.stats();
    assert!(st.zerocopy_stopped && !st.zerocopy_local_peer, "{st:?}");
    assert_eq!(st.completions_copied, st.completions);
    assert!((64..120).contains(&st.zerocopy_sends), "{st:?}");
    let spliced = st.bytes_spliced;
    let mut m = Msg::new();
    m.push(b"sixteen byte hdr").push(body.clone());
    sp.send(&mut m).unwrap();
    assert_eq!(sp.stats().bytes_spliced, spliced, "copied from now on");
}
