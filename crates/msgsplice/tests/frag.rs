//! The page-fragment allocator, through its public API: alignment, bounds,
//! zeroing, reuse only after the last reference, no overlap, large requests,
//! fall-back, interop with `bytes`.

use std::collections::HashMap;

use bytes::BufMut;
use msgsplice::frag::{BucketMode, FragBuf, FragCache, FragError, FragStats};
use msgsplice::Frag;
use proptest::prelude::*;

fn cache(mode: BucketMode) -> FragCache {
    FragCache::builder()
        .bucket_mode(mode)
        .poison_recycled(0xA5)
        .build()
        .unwrap()
}

const MODES: [BucketMode; 2] = [BucketMode::PerThread, BucketMode::PerCpu];

#[test]
fn alignment_is_honoured_for_every_power_of_two() {
    for mode in MODES {
        let c = cache(mode);
        let mut keep = Vec::new();
        for shift in 0..=16 {
            let align = 1usize << shift;
            for len in [0, 1, 3, 100, 4096] {
                let f = c.alloc(len, align).unwrap();
                assert_eq!(f.as_ptr() as usize % align, 0, "align {align} len {len}");
                assert_eq!(f.len(), len);
                keep.push(f);
            }
        }
    }
}

#[test]
fn bad_alignment_and_folio_size_are_typed_errors() {
    let c = FragCache::new();
    for bad in [0, 3, 6, 4095] {
        assert!(matches!(c.alloc(8, bad), Err(FragError::BadAlign(a)) if a == bad));
    }
    for bad in [0, 1000, 2048, 4 << 20, 65537] {
        let e = FragCache::builder().folio_size(bad).build().unwrap_err();
        assert!(matches!(e, FragError::BadFolioSize(s) if s == bad), "{e}");
    }
    assert!(matches!(
        c.alloc(usize::MAX - 10, 1),
        Err(FragError::TooLarge(_))
    ));
}

/// Drives a cache until at least one folio has been recycled.
fn churn_until_recycled(c: &FragCache) {
    let before = c.stats().recycled;
    for _ in 0..10_000 {
        let mut f = c.alloc(1000, 1).unwrap();
        f.fill(0xFF);
        drop(f.freeze());
        if c.stats().recycled > before + 1 {
            return;
        }
    }
    panic!("no folio was recycled: {:?}", c.stats());
}

#[test]
fn alloc_zeroed_zeroes_recycled_memory() {
    for mode in MODES {
        let c = FragCache::builder().bucket_mode(mode).build().unwrap();
        churn_until_recycled(&c);
        // The current folio is recycled and full of 0xFF: zeroed must hide it.
        for len in [1, 64, 1000, 5000, 30_000] {
            let z = c.alloc_zeroed(len, 8).unwrap();
            assert!(z.iter().all(|&b| b == 0), "len {len}");
        }
    }
}

#[test]
fn a_folio_is_not_reused_while_one_fragment_lives() {
    for mode in MODES {
        let c = cache(mode);
        let kept = c.memdup(&[0x11; 100]).unwrap();
        let kept_folio = kept.folio_id();
        // Fill well past one folio; any reuse of kept's folio would poison it.
        for i in 0..5_000u32 {
            let f = c.memdup(&i.to_le_bytes().repeat(64)).unwrap();
            assert!(f.folio_id() != kept_folio || f.folio_offset() > kept.folio_offset());
        }
        assert!(kept.iter().all(|&b| b == 0x11));
        assert!(
            c.stats().recycled > 0,
            "the test must have exercised recycling"
        );
    }
}

#[test]
fn clones_and_slices_keep_the_folio() {
    let c = cache(BucketMode::PerThread);
    let f = c.memdup(b"0123456789").unwrap();
    let s = f.slice(2..5);
    let t = s.slice(1..);
    drop(f);
    for _ in 0..2_000 {
        drop(c.memdup(&[0u8; 512]).unwrap());
    }
    assert_eq!(&s[..], b"234");
    assert_eq!(&t[..], b"34");
    assert_eq!(t.folio_offset(), s.folio_offset() + 1);
}

#[test]
#[should_panic(expected = "out of bounds")]
fn slice_out_of_bounds_panics() {
    let c = FragCache::new();
    let f = c.memdup(b"abc").unwrap();
    let _ = f.slice(2..4);
}

#[test]
fn large_requests_get_a_dedicated_mapping() {
    let c = FragCache::new();
    let half = c.folio_size() / 2;
    let small = c.alloc(half, 1).unwrap();
    assert_eq!(c.stats().dedicated, 0);
    let mut big = c.alloc(half + 1, 1).unwrap();
    big.fill(7);
    let huge_align = c.alloc(100, 1 << 16).unwrap();
    assert_eq!(huge_align.as_ptr() as usize % (1 << 16), 0);
    let s = c.stats();
    assert_eq!(s.dedicated, 2);
    let live = s.folios_live;
    drop((big, huge_align));
    assert_eq!(
        c.stats().folios_live,
        live - 2,
        "dedicated mappings are unmapped at drop"
    );
    drop(small);
    let ten_mib = c.memdup(&vec![9u8; 10 << 20]).unwrap();
    assert!(ten_mib.iter().all(|&b| b == 9));
}

#[test]
fn falls_back_to_smaller_folios_when_mapping_fails() {
    let c = FragCache::builder()
        .folio_size(2 << 20)
        .fail_maps_over(64 << 10)
        .build()
        .unwrap();
    // Fits in half of 2 MiB but not in a 64 KiB fall-back folio.
    let big = c.memdup(&vec![3u8; 200 << 10]).unwrap();
    let small = c.memdup(&[4u8; 1000]).unwrap();
    assert!(big.iter().all(|&b| b == 3));
    assert!(small.iter().all(|&b| b == 4));
    let s = c.stats();
    assert!(s.fallbacks >= 5, "{s:?}");
    assert_eq!(
        s.dedicated, 1,
        "the request that no longer fits goes dedicated"
    );
}

#[test]
fn huge_folios_work() {
    let c = FragCache::builder().folio_size(2 << 20).build().unwrap();
    let f = c.memdup(&[1u8; 1 << 20]).unwrap();
    assert_eq!(f.len(), 1 << 20);
    assert_eq!(c.stats().dedicated, 0);
}

#[test]
fn frag_into_bytes_does_not_copy() {
    let c = FragCache::new();
    let f = c.memdup(b"hello frag").unwrap();
    let ptr = f.as_ptr();
    let b: bytes::Bytes = f.into();
    assert_eq!(b.as_ptr(), ptr);
    let b2 = b.slice(6..);
    drop(b);
    assert_eq!(&b2[..], b"frag");
    drop(b2);
    c.drain();
    assert_eq!(
        c.stats().folios_live,
        0,
        "the Bytes gave its reference back"
    );
}

#[test]
fn fragbuf_writes_in_place_with_headroom() {
    let c = FragCache::new();
    let mut w = FragBuf::with_headroom(&c, 4, 64).unwrap();
    assert_eq!(w.capacity(), 64);
    assert_eq!(w.remaining_mut(), 64);
    w.put_u32(1);
    w.put_u64(2);
    w.put_slice(b"xyz");
    assert_eq!(w.len(), 15);
    w.body_mut()[0] = 9;
    let n = w.len() as u32;
    w.headroom_mut().copy_from_slice(&n.to_be_bytes());
    let f = w.freeze();
    assert_eq!(f.len(), 19);
    assert_eq!(&f[..4], &15u32.to_be_bytes());
    assert_eq!(&f[4..8], &[9, 0, 0, 1]);
    assert_eq!(&f[16..], b"xyz");
    let empty = FragBuf::new(&c, 0).unwrap().freeze();
    assert!(empty.is_empty());
}

#[test]
#[should_panic]
fn fragbuf_refuses_to_write_past_capacity() {
    let c = FragCache::new();
    let mut w = FragBuf::new(&c, 4).unwrap();
    w.put_u64(1);
}

#[test]
fn drain_releases_everything_once_fragments_are_gone() {
    for mode in MODES {
        let c = FragCache::builder().bucket_mode(mode).build().unwrap();
        let frags: Vec<Frag> = (0..500).map(|_| c.memdup(&[1; 700]).unwrap()).collect();
        assert!(c.stats().folios_live >= 5);
        drop(frags);
        c.drain();
        let s = c.stats();
        assert_eq!((s.folios_live, s.folios_cached), (0, 0), "{s:?}");
        // Still usable afterwards.
        assert_eq!(&c.memdup(b"again").unwrap()[..], b"again");
    }
}

#[test]
fn zero_length_fragments_are_fine() {
    let c = FragCache::new();
    let v: Vec<Frag> = (0..10_000).map(|_| c.memdup(&[]).unwrap()).collect();
    assert!(v.iter().all(|f| f.is_empty()));
    assert_eq!(c.stats().folios_mapped, 1);
}

#[test]
fn stats_count_bytes_handed_out() {
    let c = FragCache::new();
    let a = c.memdup(&[0; 100]).unwrap();
    let b = c.alloc(1 << 20, 1).unwrap();
    assert_eq!(c.stats().bytes_handed_out, 100 + (1 << 20));
    drop((a, b));
    let FragStats { folios_mapped, .. } = c.stats();
    assert_eq!(folios_mapped, 2);
}

/// One step of the property test.
#[derive(Clone, Debug)]
enum Op {
    Alloc { len: usize, align_shift: u8 },
    Clone(usize),
    Drop(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..40_000, 0u8..13).prop_map(|(len, align_shift)| Op::Alloc { len, align_shift }),
        1 => any::<usize>().prop_map(Op::Clone),
        3 => any::<usize>().prop_map(Op::Drop),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random sizes, alignments and drop orders: every live fragment keeps
    /// its own contents (a premature reuse would show the poison or another
    /// fragment's pattern), is aligned, and no two allocations overlap.
    #[test]
    fn live_fragments_never_overlap_or_change(ops in prop::collection::vec(op(), 1..300), per_cpu in any::<bool>()) {
        let mode = if per_cpu { BucketMode::PerCpu } else { BucketMode::PerThread };
        let c = cache(mode);
        // (allocation id, fragment)
        let mut live: Vec<(u32, Frag)> = Vec::new();
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Alloc { len, align_shift } => {
                    let align = 1usize << align_shift;
                    let mut f = c.alloc(len, align).unwrap();
                    prop_assert_eq!(f.as_ptr() as usize % align, 0);
                    prop_assert_eq!(f.len(), len);
                    let pat = (next_id % 251) as u8;
                    f.fill(pat);
                    live.push((next_id, f.freeze()));
                    next_id += 1;
                }
                Op::Clone(i) if !live.is_empty() => {
                    let (id, f) = &live[i % live.len()];
                    let g = f.clone();
                    live.push((*id, g));
                }
                Op::Drop(i) if !live.is_empty() => {
                    live.swap_remove(i % live.len());
                }
                _ => {}
            }
            // Contents intact.
            for (id, f) in &live {
                let pat = (id % 251) as u8;
                prop_assert!(f.iter().all(|&b| b == pat), "allocation {} changed", id);
            }
        }
        // Distinct allocations occupy disjoint address ranges.
        let mut ranges: HashMap<u32, (usize, usize)> = HashMap::new();
        for (id, f) in &live {
            ranges.insert(*id, (f.as_ptr() as usize, f.as_ptr() as usize + f.len()));
        }
        let mut v: Vec<_> = ranges.values().filter(|(a, b)| a != b).copied().collect();
        v.sort();
        for w in v.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "overlap {:?} {:?}", w[0], w[1]);
        }
        drop(live);
        c.drain();
        prop_assert_eq!(c.stats().folios_live, 0);
    }
}

#[test]
fn a_fragbuf_gives_its_unused_capacity_back() {
    let c = FragCache::new();
    let mut w = FragBuf::new(&c, 30_000).unwrap();
    w.put_slice(b"short");
    let f = w.freeze();
    let next = c.memdup(b"next").unwrap();
    assert_eq!(
        next.as_ptr() as usize,
        f.as_ptr() as usize + 5,
        "the tail was given back"
    );
    assert_eq!(&f[..], b"short");
    assert_eq!(&next[..], b"next");
    // Not the latest allocation any more: truncating cannot give back.
    let mut a = c.alloc(100, 1).unwrap();
    let b = c.memdup(b"b").unwrap();
    a.truncate(10);
    let d = c.memdup(b"d").unwrap();
    assert_eq!(d.as_ptr() as usize, b.as_ptr() as usize + 1);
    assert_eq!(c.stats().bytes_handed_out, 5 + 4 + 100 + 1 + 1);
}
