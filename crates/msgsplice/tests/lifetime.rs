//! Spliced pages are never recycled while the kernel may still read them.
//!
//! Two test hosts in network namespaces joined by a veth pair
//! (`msgsplice_testkit::hosts`) whose sending side is throttled, so zero-copy pages wait in a slow queue
//! for a long time. Meanwhile the sender keeps allocating and freeing
//! fragments from a cache that poisons every recycled folio, and the
//! receiver checks every byte and that every message (and UDP segment)
//! arrives exactly once. If a folio were recycled before its completion,
//! the kernel would transmit poison or newer data: poison shows as bad
//! bytes, newer data as a duplicate of a later message and a missing
//! earlier one. The same over TCP and over UDP with GSO (where
//! the segments of a datagram wait in the queue holding the pages). Needs
//! root; otherwise a skip (a failure in CI as root). Traffic stays between 10.213.0.1
//! and 10.213.0.2 inside the namespaces.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use common::big_rcvbuf;
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg};
use msgsplice_testkit::hosts::{Hosts, LinkMode, Side, RECEIVER_V4};
use msgsplice_testkit::payload::Tally;

const POISON: u8 = 0xEE;
const PAYLOAD: usize = 24 << 10;

/// Byte `j` of message `i`'s payload: never the poison byte.
fn pattern(i: u32, j: usize) -> u8 {
    let v = (i as usize)
        .wrapping_mul(131)
        .wrapping_add(j.wrapping_mul(7))
        % 251;
    if v as u8 == POISON {
        1
    } else {
        v as u8
    }
}

fn listen_in_b(
    ns: &Hosts,
) -> (
    SocketAddr,
    std::thread::JoinHandle<std::io::Result<TcpStream>>,
) {
    let (tx, rx) = mpsc::channel();
    let h = ns.spawn_in(Side::Receiver, move || {
        let l = TcpListener::bind((RECEIVER_V4, 0))?;
        tx.send(l.local_addr()?).ok();
        let (s, _) = l.accept()?;
        Ok(s)
    });
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("listener");
    (addr, h)
}

/// With every send completed, the Splicer holds none of `cache`'s pages:
/// at most the folio the thread is carving (and one it just left) is in
/// use. A completion that released too little would leave hundreds.
fn assert_pages_released(cache: &FragCache) {
    cache.drain();
    let s = cache.stats();
    let in_use = s.folios_live - s.folios_cached;
    assert!(
        in_use <= 2,
        "{in_use} folios still in use after every completion: {s:?}"
    );
}

#[test]
fn spliced_pages_outlive_a_slow_link() {
    let Some(ns) = Hosts::for_test("spliced_pages_outlive_a_slow_link") else {
        return;
    };
    ns.set_mode(LinkMode::Throttle).expect("throttle");
    let (addr, accept) = listen_in_b(&ns);
    let messages = 640u32; // 15 MiB: about 0.7 s at 200 Mbit/s
    let receiver = std::thread::spawn(move || {
        let mut s = accept.join().unwrap().expect("accept");
        let mut bad = 0u64;
        let mut first_bad = None;
        let mut tally = Tally::new(messages as usize, 1);
        let mut buf = vec![0u8; 8 + PAYLOAD];
        for _ in 0..messages {
            s.read_exact(&mut buf).expect("read");
            let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            tally.record(i.into(), 0);
            for (j, &b) in buf[8..].iter().enumerate() {
                if b != pattern(i, j) {
                    bad += 1;
                    first_bad.get_or_insert((i, j, b));
                }
            }
        }
        (bad, first_bad, tally)
    });

    let sender = ns.spawn_in(Side::Sender, move || {
        let cache = FragCache::builder()
            .folio_size(64 << 10)
            .poison_recycled(POISON)
            .build()
            .unwrap();
        let sock = TcpStream::connect(addr).expect("connect");
        // Header copies go to a cache of their own: if they shared folios
        // with the payload, holding them would keep the payload's folios
        // alive too and hide a payload fragment released too early.
        let copies = FragCache::builder()
            .poison_recycled(POISON)
            .build()
            .unwrap();
        // Over the veth every completion is COPIED (the peer is local);
        // keep zero-copy on so every page stays in flight.
        let mut sp = Builder::new()
            .on_copied(OnCopied::Keep)
            .frag_cache(copies)
            .build(sock)
            .unwrap();
        for i in 0..messages {
            let mut f = cache.alloc(PAYLOAD, 64).unwrap();
            for (j, b) in f.iter_mut().enumerate() {
                *b = pattern(i, j);
            }
            let f = f.freeze();
            let mut hdr = [0u8; 8];
            hdr[..4].copy_from_slice(&i.to_be_bytes());
            let mut m = Msg::new();
            m.push(&hdr[..]).push(f);
            // Our handle goes at the end of this iteration; only the
            // Splicer keeps the page alive from here on.
            sp.send(&mut m).expect("send");
            // Churn: allocate and free more fragments from the same cache.
            let mut junk = cache.alloc(8 << 10, 1).unwrap();
            junk.fill(0x55);
        }
        let in_flight_at_end = sp.in_flight();
        assert!(sp.wait_completions(Duration::from_secs(30)).unwrap());
        assert_pages_released(&cache);
        let st = sp.stats();
        drop(sp);
        (st, in_flight_at_end, cache.stats())
    });
    let (st, in_flight_at_end, cs) = sender.join().expect("sender");
    let (bad, first_bad, tally) = receiver.join().expect("receiver");
    eprintln!("splicer {st:?}\nin flight after the last send: {in_flight_at_end}\ncache {cs:?}");
    assert_eq!(
        bad, 0,
        "corrupted bytes, first (msg, offset, byte) = {first_bad:?}"
    );
    tally.assert_exactly_once();
    assert_eq!(
        st.zerocopy_sends,
        u64::from(messages),
        "every page was spliced"
    );
    assert_eq!(st.completions, st.zerocopy_sends);
    assert!(
        in_flight_at_end > 0,
        "pages were in flight while the sender went on"
    );
    assert!(
        cs.recycled > 0,
        "folios were recycled: the test could catch early reuse"
    );
}

/// Closing a Splicer whose sends can never complete (the link drops every
/// packet) waits its bounded time, then retires the folios: unmapped when
/// free, never recycled.
#[test]
fn close_with_sends_stuck_retires_folios() {
    let Some(ns) = Hosts::for_test("close_with_sends_stuck_retires_folios") else {
        return;
    };
    let (addr, accept) = listen_in_b(&ns);
    let sock = ns
        .spawn_in(Side::Sender, move || TcpStream::connect(addr))
        .join()
        .unwrap()
        .expect("connect");
    let _peer = accept.join().unwrap().expect("accept");
    ns.set_mode(LinkMode::Drop).expect("drop");

    let cache = FragCache::builder()
        .poison_recycled(POISON)
        .build()
        .unwrap();
    let mut sp = Builder::new()
        .drain_timeout(Duration::from_millis(200))
        .frag_cache(cache.clone())
        .build(sock)
        .unwrap();
    let mut f = cache.alloc(PAYLOAD, 4096).unwrap();
    f.fill(3);
    let f = f.freeze();
    let mut m = Msg::new();
    m.push(f.clone());
    sp.send(&mut m).unwrap();
    assert_eq!(sp.in_flight(), 1);
    let t = std::time::Instant::now();
    let st = sp.close();
    assert!(t.elapsed() < Duration::from_secs(5), "bounded wait");
    assert_eq!(st.retired_on_close, 1);
    let recycled = cache.stats().recycled;
    drop((m, f));
    cache.drain();
    let cs = cache.stats();
    assert_eq!(cs.recycled, recycled, "a retired folio is never reused");
    assert_eq!(cs.retired, 1, "{cs:?}");
    drop(ns);
}

/// GSO segment size of the UDP lifetime test, and segments per datagram.
const SEG: usize = 1400;
const SEGS: usize = 18;

/// The UDP payload pattern: a cycle of 251 bytes (never the poison byte),
/// so a message's bytes are a slice of one precomputed buffer and the
/// sender fills pages with a memcpy, fast enough to outrun the link.
fn cycle_byte(x: usize) -> u8 {
    let v = (x % 251) as u8;
    if v == POISON {
        1
    } else {
        v
    }
}

/// Byte `p` of UDP message `i`: every segment starts with a tag (message,
/// segment) so the receiver can check each segment on its own, in any
/// order; the rest is the cycle, rotated per message.
fn udp_byte(i: u32, p: usize) -> u8 {
    let (k, q) = (p / SEG, p % SEG);
    match q {
        0..4 => i.to_be_bytes()[q],
        4..8 => (k as u32).to_be_bytes()[q - 4],
        _ => cycle_byte(i as usize * 131 + p),
    }
}

/// Bytes `from..from + len` of message `i`, built the fast way.
fn udp_bytes(cycle: &[u8], i: u32, from: usize, len: usize) -> Vec<u8> {
    let start = (i as usize * 131 + from) % 251;
    let mut v = cycle[start..start + len].to_vec();
    for k in from.div_ceil(SEG)..(from + len).div_ceil(SEG) {
        for q in 0..8 {
            if let Some(b) = (k * SEG + q).checked_sub(from).and_then(|x| v.get_mut(x)) {
                *b = udp_byte(i, k * SEG + q);
            }
        }
    }
    v
}

/// The UDP form of the test above: 25200-byte datagrams leave as 18 GSO
/// segments of 1400 bytes through the throttled link. The sender outruns
/// the link, so up to its send buffer (2 MiB, kept under the socket's
/// option memory for completions) of datagrams wait in the queue holding
/// their spliced pages while the sender churns its cache. The receiver
/// checks every byte of every segment, and that each segment arrives
/// exactly once: a page recycled early and refilled by a later message
/// carries that message's tags, so it shows as a duplicate, not as bad
/// bytes.
#[test]
fn udp_spliced_pages_outlive_a_slow_link() {
    let Some(ns) = Hosts::for_test("udp_spliced_pages_outlive_a_slow_link") else {
        return;
    };
    ns.set_mode(LinkMode::Throttle).expect("throttle");
    let messages = 640u32; // 16 MB: about 0.65 s at 200 Mbit/s
    let cycle: Vec<u8> = (0..251 + SEG * SEGS).map(cycle_byte).collect();
    let (tx, rx) = mpsc::channel();
    let cyc = cycle.clone();
    let receiver = ns.spawn_in(Side::Receiver, move || {
        let r = UdpSocket::bind((RECEIVER_V4, 0)).expect("bind");
        big_rcvbuf(&r);
        r.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        tx.send(r.local_addr().unwrap()).ok();
        let (mut bad, mut first_bad) = (0u64, None);
        let mut tally = Tally::new(messages as usize, SEGS);
        let mut buf = vec![0u8; 2 * SEG];
        // Until every segment has come, or none for 5 s (a lost or
        // never-sent segment).
        while !tally.is_complete() {
            let Ok(n) = r.recv(&mut buf) else { break };
            if n < 8 {
                bad += n as u64;
                continue;
            }
            let i = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let k = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
            tally.record(i.into(), k as u64);
            let want =
                (i < messages && k < SEGS && n == SEG).then(|| udp_bytes(&cyc, i, k * SEG, SEG));
            if want.as_deref() != Some(&buf[..n]) {
                for (q, &b) in buf[..n].iter().enumerate() {
                    if want.as_ref().and_then(|w| w.get(q)) != Some(&b) {
                        bad += 1;
                        first_bad.get_or_insert((i, k, q, b));
                    }
                }
            }
        }
        (tally, bad, first_bad)
    });
    let to: SocketAddr = rx.recv_timeout(Duration::from_secs(10)).expect("receiver");

    let sender = ns.spawn_in(Side::Sender, move || {
        let cache = FragCache::builder()
            .folio_size(64 << 10)
            .poison_recycled(POISON)
            .build()
            .unwrap();
        let copies = FragCache::builder()
            .poison_recycled(POISON)
            .build()
            .unwrap();
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        sock.connect(to).expect("connect");
        // 1 MiB, doubled by the kernel: about 80 datagrams in flight, each
        // holding a completion record in the socket's option memory
        // (optmem_max, 128 KiB: about 160 records).
        rustix::net::sockopt::set_socket_send_buffer_size_force(&sock, 1 << 20).expect("sndbuf");
        let mut sp = Builder::new()
            .on_copied(OnCopied::Keep)
            .gso_segment(SEG as u16)
            .frag_cache(copies)
            .build(sock)
            .unwrap();
        let mut most_in_flight = 0;
        for i in 0..messages {
            let mut f = cache.alloc(SEG * SEGS - 8, 64).unwrap();
            f.copy_from_slice(&udp_bytes(&cycle, i, 8, SEG * SEGS - 8));
            let f = f.freeze();
            let tag = udp_bytes(&cycle, i, 0, 8);
            let mut m = Msg::new();
            m.push(&tag[..]).push(f);
            // Only the Splicer keeps the page alive from here on.
            sp.send(&mut m).expect("send");
            most_in_flight = most_in_flight.max(sp.in_flight());
            // Churn: allocate and free more fragments from the same cache.
            let mut junk = cache.alloc(8 << 10, 1).unwrap();
            junk.fill(0x55);
        }
        let in_flight_at_end = sp.in_flight();
        assert!(sp.wait_completions(Duration::from_secs(30)).unwrap());
        assert_pages_released(&cache);
        let st = sp.stats();
        drop(sp);
        (st, in_flight_at_end, most_in_flight, cache.stats())
    });
    let (st, in_flight_at_end, most_in_flight, cs) = sender.join().expect("sender");
    let (tally, bad, first_bad) = receiver.join().expect("receiver");
    eprintln!(
        "splicer {st:?}\nin flight: {most_in_flight} at most, {in_flight_at_end} after the last send\ncache {cs:?}"
    );
    assert_eq!(
        bad, 0,
        "{bad} corrupted bytes, first (msg, segment, offset, byte) = {first_bad:?}"
    );
    tally.assert_exactly_once();
    assert_eq!(st.zerocopy_sends, u64::from(messages), "every page spliced");
    assert_eq!(st.completions, st.zerocopy_sends);
    assert!(
        in_flight_at_end > 0 && most_in_flight > 30,
        "pages waited in the queue"
    );
    assert!(
        cs.recycled > 0,
        "folios were recycled: the test could catch early reuse"
    );
}
