//! The io_uring engine's common case, once warmed up: no heap allocation
//! per message (only growth when more is in flight than ever before) and
//! one `io_uring_enter` per round, for a single send and for a round of
//! many sockets. Counted with the test kit's allocator,
//! which counts per thread, so only the sending thread's loop is measured.

mod common;

use std::os::fd::OwnedFd;

use common::{pair, uring_or_skip, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{ConnId, UringBuilder};
use msgsplice::{FragCache, Msg, UringSplicer};
use msgsplice_testkit::alloc::{count_allocs, installed, CountingAlloc};

#[global_allocator]
static A: CountingAlloc = CountingAlloc;

/// A reader thread that counts the bytes of `rx` until its end.
fn drain(rx: OwnedFd) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        while let Ok(k) = rustix::io::read(&rx, &mut buf[..]) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    })
}

/// 128 B header (borrowed) + payload frag + 8 B trailer (borrowed) over
/// TCP loopback: copied (4 KiB), zero-copy (16 KiB), and zero-copy from
/// registered folios (16 KiB).
#[test]
fn no_allocation_per_message() {
    for (payload, registered) in [(4 << 10, false), (16 << 10, false), (16 << 10, true)] {
        let tag = format!("uring steady state {payload} registered={registered}");
        let (tx, rx) = pair(Transport::Tcp4).unwrap();
        let reader = drain(rx);
        let cache = FragCache::new();
        let policy = Builder::new()
            .on_copied(OnCopied::Keep)
            .skip_zerocopy_to_local_peers(false)
            .frag_cache(cache.clone());
        let mut b = UringBuilder::new().policy(policy);
        if registered {
            b = b.bind_cache(cache.clone());
        }
        let Some(mut sp) = uring_or_skip(b, tx, &tag) else {
            return;
        };
        let hdr = [7u8; 128];
        let trailer = [9u8; 8];
        let page = cache.memdup(&vec![1u8; payload]).unwrap();
        let mut send = |n: usize| {
            for _ in 0..n {
                let mut m = Msg::new();
                m.push(&hdr[..]).push(page.clone()).push(&trailer[..]);
                sp.send(&mut m).unwrap();
            }
        };
        send(3000);
        assert!(installed(), "the counting allocator is in place");
        let ((), allocs) = count_allocs(|| send(2000));
        let st = sp.stats(ConnId::FIRST);
        let us = sp.uring_stats();
        drop(sp);
        let got = reader.join().unwrap();
        assert_eq!(got, 5000 * (136 + payload as u64), "{tag}");
        // Nothing per message. What may still allocate is growth past the
        // warm-up's high-water mark: when notifications come late, more
        // sends are in flight at once than ever before, and the tracker's
        // queues (which double), the completion list or the frag cache
        // (one folio) grow, a few times at most.
        eprintln!("{tag}: {allocs} heap allocations over 2000 messages");
        assert!(
            allocs <= 8,
            "{tag}: {allocs} heap allocations over 2000 messages"
        );
        assert_eq!(st.messages, 5000, "{tag}");
        if payload >= 16 << 10 {
            // One zero-copy entry per message, more where a send was short.
            assert!(st.zerocopy_sends >= 5000, "{tag}: {st:?}");
        } else {
            assert_eq!(st.zerocopy_sends, 0, "{tag}: {st:?}");
        }
        if registered {
            assert!(us.fixed_sends >= 5000, "{tag}: {us:?}");
        }
    }
}

/// A round over 16 sockets: one message each, one `send_many` per round.
/// The call's own list of results is the only allocation (one per round,
/// not per message).
#[test]
fn a_round_of_many_sockets_allocates_per_round_not_per_message() {
    const SOCKS: usize = 16;
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let mut readers = vec![drain(rx)];
    let cache = FragCache::new();
    let policy = Builder::new()
        .on_copied(OnCopied::Keep)
        .skip_zerocopy_to_local_peers(false)
        .frag_cache(cache.clone());
    let b = UringBuilder::new().policy(policy);
    let Some(mut sp) = uring_or_skip(b, tx, "uring steady state, many sockets") else {
        return;
    };
    let mut ids = vec![ConnId::FIRST];
    for _ in 1..SOCKS {
        let (tx, rx) = pair(Transport::Tcp4).unwrap();
        readers.push(drain(rx));
        ids.push(sp.add(tx).unwrap());
    }
    let hdr = [7u8; 128];
    let page = cache.memdup(&vec![1u8; 16 << 10]).unwrap();
    let rounds = |sp: &mut UringSplicer<OwnedFd>, n: usize| {
        for _ in 0..n {
            let mut msgs: [Msg<'_>; SOCKS] = std::array::from_fn(|_| {
                let mut m = Msg::new();
                m.push(&hdr[..]).push(page.clone());
                m
            });
            let mut list: [(ConnId, &mut Msg<'_>); SOCKS] = {
                let mut it = msgs.iter_mut().zip(&ids);
                std::array::from_fn(|_| {
                    let (m, id) = it.next().unwrap();
                    (*id, m)
                })
            };
            for r in sp.send_many(&mut list) {
                r.unwrap();
            }
        }
    };
    rounds(&mut sp, 300);
    let enters0 = sp.uring_stats().enters;
    let ((), allocs) = count_allocs(|| rounds(&mut sp, 200));
    let enters = sp.uring_stats().enters - enters0;
    drop(sp);
    let got: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(got, 500 * SOCKS as u64 * (128 + (16 << 10)));
    assert!(
        allocs <= 200 * 2,
        "{allocs} heap allocations over 200 rounds of {SOCKS} messages"
    );
    let per_msg = enters as f64 / (200 * SOCKS) as f64;
    eprintln!("{allocs} allocations, {per_msg:.3} enters per message over 200 rounds");
    // One enter per round is 1/16 per message; a round whose sockets are
    // full waits for their completions with more. Far from one per
    // message either way, which is what sending each alone would cost.
    assert!(per_msg <= 0.5, "{per_msg} io_uring_enter calls per message");
}
