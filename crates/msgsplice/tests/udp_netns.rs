//! UDP and UDP6 between two test hosts in network namespaces joined by a
//! veth pair (`msgsplice_testkit::hosts`, MTU 1500): datagrams and GSO segments arrive
//! whole when the link delivers (and zero-copy completions say COPIED);
//! when the link drops every packet before delivery, as a NIC would
//! transmit it, completions are not COPIED and the default policy keeps
//! zero-copy on; a GSO segment too large for the MTU is a typed error that
//! leaves the completion ids in step. Needs root; otherwise a skip (a
//! failure in CI as root). Traffic stays between 10.213.0.1/fd00:213::1 and
//! 10.213.0.2/fd00:213::2 inside the namespaces.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use common::{recv_datagrams, udp_receiver};
use msgsplice::send::{Builder, OnCopied, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};
use msgsplice::{Frag, FragCache, Msg, SendError, SendStats};
use msgsplice_testkit::hosts::{receiver as receiver_ip, Hosts, LinkMode, Side};

fn payload(cache: &FragCache, len: usize, seed: usize) -> Frag {
    let mut f = cache.alloc(len, 4096).expect("alloc");
    for (j, b) in f.iter_mut().enumerate() {
        *b = (j.wrapping_mul(7).wrapping_add(seed) % 251) as u8;
    }
    f.freeze()
}

/// The datagrams a message of `len` bytes becomes with segment size `seg`.
fn cut(data: &[u8], seg: u16) -> Vec<Vec<u8>> {
    if seg == 0 {
        return vec![data.to_vec()];
    }
    data.chunks(seg.into()).map(<[u8]>::to_vec).collect()
}

/// A UDP socket in namespace `a` connected to `to` (nothing needs to
/// listen there).
fn connected_in_a(ns: &Hosts, to: SocketAddr) -> UdpSocket {
    ns.spawn_in(Side::Sender, move || {
        let any: IpAddr = if to.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let s = UdpSocket::bind((any, 0))?;
        s.connect(to)?;
        Ok::<_, std::io::Error>(s)
    })
    .join()
    .expect("thread")
    .expect("socket")
}

/// Deliver mode: plain datagrams (below, at and far above the MTU, so the
/// kernel fragments them) and GSO sends of several segment sizes arrive
/// as exactly the datagrams expected, in order, over v4 and v6, with
/// zero-copy on; every completion is COPIED (the peer is local).
#[test]
fn deliver_mode_datagrams_and_segments_arrive_whole() {
    let Some(ns) = Hosts::for_test("deliver_mode_datagrams_and_segments_arrive_whole") else {
        return;
    };
    ns.set_mode(LinkMode::Deliver).expect("deliver");
    for v6 in [false, true] {
        let max = if v6 {
            MAX_UDP_PAYLOAD_V6
        } else {
            MAX_UDP_PAYLOAD_V4
        } as usize;
        let cases: Vec<(u16, usize)> = vec![
            (0, 1000),
            (0, 20_000),
            (0, max),
            (1400, 64_400),
            (1400, 20_001),
            (1200, 30_000),
            (1400, 900),
        ];
        let cache = FragCache::new();
        let msgs: Vec<Vec<u8>> = cases
            .iter()
            .enumerate()
            .map(|(i, &(_, len))| payload(&cache, len, i).to_vec())
            .collect();
        let want: Vec<Vec<u8>> = cases
            .iter()
            .zip(&msgs)
            .flat_map(|(&(seg, _), m)| cut(m, seg))
            .collect();

        let (tx, rx) = mpsc::channel();
        let n = want.len();
        let recv = ns.spawn_in(Side::Receiver, move || {
            let r = udp_receiver(receiver_ip(v6))?;
            tx.send(r.local_addr()?).ok();
            recv_datagrams(&r, n)
        });
        let to = rx.recv_timeout(Duration::from_secs(10)).expect("receiver");
        let sock = connected_in_a(&ns, to);
        let mut sp = Builder::new()
            .on_copied(OnCopied::Keep)
            .frag_cache(cache.clone())
            .build(sock)
            .unwrap();
        for (&(seg, _), data) in cases.iter().zip(&msgs) {
            sp.set_gso_segment(seg).unwrap();
            let mut m = Msg::new();
            // A copied header and a spliced body, cut at an odd place.
            m.push(&data[..5]).push(cache.memdup(&data[5..]).unwrap());
            sp.send(&mut m)
                .unwrap_or_else(|e| panic!("v6 {v6} seg {seg}: {e}"));
        }
        let got = recv.join().unwrap().expect("receive");
        assert_eq!(got.len(), want.len());
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g == w,
                "v6 {v6}: datagram {k}: {} bytes, want {}",
                g.len(),
                w.len()
            );
        }
        assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
        let st = sp.stats();
        eprintln!("v6 {v6}: {st:?}");
        assert!(st.zerocopy_sends >= 5, "{st:?}");
        assert_eq!(st.completions, st.zerocopy_sends);
        assert_eq!(
            st.completions_copied, st.completions,
            "local delivery copies"
        );
        assert_eq!(st.unexpected_completions, 0);
    }
}

/// Sends `count` GSO messages of 64400 bytes (16-byte header + payload) to
/// a host behind the dropping link and waits for the completions.
fn blast(ns: &Hosts, v6: bool, b: Builder, count: usize) -> SendStats {
    let sock = connected_in_a(ns, SocketAddr::new(receiver_ip(v6), 9));
    let cache = FragCache::new();
    let mut sp = b
        .gso_segment(1400)
        .frag_cache(cache.clone())
        .build(sock)
        .unwrap();
    let body = payload(&cache, 64_384, 1);
    for i in 0..count {
        let head = (i as u128).to_be_bytes();
        let mut m = Msg::new();
        m.push(&head[..]).push(body.clone());
        assert_eq!(sp.send(&mut m).unwrap(), 64_400);
    }
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    sp.stats()
}

/// Drop mode: packets leave without local delivery, so the kernel never
/// copies the pages: completions are not COPIED, and the default policy
/// keeps every message zero-copy. With SPLICE off nothing is zero-copy.
#[test]
fn drop_mode_completions_are_not_copied() {
    let Some(ns) = Hosts::for_test("drop_mode_completions_are_not_copied") else {
        return;
    };
    ns.set_mode(LinkMode::Drop).expect("drop");
    for v6 in [false, true] {
        let st = blast(&ns, v6, Builder::new(), 300);
        eprintln!("v6 {v6}: {st:?}");
        assert_eq!(st.zerocopy_sends, 300, "{st:?}");
        assert_eq!(st.completions, 300);
        assert_eq!(st.completions_copied, 0, "nothing copied: {st:?}");
        assert!(!st.zerocopy_stopped && !st.zerocopy_desynced);
        assert_eq!(st.unexpected_completions, 0);
        assert_eq!(st.bytes_spliced, 300 * 64_384);

        let st = blast(&ns, v6, Builder::new().splice(false), 20);
        assert_eq!((st.zerocopy_sends, st.messages), (0, 20));
    }
}

/// The kernel checks a GSO segment against the path MTU only after it has
/// numbered a zero-copy send: the send fails, its id is used, and its
/// completion arrives with no data. The Splicer reports the typed error,
/// counts the id (`zerocopy_failed`), and every later completion still
/// matches its own send; zero-copy stays on. SPLICE off gives the same
/// error.
#[test]
fn segment_too_large_for_the_mtu_keeps_ids_in_step() {
    let Some(ns) = Hosts::for_test("segment_too_large_for_the_mtu_keeps_ids_in_step") else {
        return;
    };
    ns.set_mode(LinkMode::Drop).expect("drop");
    for (v6, too_big) in [(false, 1473u16), (true, 1453)] {
        for splice in [true, false] {
            let sock = connected_in_a(&ns, SocketAddr::new(receiver_ip(v6), 9));
            let cache = FragCache::new();
            let mut sp = Builder::new()
                .splice(splice)
                .on_copied(OnCopied::Keep)
                .gso_segment(1400)
                .frag_cache(cache.clone())
                .build(sock)
                .unwrap();
            let body = payload(&cache, 32 << 10, 2);
            let send = |sp: &mut msgsplice::Splicer<UdpSocket>| {
                let mut m = Msg::new();
                m.push(body.clone());
                sp.send(&mut m)
            };
            for _ in 0..5 {
                send(&mut sp).unwrap();
            }
            sp.set_gso_segment(too_big).unwrap();
            let e = send(&mut sp).unwrap_err();
            assert!(
                matches!(e, SendError::SegmentTooLarge { segment, mtu: Some(1500) } if segment == too_big),
                "v6 {v6}: {e:?}"
            );
            sp.set_gso_segment(too_big - 1).unwrap();
            for _ in 0..5 {
                send(&mut sp).unwrap();
            }
            assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
            let st = sp.stats();
            eprintln!("v6 {v6} splice {splice}: {st:?}");
            if splice {
                assert_eq!((st.zerocopy_sends, st.zerocopy_failed), (10, 1), "{st:?}");
            }
            assert_eq!(st.completions, st.zerocopy_sends + st.zerocopy_failed);
            assert_eq!(st.unexpected_completions, 0, "ids in step: {st:?}");
            assert!(!st.zerocopy_desynced && !st.zerocopy_stopped);
        }
    }
}
