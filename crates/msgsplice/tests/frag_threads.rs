//! Fragments allocated on one thread and dropped on another, the
//! producer/consumer shape of the kernel's page_frag_test module, plus a
//! steady-state memory check. These fail if a folio is reused while a
//! fragment in it is alive (the consumer sees poison or another message),
//! or if folios leak (the counts do not return to baseline).

use std::sync::mpsc::sync_channel;
use std::thread;

use msgsplice::frag::{BucketMode, FragCache};
use msgsplice::Frag;

/// Cycles per run; enough to recycle thousands of folios.
fn cycles() -> u64 {
    if cfg!(debug_assertions) {
        1_000_000
    } else {
        4_000_000
    }
}

fn message(i: u64) -> [u8; 48] {
    let mut m = [0u8; 48];
    for (k, chunk) in m.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64).to_le_bytes());
    }
    m
}

fn producer_consumer(mode: BucketMode, batch: usize) {
    let c = FragCache::builder()
        .bucket_mode(mode)
        .poison_recycled(0xA5)
        .build()
        .unwrap();
    let n = cycles();
    let (tx, rx) = sync_channel::<Vec<(u64, Frag)>>(16);
    let consumer = thread::spawn(move || {
        let mut seen = 0u64;
        for batch in rx {
            for (i, f) in batch {
                let want = message(i);
                // Varying lengths: a prefix of the message.
                let len = (i % 48) as usize;
                assert_eq!(&f[..], &want[..len], "message {i} corrupted");
                assert_eq!(i, seen, "out of order");
                seen += 1;
            }
        }
        seen
    });
    let mut pending = Vec::with_capacity(batch);
    for i in 0..n {
        let m = message(i);
        let f = c.memdup(&m[..(i % 48) as usize]).unwrap();
        pending.push((i, f));
        if pending.len() == batch {
            tx.send(std::mem::replace(&mut pending, Vec::with_capacity(batch)))
                .unwrap();
        }
    }
    if !pending.is_empty() {
        tx.send(pending).unwrap();
    }
    drop(tx);
    assert_eq!(consumer.join().unwrap(), n);
    let s = c.stats();
    assert!(s.recycled > 100, "folios must have been recycled: {s:?}");
    // Each thread's bucket holds at most one folio and the free list is
    // bounded, so the mapped count stays far below what was handed out.
    assert!(
        s.folios_mapped < 300,
        "folios leaked or were not reused: {s:?}"
    );
    c.drain();
    let s = c.stats();
    assert_eq!(s.folios_live, 0, "folio count back to baseline: {s:?}");
}

#[test]
fn cross_thread_free_singly_per_thread_buckets() {
    producer_consumer(BucketMode::PerThread, 1);
}

#[test]
fn cross_thread_free_batched_per_thread_buckets() {
    producer_consumer(BucketMode::PerThread, 64);
}

#[test]
fn cross_thread_free_batched_per_cpu_buckets() {
    producer_consumer(BucketMode::PerCpu, 64);
}

#[test]
fn many_threads_allocate_and_free_from_one_cache() {
    let c = FragCache::builder().poison_recycled(0x5A).build().unwrap();
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let c = c.clone();
            thread::spawn(move || {
                let mut held: Vec<Frag> = Vec::new();
                for i in 0..100_000usize {
                    let len = 1 + (i * 7919) % 3000;
                    held.push(c.memdup(&vec![t; len]).unwrap());
                    if held.len() > 100 {
                        // Drop from the middle: out-of-order frees.
                        let f = held.swap_remove(i % held.len());
                        assert!(f.iter().all(|&b| b == t));
                    }
                }
                for f in held {
                    assert!(f.iter().all(|&b| b == t));
                }
                c.drain();
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(c.stats().folios_live, 0, "{:?}", c.stats());
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = s.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
fn steady_state_does_not_grow() {
    let c = FragCache::new();
    let mut window: std::collections::VecDeque<Frag> = Default::default();
    let step = |window: &mut std::collections::VecDeque<Frag>, i: usize| {
        let len = [64, 256, 1500, 4096, 9000][i % 5];
        window.push_back(c.memdup(&vec![i as u8; len]).unwrap());
        if window.len() > 256 {
            window.pop_front();
        }
    };
    for i in 0..200_000 {
        step(&mut window, i);
    }
    let (mapped_warm, rss_warm) = (c.stats().folios_mapped, rss_bytes());
    for i in 0..2_000_000 {
        step(&mut window, i);
    }
    let s = c.stats();
    assert!(
        s.folios_mapped <= mapped_warm + 2,
        "new folios keep being mapped in steady state: {mapped_warm} -> {s:?}"
    );
    assert!(s.recycled > 1000, "{s:?}");
    let grew = rss_bytes().saturating_sub(rss_warm);
    assert!(grew < 16 << 20, "RSS grew by {grew} bytes in steady state");
}

#[test]
fn a_thread_exit_gives_its_folio_back() {
    let c = FragCache::new();
    let c2 = c.clone();
    let kept = thread::spawn(move || {
        let keep = c2.memdup(b"outlives its thread").unwrap();
        for _ in 0..100 {
            drop(c2.memdup(&[1; 300]).unwrap());
        }
        keep
    })
    .join()
    .unwrap();
    // The thread is gone: its bucket let go of the folio, which stays
    // mapped only for `kept`.
    let s = c.stats();
    assert_eq!((s.folios_live, s.folios_cached), (1, 0), "{s:?}");
    drop(kept);
    let s = c.stats();
    assert_eq!(
        (s.folios_live, s.folios_cached),
        (1, 1),
        "back in the cache: {s:?}"
    );
}
