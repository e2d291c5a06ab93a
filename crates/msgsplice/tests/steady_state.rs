//! The common case costs one system call and no heap allocation per
//! message once warmed up (Chuck's objection in the kernel review): counted
//! with a global allocator that counts on the sending thread only.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{pair, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: defers to the system allocator; counting has no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNT_HERE.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// 128 B header (borrowed) + payload frag + 8 B trailer (borrowed), over
/// TCP loopback and Unix stream, SPLICE on and off.
#[test]
fn one_syscall_and_no_allocation_per_message() {
    for (t, splice, payload) in [
        (Transport::Tcp4, true, 16 << 10),
        (Transport::Tcp4, false, 16 << 10),
        (Transport::Tcp4, true, 1 << 10),
        (Transport::UnixStream, true, 16 << 10),
    ] {
        let (tx, rx) = pair(t).unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            let mut n = 0u64;
            while let Ok(k) = rustix::io::read(&rx, &mut buf[..]) {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            n
        });
        let cache = FragCache::new();
        let mut sp = Builder::new()
            .on_copied(OnCopied::Keep)
            .splice(splice)
            .frag_cache(cache.clone())
            .build(tx)
            .unwrap();
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
        send(3000); // warm up: queues and folios reach their steady size
        COUNT_HERE.with(|c| c.set(true));
        let a0 = ALLOCS.load(Ordering::Relaxed);
        send(2000);
        let allocs = ALLOCS.load(Ordering::Relaxed) - a0;
        COUNT_HERE.with(|c| c.set(false));
        let st = sp.stats();
        drop(sp);
        let got = reader.join().unwrap();
        assert_eq!(got, 5000 * (136 + payload as u64));
        assert_eq!(
            allocs, 0,
            "{t:?} splice={splice} {payload}: heap allocations"
        );
        let per_msg = st.syscalls as f64 / st.messages as f64;
        assert!(
            per_msg < 1.1,
            "{t:?} splice={splice}: {per_msg} syscalls/message"
        );
        if splice && t == Transport::Tcp4 && payload >= 10 << 10 {
            assert_eq!(st.zerocopy_sends, 5000);
        }
    }
}
