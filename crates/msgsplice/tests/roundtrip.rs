//! What arrives equals what was sent: random messages of every segment kind
//! over TCP v4, TCP v6, Unix stream and Unix seqpacket, with SPLICE on and
//! off, on blocking sockets and on non-blocking ones with a small send
//! buffer (to force short writes and resumption mid-segment).

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::{
    build, concat, pair, read_records, read_to_end, seg_of, send_all, send_squeezed, squeezed,
    SegSpec, Transport,
};
use msgsplice::send::Builder;
use msgsplice::{FragCache, Splicer};
use proptest::prelude::*;

fn seg(max: usize) -> impl Strategy<Value = SegSpec> {
    let len = prop_oneof![
        2 => Just(0usize),
        6 => 1usize..64,
        5 => 64usize..4096,
        3 => 4096usize..(64 << 10),
        1 => (64usize << 10)..=(1 << 20),
    ]
    .prop_map(move |n| n.min(max));
    seg_of(len)
}

/// Up to 4 messages of 0 to 64 segments. Records must fit one datagram.
fn messages(record: bool) -> impl Strategy<Value = Vec<Vec<SegSpec>>> {
    let max = if record { 16 << 10 } else { 1 << 20 };
    let segs = if record { 0..12usize } else { 0..65usize };
    prop::collection::vec(prop::collection::vec(seg(max), segs), 1..4)
}

#[derive(Clone, Copy, Debug)]
struct Mode {
    splice: bool,
    /// Non-blocking with a small SO_SNDBUF.
    squeeze: bool,
}

fn run(t: Transport, mode: Mode, msgs: &[Vec<SegSpec>]) -> Result<(), TestCaseError> {
    let (tx, rx) = match pair(t) {
        Ok(p) => p,
        Err(e) if t == Transport::Tcp6 => {
            msgsplice_testkit::skip::skip_unsupported("roundtrip over tcp6", e);
            return Ok(());
        }
        Err(e) => panic!("socket pair: {e}"),
    };
    if mode.squeeze {
        rustix::io::ioctl_fionbio(&tx, true).expect("non-blocking");
        if !t.is_record() {
            rustix::net::sockopt::set_socket_send_buffer_size(&tx, 4096).expect("sndbuf");
        }
    }
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .splice(mode.splice)
        // Zero-copy over loopback too (until COPIED reports stop it), so
        // the random messages exercise the zero-copy path.
        .skip_zerocopy_to_local_peers(false)
        .frag_cache(cache.clone())
        .build(tx)
        .expect("splicer");
    let recv_stream = (!t.is_record()).then(|| read_to_end(rx.try_clone().unwrap()));
    let recv_records = t.is_record().then(|| read_records(rx, msgs.len()));

    let mut total = 0u64;
    for specs in msgs {
        let mut m = build(specs, &cache);
        total += m.len();
        send_all(&mut sp, &mut m).expect("send");
        prop_assert!(m.is_sent());
    }
    let st = sp.stats();
    prop_assert_eq!(st.messages, msgs.len() as u64);
    prop_assert_eq!(st.bytes_spliced + st.bytes_copied, total);
    if !mode.splice || t != Transport::Tcp4 && t != Transport::Tcp6 {
        prop_assert_eq!(st.zerocopy_sends, 0);
    }
    prop_assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    let st = sp.stats();
    prop_assert_eq!(st.completions, st.zerocopy_sends);
    prop_assert_eq!(st.unexpected_completions, 0);
    drop(sp);

    if let Some(h) = recv_stream {
        let got = h.join().unwrap().expect("read");
        let want: Vec<u8> = msgs.iter().flat_map(|m| concat(m)).collect();
        prop_assert_eq!(got.len(), want.len());
        prop_assert!(got == want, "bytes differ");
    }
    if let Some(h) = recv_records {
        let got = h.join().unwrap().expect("recv");
        for (g, m) in got.iter().zip(msgs) {
            prop_assert!(*g == concat(m), "record differs");
        }
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

macro_rules! roundtrip {
    ($name:ident, $t:expr, $splice:expr, $squeeze:expr, $cases:expr) => {
        proptest! {
            #![proptest_config(config($cases))]
            #[test]
            fn $name(msgs in messages($t.is_record())) {
                run($t, Mode { splice: $splice, squeeze: $squeeze }, &msgs)?;
            }
        }
    };
}

roundtrip!(tcp4_splice, Transport::Tcp4, true, false, 12);
roundtrip!(tcp4_copy, Transport::Tcp4, false, false, 8);
roundtrip!(tcp4_splice_short_writes, Transport::Tcp4, true, true, 10);
roundtrip!(tcp4_copy_short_writes, Transport::Tcp4, false, true, 6);
roundtrip!(tcp6_splice, Transport::Tcp6, true, false, 8);
roundtrip!(tcp6_copy, Transport::Tcp6, false, false, 4);
roundtrip!(tcp6_splice_short_writes, Transport::Tcp6, true, true, 6);
roundtrip!(unix_stream_splice, Transport::UnixStream, true, false, 8);
roundtrip!(unix_stream_copy, Transport::UnixStream, false, false, 4);
roundtrip!(
    unix_stream_short_writes,
    Transport::UnixStream,
    true,
    true,
    8
);
roundtrip!(
    unix_seqpacket_splice,
    Transport::UnixSeqpacket,
    true,
    false,
    12
);
roundtrip!(
    unix_seqpacket_copy,
    Transport::UnixSeqpacket,
    false,
    false,
    6
);
roundtrip!(
    unix_seqpacket_nonblocking,
    Transport::UnixSeqpacket,
    true,
    true,
    8
);

/// Short writes really happen in the squeezed mode, so resumption is
/// exercised, and a message of far more than IOV_MAX segments arrives whole.
#[test]
fn short_writes_resume_exactly_across_segments() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let (mut gate, h) = squeezed(&tx, rx);
    let cache = FragCache::new();
    // 3000 segments of 1..=700 bytes, alternating kinds: > 2 x IOV_MAX.
    let specs: Vec<SegSpec> = (0..3000)
        .map(|i| {
            let len = 1 + (i * 7919) % 700;
            match i % 3 {
                0 => SegSpec::Frag {
                    len,
                    off: i % 13,
                    at: i * 31,
                },
                1 => SegSpec::Borrowed { len, at: i * 17 },
                _ => SegSpec::Bytes {
                    len,
                    off: 1,
                    at: i * 5,
                },
            }
        })
        .collect();
    let want = concat(&specs);
    let mut sp = Builder::new()
        .zerocopy_threshold(0)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let mut m = build(&specs, &cache);
    send_squeezed(&mut sp, &mut m, &mut gate).unwrap();
    assert!(sp.stats().syscalls >= 3, "beyond IOV_MAX the run is split");
    drop(sp);
    let got = h.join().unwrap().unwrap();
    assert!(got == want);
}

/// A seqpacket message of more than IOV_MAX segments is still one record.
#[test]
fn record_of_many_segments_is_one_record() {
    let (tx, rx) = pair(Transport::UnixSeqpacket).unwrap();
    let specs: Vec<SegSpec> = (0..1500)
        .map(|i| SegSpec::Borrowed { len: 3, at: i })
        .collect();
    let h = read_records(rx, 1);
    let mut sp = Splicer::new(tx.as_fd()).unwrap();
    let mut m = build(&specs, FragCache::global());
    sp.send(&mut m).unwrap();
    assert_eq!(h.join().unwrap().unwrap()[0], concat(&specs));
}
