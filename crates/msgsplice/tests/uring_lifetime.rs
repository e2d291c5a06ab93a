//! Pages sent by the io_uring engine are never recycled while the kernel
//! may still read them, registered folios included.
//!
//! The test kit's two hosts, with the sending side of their link throttled
//! (`tc tbf`), so zero-copy pages wait in a slow queue. The
//! sender allocates every message from a cache that poisons each recycled
//! folio and drops its handles right after the send; the receiver checks
//! every byte. A folio recycled before its notification would put poison
//! (or newer data) on the wire. Needs root, `ip` and `tc` (a counted skip
//! otherwise, a failure in CI as root). Traffic stays inside the hosts'
//! namespaces, which are removed at the end (also on panic).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{ConnId, UringBuilder, UringError};
use msgsplice::{FragCache, Msg};
use msgsplice_testkit::hosts::{Hosts, LinkMode, Side, RECEIVER_V4};

const POISON: u8 = 0xEE;
const PAYLOAD: usize = 24 << 10;
const MESSAGES: u32 = 400;

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

#[test]
fn registered_pages_outlive_a_slow_link() {
    const TEST: &str = "registered_pages_outlive_a_slow_link";
    let Some(link) = Hosts::for_test(TEST) else {
        return;
    };
    link.set_mode(LinkMode::Throttle)
        .expect("throttle the link");
    let (tx, rx) = mpsc::channel();
    let receiver = link.spawn_in(Side::Receiver, move || {
        let l = TcpListener::bind((RECEIVER_V4, 0)).unwrap();
        tx.send(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut bad = 0u64;
        let mut buf = vec![0u8; 8 + PAYLOAD];
        for i in 0..MESSAGES {
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf[..4], i.to_be_bytes(), "header of message {i}");
            bad += buf[8..]
                .iter()
                .enumerate()
                .filter(|&(j, &b)| b != pattern(i, j))
                .count() as u64;
        }
        bad
    });
    let addr: SocketAddr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let sender = link.spawn_in(Side::Sender, move || {
        let cache = FragCache::builder()
            .poison_recycled(POISON)
            .build()
            .unwrap();
        let policy = Builder::new()
            .on_copied(OnCopied::Keep)
            .skip_zerocopy_to_local_peers(false)
            .drain_timeout(Duration::from_secs(20));
        let b = UringBuilder::new().policy(policy).bind_cache(cache.clone());
        let sock = TcpStream::connect(addr).unwrap();
        let mut u = match b.build(sock) {
            Ok(u) => u,
            Err(e @ UringError::Unsupported { .. }) => {
                msgsplice_testkit::skip::skip_unsupported(TEST, e);
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        for i in 0..MESSAGES {
            let mut head = cache.alloc(8, 8).unwrap();
            head[..4].copy_from_slice(&i.to_be_bytes());
            head[4..].fill(0);
            let mut body = cache.alloc(PAYLOAD, 64).unwrap();
            for (j, b) in body.iter_mut().enumerate() {
                *b = pattern(i, j);
            }
            let mut m = Msg::new();
            m.push(head.freeze()).push(body.freeze());
            u.send(&mut m).unwrap();
            // The message's handles go now: only the splicer holds them.
        }
        let st = u.stats(ConnId::FIRST);
        let us = u.uring_stats();
        assert!(u.wait(Duration::from_secs(20)).unwrap(), "notifications");
        drop(u);
        cache.drain();
        Some((st, us, cache.stats()))
    });
    let sent = sender.join().unwrap();
    let bad = receiver.join().unwrap();
    drop(link);
    let Some((st, us, fs)) = sent else { return };
    eprintln!("{st:?}\n{us:?}\n{fs:?}");
    assert_eq!(bad, 0, "bytes from recycled folios reached the wire");
    assert!(st.zerocopy_sends > 0, "zero-copy was used");
    assert!(us.fixed_sends > 0, "registered folios were used");
    assert!(fs.recycled > 0, "folios were recycled meanwhile");
}
