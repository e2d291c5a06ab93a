//! The io_uring engine: what arrives equals what was sent (random messages
//! of every segment kind over TCP v4/v6, Unix sockets and UDP, SPLICE on
//! and off, registered folios or not, short sends), the probe and the
//! fallback, and buffers held until their notification.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::Duration;

use common::{
    build, concat, pair, read_records, read_to_end, seg_of, uring_or_skip, SegSpec, Transport,
};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{Capability, ConnId, UringBuilder, UringError};
use msgsplice::{Engine, FragCache, Msg, UringSplicer};
use proptest::prelude::*;

/// A policy that uses zero-copy over loopback too (the default stops it
/// there, as the kernel copies anyway), with a low threshold so that many
/// runs of the random messages go zero-copy.
fn eager(splice: bool) -> Builder {
    Builder::new()
        .splice(splice)
        .on_copied(OnCopied::Keep)
        .skip_zerocopy_to_local_peers(false)
        .zerocopy_threshold(1024)
}

#[test]
fn probe_reports_this_kernel() {
    let (a, _b) = pair(Transport::Tcp4).unwrap();
    let Some(u) = uring_or_skip(UringBuilder::new(), a, "probe") else {
        return;
    };
    let p = u.probe();
    eprintln!("io_uring probe:\n{p}");
    assert!(
        p.sendmsg && p.sendmsg_zc,
        "the splicer exists only with both"
    );
    assert_eq!(p.fixed_sendmsg_zc, p.fixed_why.is_none(), "{p}");
}

/// A file of the test source's first MiB, for file ranges.
fn source_file() -> &'static std::fs::File {
    static F: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("msgsplice-uring-{}", std::process::id()));
        std::fs::write(&path, &common::source()[..1 << 20]).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    })
}

/// One message: its segments, and file ranges `(after segment, offset,
/// len)` of [`source_file`].
type Spec = (Vec<SegSpec>, Vec<(usize, u64, u64)>);

/// Pushes the segment `s` stands for, made as `common::build` makes it.
fn push_spec<'a>(m: &mut Msg<'a>, s: &'a SegSpec, cache: &FragCache) {
    let d = s.data();
    match *s {
        SegSpec::Frag { off, len, .. } => {
            let mut f = cache.alloc(off + len, 1).expect("alloc");
            f[off..].copy_from_slice(d);
            m.push(f.freeze().slice(off..));
        }
        SegSpec::Bytes { off, .. } => {
            let mut v = vec![0xA5u8; off];
            v.extend_from_slice(d);
            m.push(bytes::Bytes::from(v).slice(off..));
        }
        SegSpec::FragBytes { .. } => {
            m.push(bytes::Bytes::from(cache.memdup(d).expect("memdup")));
        }
        SegSpec::Borrowed { .. } => {
            m.push(d);
        }
        SegSpec::Owned { .. } => {
            m.push(d.to_vec());
        }
    }
}

/// Builds the message of `spec` and the bytes it stands for.
fn build_spec<'a>(spec: &'a Spec, cache: &FragCache) -> (Msg<'a>, Vec<u8>) {
    let (segs, files) = spec;
    let mut m = Msg::new();
    let mut want = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        push_spec(&mut m, s, cache);
        want.extend_from_slice(s.data());
        for &(_, off, len) in files.iter().filter(|f| f.0 == i) {
            m.push_file(source_file(), off, len);
            want.extend_from_slice(&common::source()[off as usize..(off + len) as usize]);
        }
    }
    (m, want)
}

/// Sends `msgs` over a fresh pair of `t` and returns what arrived and what
/// should have, with the splicer's counters.
fn stream_roundtrip(
    t: Transport,
    b: UringBuilder,
    msgs: &[Spec],
    cache: &FragCache,
    sndbuf: Option<usize>,
) -> Option<(Vec<u8>, Vec<u8>, msgsplice::SendStats)> {
    let (a, r) = pair(t).unwrap();
    if let Some(n) = sndbuf {
        rustix::net::sockopt::set_socket_send_buffer_size(&a, n).unwrap();
    }
    let reader = if t.is_record() {
        let h = read_records(r, msgs.len());
        std::thread::spawn(move || h.join().unwrap().map(|v| v.concat()))
    } else {
        read_to_end(r)
    };
    let mut u = uring_or_skip(b, a, "roundtrip")?;
    let mut want = Vec::new();
    for spec in msgs {
        let (mut m, w) = build_spec(spec, cache);
        let n = u.send(&mut m).expect("send");
        assert!(m.is_sent());
        assert_eq!(n, m.len());
        want.extend(w);
    }
    let st = u.close().remove(0);
    let got = reader.join().unwrap().unwrap();
    Some((got, want, st))
}

/// The same messages through the Splicer, for its counters.
fn splicer_stats(
    t: Transport,
    b: Builder,
    msgs: &[Spec],
    cache: &FragCache,
) -> msgsplice::SendStats {
    let (a, r) = pair(t).unwrap();
    let reader = read_to_end(r);
    let mut sp = b.build(a).unwrap();
    for spec in msgs {
        let (mut m, _) = build_spec(spec, cache);
        sp.send(&mut m).unwrap();
    }
    let st = sp.stats();
    drop(sp);
    reader.join().unwrap().unwrap();
    st
}

fn specs(files: bool) -> impl Strategy<Value = Vec<Spec>> {
    let seg = seg_of(prop_oneof![
        0usize..300,
        1000usize..40_000,
        60_000usize..200_000
    ]);
    let file = (0usize..7, 0u64..(1 << 19), 0u64..100_000);
    let nfiles = if files { 0..3 } else { 0..1 };
    let msg = (
        prop::collection::vec(seg, 1..7),
        prop::collection::vec(file, nfiles),
    );
    prop::collection::vec(msg, 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every byte arrives in order, file ranges in their place, with or
    /// without SPLICE, registered folios, and a small send buffer; the
    /// counters say what the Splicer's say for the same messages.
    #[test]
    fn streams_arrive_exactly(msgs in specs(true), t in 0usize..3, splice: bool,
                              bind: bool, small: bool) {
        let t = [Transport::Tcp4, Transport::Tcp6, Transport::UnixStream][t];
        let cache = FragCache::new();
        let mut b = UringBuilder::new().policy(eager(splice));
        if bind {
            b = b.bind_cache(cache.clone());
        }
        let sndbuf = small.then_some(4096);
        let Some((got, want, st)) = stream_roundtrip(t, b, &msgs, &cache, sndbuf) else {
            return Ok(());
        };
        prop_assert_eq!(got.len(), want.len());
        prop_assert!(got == want, "bytes differ");
        prop_assert_eq!(st.bytes_spliced + st.bytes_copied, want.len() as u64);
        prop_assert_eq!(st.messages, msgs.len() as u64);
        prop_assert_eq!(st.completions_pending, 0);
        if !splice || t == Transport::UnixStream {
            prop_assert_eq!(st.zerocopy_sends, 0);
        }
        if !small {
            let sp = splicer_stats(t, eager(splice), &msgs, &cache);
            prop_assert_eq!((st.bytes_spliced, st.bytes_copied), (sp.bytes_spliced, sp.bytes_copied));
        }
    }
}

/// Connected UDP sockets of one family, the receiver with a large buffer.
fn udp_pair(ip: std::net::IpAddr) -> (UdpSocket, UdpSocket) {
    let rx = common::udp_receiver(ip).unwrap();
    let tx = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    tx.connect(rx.local_addr().unwrap()).unwrap();
    (tx, rx)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Each message is one datagram, whole, over IPv4 and IPv6, and over
    /// Unix seqpacket sockets.
    #[test]
    fn datagrams_arrive_whole(msgs in prop::collection::vec(
            prop::collection::vec(seg_of(prop_oneof![0usize..200, 1000usize..12_000]), 1..5), 1..6),
            v6: bool, splice: bool, bind: bool, seqpacket: bool) {
        let cache = FragCache::new();
        let mut b = UringBuilder::new().policy(eager(splice));
        if bind {
            b = b.bind_cache(cache.clone());
        }
        let want: Vec<Vec<u8>> = msgs.iter().map(|m| concat(m)).collect();
        if seqpacket {
            let specs: Vec<Spec> = msgs.iter().map(|m| (m.clone(), Vec::new())).collect();
            let Some((got, _, st)) = stream_roundtrip(Transport::UnixSeqpacket, b, &specs, &cache, None) else {
                return Ok(());
            };
            prop_assert!(got == want.concat());
            prop_assert_eq!(st.messages, msgs.len() as u64);
            return Ok(());
        }
        let ip: std::net::IpAddr = if v6 { Ipv6Addr::LOCALHOST.into() } else { Ipv4Addr::LOCALHOST.into() };
        let (tx, rx) = udp_pair(ip);
        let Some(mut u) = uring_or_skip(b, OwnedFd::from(tx), "udp") else {
            return Ok(());
        };
        for specs in &msgs {
            let mut m = build(specs, &cache);
            u.send(&mut m).expect("send");
            prop_assert!(m.is_sent());
        }
        let got = common::recv_datagrams(&rx, msgs.len()).unwrap();
        prop_assert_eq!(got, want);
        let st = u.close().remove(0);
        prop_assert_eq!(st.messages, msgs.len() as u64);
    }
}

/// A GSO segment size from the policy cuts each message into datagrams of
/// that size, by the kernel, with the last one shorter; zero-copy or not,
/// registered folios or not. A stream socket refuses the setting.
#[test]
fn gso_cuts_each_message_into_segments() {
    for (splice, bind) in [(false, false), (true, false), (true, true)] {
        let tag = format!("gso splice={splice} bind={bind}");
        let cache = FragCache::new();
        let mut b = UringBuilder::new().policy(eager(splice).gso_segment(500));
        if bind {
            b = b.bind_cache(cache.clone());
        }
        let (tx, rx) = udp_pair(Ipv4Addr::LOCALHOST.into());
        let Some(mut u) = uring_or_skip(b, OwnedFd::from(tx), &tag) else {
            return;
        };
        let payload: Vec<u8> = (0..20_250u32).map(|i| (i % 251) as u8).collect();
        let mut m = Msg::new();
        m.push(&payload[..100])
            .push(cache.memdup(&payload[100..]).unwrap());
        u.send(&mut m).expect("send");
        let got = common::recv_datagrams(&rx, 41).unwrap();
        let lens: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lens, [vec![500; 40], vec![250]].concat(), "{tag}");
        assert_eq!(got.concat(), payload, "{tag}");
        // Over the kernel's limit of segments per send (130 of 128):
        // refused before anything is sent.
        let big = cache.memdup(&vec![1u8; 65_000]).unwrap();
        let mut m = Msg::new();
        m.push(big);
        let e = u.send(&mut m).unwrap_err();
        assert!(
            matches!(e, msgsplice::SendError::TooManySegments { .. }),
            "{tag}: {e}"
        );
        assert_eq!(m.sent(), 0);
    }
    let (a, _b) = pair(Transport::Tcp4).unwrap();
    let b = UringBuilder::new().policy(Builder::new().gso_segment(1000));
    match b.build(a) {
        Err(UringError::Socket(msgsplice::SendError::UdpOnly { .. })) => {}
        Err(UringError::Unsupported { .. }) => {}
        other => panic!("GSO on a TCP socket: {other:?}"),
    }
}

/// A bound cache's folios are registered as they are mapped, sends from
/// them go by registered buffers, and unmapping them takes them out of the
/// table.
#[test]
fn registered_folios_carry_the_sends() {
    let cache = FragCache::new();
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let reader = read_to_end(r);
    let b = UringBuilder::new()
        .policy(eager(true))
        .bind_cache(cache.clone());
    let Some(mut u) = uring_or_skip(b, a, "registered") else {
        return;
    };
    if !u.probe().fixed_sendmsg_zc {
        msgsplice_testkit::skip::skip_unsupported("registered_folios_carry_the_sends", u.probe());
        return;
    }
    let mut want = Vec::new();
    for i in 0..20u8 {
        let head = cache.memdup(&[i; 64]).unwrap();
        let body = cache.memdup(&[i ^ 0x5a; 20_000]).unwrap(); // same folio
        let big = cache.memdup(&vec![i; 100_000]).unwrap(); // a mapping of its own
        let mut m = Msg::new();
        m.push(head).push(body).push(&b"trailer"[..]).push(big);
        want.extend(
            m.segments()
                .iter()
                .flat_map(|s| s.as_memory().unwrap().to_vec()),
        );
        u.send(&mut m).unwrap();
    }
    let us = u.uring_stats();
    assert!(us.folios_registered >= 2, "{us:?}");
    assert!(us.fixed_sends >= 20, "{us:?}");
    assert!(u.wait(Duration::from_secs(5)).unwrap(), "notifications");
    drop(u);
    assert_eq!(reader.join().unwrap().unwrap(), want);
    cache.drain();
    assert_eq!(cache.stats().folios_live, 0);
}

/// Messages for several sockets go in the same rounds, one
/// `io_uring_enter` for all of them, and each socket gets its own bytes.
#[test]
fn many_sockets_one_enter() {
    let cache = FragCache::new();
    let (a0, r0) = pair(Transport::Tcp4).unwrap();
    let Some(mut u) = uring_or_skip(UringBuilder::new().policy(eager(true)), a0, "many") else {
        return;
    };
    let mut ids = vec![ConnId::FIRST];
    let mut readers = vec![read_to_end(r0)];
    for t in [Transport::Tcp6, Transport::UnixStream, Transport::Tcp4] {
        let (a, r) = pair(t).unwrap();
        ids.push(u.add(a).unwrap());
        readers.push(read_to_end(r));
    }
    let data: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; 30_000]).collect();
    let mut msgs: Vec<Msg<'_>> = data
        .iter()
        .map(|d| {
            let mut m = Msg::new();
            m.push(cache.memdup(d).unwrap()).push(&b"end"[..]);
            m
        })
        .collect();
    let before = u.uring_stats().enters;
    let mut batch: Vec<(ConnId, &mut Msg<'_>)> = ids.iter().copied().zip(msgs.iter_mut()).collect();
    for r in u.send_many(&mut batch) {
        assert_eq!(r.unwrap(), 30_003);
    }
    let enters = u.uring_stats().enters - before;
    assert!(
        enters < 4,
        "one round for four sockets, not one each: {enters}"
    );
    drop(u);
    for (d, r) in data.iter().zip(readers) {
        let got = r.join().unwrap().unwrap();
        assert_eq!(&got[..30_000], &d[..]);
        assert_eq!(&got[30_000..], b"end");
    }
}

/// A refused capability says what and why; Engine::best then falls back
/// to the Splicer, which still sends.
#[test]
fn fallback_says_why() {
    for what in [Capability::Ring, Capability::SendMsgZc] {
        let (a, r) = pair(Transport::Tcp4).unwrap();
        let reader = read_to_end(r);
        let b = UringBuilder::new().pretend_missing(what);
        let mut e = Engine::best_with(b, a).unwrap();
        let why = e.fallback_reason().expect("a fallback").to_string();
        eprintln!("{what:?}: {why}");
        assert!(why.contains("pretended missing"), "{why}");
        assert!(matches!(e, Engine::Splicer { .. }));
        let mut m = Msg::new();
        m.push(&b"still sent"[..]);
        e.send(&mut m).unwrap();
        drop(e);
        assert_eq!(reader.join().unwrap().unwrap(), b"still sent");
    }
    // Without registered-buffer sends the engine stays, unregistered.
    let cache = FragCache::new();
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let reader = read_to_end(r);
    let b = UringBuilder::new()
        .policy(eager(true))
        .bind_cache(cache.clone())
        .pretend_missing(Capability::FixedSendMsg);
    let Some(mut u) = uring_or_skip(b, a, "fallback") else {
        return;
    };
    assert!(!u.probe().fixed_sendmsg_zc);
    assert!(u.probe().to_string().contains("pretended missing"));
    let mut m = Msg::new();
    m.push(cache.memdup(&[9u8; 50_000]).unwrap());
    u.send(&mut m).unwrap();
    assert_eq!(u.uring_stats().fixed_sends, 0);
    assert_eq!(u.stats(ConnId::FIRST).zerocopy_sends, 1);
    drop(u);
    assert_eq!(reader.join().unwrap().unwrap(), vec![9u8; 50_000]);
}

/// By default zero-copy does not start to a peer on this host (the
/// kernel would copy), as with the Splicer.
#[test]
fn local_peer_is_copied_by_default() {
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let reader = read_to_end(r);
    let Some(mut u) = uring_or_skip(UringBuilder::new(), a, "local") else {
        return;
    };
    let mut m = Msg::new();
    m.push(FragCache::global().memdup(&[3u8; 64 << 10]).unwrap());
    u.send(&mut m).unwrap();
    let st = u.stats(ConnId::FIRST);
    assert!(st.zerocopy_local_peer && st.zerocopy_stopped, "{st:?}");
    assert_eq!((st.zerocopy_sends, st.bytes_copied), (0, 64 << 10));
    drop(u);
    assert_eq!(reader.join().unwrap().unwrap().len(), 64 << 10);
}

/// Fills the connection of a [`common::squeezed`] sender until the
/// receiver's buffer is full and its window closed, then gives the sender
/// a large send buffer: what is sent next waits in the sender's queue, its
/// pages held by the kernel, until the gate opens. Returns the filler
/// bytes written (zeros).
fn close_the_window(a: &OwnedFd) -> usize {
    let chunk = [0u8; 64 << 10];
    let mut filled = 0;
    for _ in 0..500 {
        let mut wrote = false;
        while let Ok(n) = rustix::io::write(a, &chunk) {
            filled += n;
            wrote = true;
        }
        if !wrote {
            rustix::net::sockopt::set_socket_send_buffer_size(a, 128 << 10).unwrap();
            return filled;
        }
        // The receiver may still be taking in what was queued.
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the receiver's window never closed");
}

/// A zero-copy send that the peer has not read yet keeps its fragments
/// (and so their folio) alive after the caller dropped every handle; once
/// the peer reads and the notification comes, they are released. On a
/// non-blocking socket the send stops short and resumes at the exact byte.
#[test]
fn fragments_are_held_until_the_notification() {
    let cache = FragCache::builder().poison_recycled(0xEE).build().unwrap();
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let (mut gate, reader) = common::squeezed(&a, r);
    let filler = close_the_window(&a);
    let Some(mut u) = uring_or_skip(UringBuilder::new().policy(eager(true)), a, "hold") else {
        return;
    };
    let data: Vec<u8> = (0..660_000u32).map(|i| (i % 251) as u8).collect();
    // A whole message whose only fragment (a mapping of its own) then
    // loses its last handle outside the splicer.
    let mut m = Msg::new();
    m.push(cache.memdup(&data[..60_000]).unwrap());
    u.send(&mut m).unwrap();
    assert!(m.is_sent(), "the enlarged send buffer takes 60 KB");
    drop(m);
    assert!(u.in_flight() > 0, "its pages wait behind the closed window");
    assert_eq!(cache.stats().folios_live, 1, "held by the splicer alone");
    // A message too large for the buffers: sent in part, resumed later.
    let mut m = Msg::new();
    m.push(cache.memdup(&data[60_000..260_000]).unwrap())
        .push(&data[260_000..260_100])
        .push(cache.memdup(&data[260_100..]).unwrap());
    let first = match u.send(&mut m) {
        Ok(n) => n,
        Err(msgsplice::SendError::WouldBlock) => 0,
        Err(e) => panic!("{e}"),
    };
    assert!(!m.is_sent(), "nobody reads: the buffers cannot take 600 KB");
    assert_eq!(first, m.sent());
    assert!(first > 0, "the first send took what the buffers hold");
    gate.open();
    let mut sent = 60_000 + first;
    while !m.is_sent() {
        match u.send(&mut m) {
            Ok(n) => sent += n,
            Err(msgsplice::SendError::WouldBlock) => {
                common::wait_writable(u.get_ref(ConnId::FIRST).unwrap())
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(sent, data.len() as u64);
    drop(m);
    assert!(
        u.wait(Duration::from_secs(10)).unwrap(),
        "every notification came"
    );
    cache.drain();
    assert_eq!(
        cache.stats().folios_live,
        0,
        "released after the notifications"
    );
    assert_eq!(cache.stats().retired, 0);
    drop(u);
    let got = reader.join().unwrap().unwrap();
    assert!(got[..filler].iter().all(|&b| b == 0));
    assert!(got[filler..] == data[..]);
}

/// Closing with notifications still due waits a bounded time, then
/// retires the fragments' folios: unmapped when free, never reused.
#[test]
fn closing_with_sends_in_flight_retires_their_folios() {
    let cache = FragCache::new();
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let (mut gate, reader) = common::squeezed(&a, r);
    close_the_window(&a);
    let b = UringBuilder::new().policy(eager(true).drain_timeout(Duration::from_millis(50)));
    let Some(mut u) = uring_or_skip(b, a, "close") else {
        return;
    };
    let mut m = Msg::new();
    m.push(cache.memdup(&vec![1u8; 300_000]).unwrap());
    let _ = u.send(&mut m);
    assert!(u.in_flight() > 0);
    drop(m);
    let st = u.close().remove(0);
    assert!(st.retired_on_close > 0, "{st:?}");
    gate.open();
    let _ = reader.join();
    cache.drain();
    let fs = cache.stats();
    assert!(fs.retired >= 1, "{fs:?}");
}

/// The notifications' usage reports feed the Splicer's COPIED rule: over
/// loopback every zero-copy send is copied by the kernel, so after
/// `StopAfter(n)` such reports the socket sends by plain copy.
#[test]
fn copied_reports_stop_zero_copy() {
    let (a, r) = pair(Transport::Tcp4).unwrap();
    let reader = read_to_end(r);
    let policy = Builder::new()
        .on_copied(OnCopied::StopAfter(4))
        .skip_zerocopy_to_local_peers(false)
        .zerocopy_threshold(1024);
    let Some(mut u) = uring_or_skip(UringBuilder::new().policy(policy), a, "copied") else {
        return;
    };
    let page = FragCache::global().memdup(&[5u8; 16 << 10]).unwrap();
    let send = |u: &mut UringSplicer<OwnedFd>| {
        let mut m = Msg::new();
        m.push(page.clone());
        u.send(&mut m).unwrap();
    };
    for _ in 0..4 {
        send(&mut u);
    }
    assert!(u.wait(Duration::from_secs(5)).unwrap());
    let st = u.stats(ConnId::FIRST);
    assert_eq!((st.zerocopy_sends, st.completions_copied), (4, 4), "{st:?}");
    assert!(st.zerocopy_stopped, "{st:?}");
    send(&mut u);
    let st = u.stats(ConnId::FIRST);
    assert_eq!(st.zerocopy_sends, 4, "copied once stopped");
    assert_eq!(st.bytes_copied, 16 << 10);
    drop(u);
    assert_eq!(reader.join().unwrap().unwrap().len(), 5 * (16 << 10));
}

/// A message of no bytes on a datagram socket is one empty datagram, as
/// with the Splicer: with no segment at all, and with empty ones; and on
/// a stream socket it sends nothing.
#[test]
fn an_empty_message_is_an_empty_datagram() {
    let (tx, rx) = udp_pair(Ipv4Addr::LOCALHOST.into());
    let Some(mut u) = uring_or_skip(UringBuilder::new(), OwnedFd::from(tx), "empty datagram")
    else {
        return;
    };
    let mut none = Msg::new();
    assert_eq!(u.send(&mut none).expect("send"), 0);
    let mut empty = Msg::new();
    empty.push(&b""[..]).push(&b""[..]);
    assert_eq!(u.send(&mut empty).expect("send"), 0);
    let mut one = Msg::new();
    one.push(&b"x"[..]);
    u.send(&mut one).expect("send");
    let got = common::recv_datagrams(&rx, 3).unwrap();
    assert_eq!(got, vec![Vec::new(), Vec::new(), b"x".to_vec()]);
    assert_eq!(u.stats(ConnId::FIRST).messages, 3);

    let (a, b) = pair(Transport::UnixSeqpacket).unwrap();
    let reader = read_records(b, 2);
    let Some(mut u) = uring_or_skip(UringBuilder::new(), a, "empty record") else {
        return;
    };
    u.send(&mut Msg::new()).expect("send");
    let mut one = Msg::new();
    one.push(&b"y"[..]);
    u.send(&mut one).expect("send");
    drop(u);
    assert_eq!(
        reader.join().unwrap().unwrap(),
        vec![Vec::new(), b"y".to_vec()]
    );

    let (a, b) = pair(Transport::Tcp4).unwrap();
    let Some(mut u) = uring_or_skip(UringBuilder::new(), a, "empty stream") else {
        return;
    };
    assert_eq!(u.send(&mut Msg::new()).expect("send"), 0);
    assert_eq!(u.stats(ConnId::FIRST).messages, 1);
    drop(u);
    assert!(read_to_end(b).join().unwrap().unwrap().is_empty());
}
