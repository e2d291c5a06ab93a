//! The common case costs one system call and no heap allocation per
//! message once warmed up: counted with the test kit's allocator, which
//! counts per thread, so only the sending thread's loop is measured.

mod common;

use common::{pair, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg};
use msgsplice_testkit::alloc::{count_allocs, installed, CountingAlloc};

#[global_allocator]
static A: CountingAlloc = CountingAlloc;

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
        assert!(installed(), "the counting allocator is in place");
        let ((), allocs) = count_allocs(|| send(2000));
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
