//! A burst of notifications larger than the ring's completion queue: the
//! kernel keeps the excess aside (`IORING_SQ_CQ_OVERFLOW`) and hands it
//! over only at an `io_uring_enter`. The engine must fetch it, or a send
//! waiting for its completion behind the burst never returns and the
//! burst's buffers are never let go.
//!
//! A small ring (8 entries, so a 32-entry completion queue), zero-copy
//! sends of 16 KiB over TCP loopback to a reader that first lets the
//! socket fill (the sender then waits in the kernel with hundreds of sends
//! in flight) and then reads everything at once, which frees the pages of
//! all those sends together.

mod common;

use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::time::Duration;

use common::{pair, uring_or_skip, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{ConnId, UringBuilder};
use msgsplice::{FragCache, Msg, UringSplicer};

const MESSAGES: u64 = 2000;
const PAYLOAD: usize = 16 << 10;

#[test]
fn a_burst_of_notifications_over_the_completion_queue_is_fetched() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let cache = FragCache::new();
    let policy = Builder::new()
        .on_copied(OnCopied::Keep)
        .skip_zerocopy_to_local_peers(false)
        .frag_cache(cache.clone());
    let b = UringBuilder::new().entries(8).policy(policy);
    let Some(mut sp): Option<UringSplicer<OwnedFd>> = uring_or_skip(b, tx, "uring overflow") else {
        return;
    };
    let reader = std::thread::spawn(move || {
        // Let the sender fill the socket and wait in the kernel.
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = vec![0u8; 8 << 20];
        let mut n = 0u64;
        while let Ok(k) = rustix::io::read(&rx, &mut buf[..]) {
            if k == 0 {
                break;
            }
            n += k as u64;
        }
        n
    });
    // The sender runs on a thread of its own, so that a hang is reported
    // as a failure instead of stopping the test binary.
    let (done, finished) = mpsc::channel();
    let sender = std::thread::spawn(move || {
        let page = cache.memdup(&vec![5u8; PAYLOAD]).unwrap();
        for _ in 0..MESSAGES {
            let mut m = Msg::new();
            m.push(page.clone());
            sp.send(&mut m).unwrap();
        }
        let drained = sp.wait(Duration::from_secs(10)).unwrap();
        let st = sp.stats(ConnId::FIRST);
        drop(sp);
        done.send(()).unwrap();
        (drained, st)
    });
    if finished.recv_timeout(Duration::from_secs(60)).is_err() {
        panic!("the sender did not finish in 60 s: a completion was never fetched");
    }
    let (drained, st) = sender.join().unwrap();
    assert_eq!(reader.join().unwrap(), MESSAGES * PAYLOAD as u64);
    assert!(
        drained,
        "notifications still missing after the sends: {st:?}"
    );
    assert_eq!(st.messages, MESSAGES);
    assert!(st.zerocopy_sends >= MESSAGES, "{st:?}");
    assert_eq!(st.completions_pending, 0, "{st:?}");
}
