//! Bookkeeping of zero-copy sends in flight: which buffers each send id
//! holds, and what the kernel's completions release.
//!
//! The kernel numbers every successful, non-empty `MSG_ZEROCOPY` send on a
//! socket with a 32-bit counter starting at 0 (an empty or failed send takes
//! no number), and later reports *inclusive* ranges `lo..=hi` of numbers
//! whose pages it no longer needs. Ranges coalesce and, in principle, may
//! arrive out of order. This module is pure logic: no system calls, so it is
//! tested directly.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frag::Frag;

/// A buffer the kernel may still read: kept referenced until its send
/// completes.
pub(crate) enum Held {
    Frag(Frag),
    Bytes(Bytes),
}

/// One zero-copy send awaiting completion.
struct Slot {
    /// How many entries of `Tracker::held` (in order) belong to this send.
    nheld: usize,
    done: bool,
}

/// What a completion report did, for the statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Send ids newly completed.
    pub(crate) completed: u64,
    /// Ids in the report that were not in flight (already completed, or
    /// never sent): a kernel or bookkeeping anomaly, counted, never trusted.
    pub(crate) unknown: u64,
}

/// Sends in flight, oldest first. The front slot has id
/// `next_id - slots.len()`, and ids are consecutive, so a completed id maps
/// to its slot by subtraction.
#[derive(Default)]
pub(crate) struct Tracker {
    next_id: u32,
    slots: VecDeque<Slot>,
    held: VecDeque<Held>,
    /// Buffers held by [`hold`](Tracker::hold) since the last commit.
    uncommitted: usize,
    pending: usize,
}

impl Tracker {
    /// A tracker with room for `sends` in flight (and three buffers each)
    /// before its queues grow.
    pub(crate) fn with_capacity(sends: usize) -> Tracker {
        Tracker {
            slots: VecDeque::with_capacity(sends),
            held: VecDeque::with_capacity(sends * 3),
            ..Tracker::default()
        }
    }

    /// Sends registered but not yet completed.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// The id the next successful zero-copy send will get.
    #[cfg(any(test, feature = "uring"))]
    pub(crate) fn next_id(&self) -> u32 {
        self.next_id
    }

    /// Holds one buffer for the send about to be committed.
    pub(crate) fn hold(&mut self, h: Held) {
        self.held.push_back(h);
        self.uncommitted += 1;
    }

    /// Records one successful, non-empty zero-copy send, holding the
    /// buffers passed to [`hold`](Tracker::hold) since the last commit.
    /// Allocates only while the queues grow to their steady-state size.
    pub(crate) fn commit(&mut self) -> u32 {
        self.slots.push_back(Slot {
            nheld: std::mem::take(&mut self.uncommitted),
            done: false,
        });
        self.pending += 1;
        let id = self.next_id;
        self.next_id = id.wrapping_add(1);
        id
    }

    /// [`hold`](Tracker::hold) each of `bufs`, then [`commit`](Tracker::commit).
    #[cfg(test)]
    pub(crate) fn register(&mut self, bufs: impl IntoIterator<Item = Held>) -> u32 {
        for b in bufs {
            self.hold(b);
        }
        self.commit()
    }

    /// Applies a completion for ids `lo..=hi` (wrapping) and releases the
    /// buffers of every completed send at the front of the queue.
    pub(crate) fn complete(&mut self, lo: u32, hi: u32) -> Applied {
        let mut a = Applied::default();
        let front = self.next_id.wrapping_sub(self.slots.len() as u32);
        let count = u64::from(hi.wrapping_sub(lo)) + 1;
        for k in 0..count {
            let id = lo.wrapping_add(k as u32);
            let idx = id.wrapping_sub(front) as usize;
            match self.slots.get_mut(idx) {
                Some(s) if !s.done => {
                    s.done = true;
                    self.pending -= 1;
                    a.completed += 1;
                }
                _ => a.unknown += 1,
            }
        }
        while self.slots.front().is_some_and(|s| s.done) {
            if let Some(s) = self.slots.pop_front() {
                // Dropping the handles lets the folios be recycled.
                self.held.drain(..s.nheld);
            }
        }
        a
    }

    /// Gives up on every send still in flight (the socket is going away and
    /// its completions will not be read): their fragments' folios are
    /// retired, so they are unmapped, never reused; `Bytes` are leaked,
    /// since their owner cannot be told to keep the memory away from reuse.
    /// Returns (fragments retired, `Bytes` leaked).
    pub(crate) fn abandon(&mut self) -> (u64, u64) {
        let (mut retired, mut leaked) = (0, 0);
        for s in self.slots.drain(..) {
            for h in self.held.drain(..s.nheld) {
                if s.done {
                    continue;
                }
                match h {
                    Held::Frag(f) => {
                        f.retire();
                        retired += 1;
                    }
                    Held::Bytes(b) => {
                        std::mem::forget(b);
                        leaked += 1;
                    }
                }
            }
        }
        self.pending = 0;
        (retired, leaked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FragCache;
    use proptest::prelude::*;

    fn frag(cache: &FragCache) -> Held {
        Held::Frag(cache.memdup(b"x").unwrap())
    }

    #[test]
    fn coalesced_range_releases_in_order() {
        let cache = FragCache::new();
        let mut t = Tracker::default();
        for i in 0..5 {
            assert_eq!(t.register([frag(&cache), frag(&cache)]), i);
        }
        assert_eq!(t.held.len(), 10);
        let a = t.complete(0, 2);
        assert_eq!(
            a,
            Applied {
                completed: 3,
                unknown: 0
            }
        );
        assert_eq!((t.pending(), t.held.len()), (2, 4));
        // Out of order: 4 before 3 releases nothing until 3 arrives.
        t.complete(4, 4);
        assert_eq!((t.pending(), t.held.len()), (1, 4));
        t.complete(3, 3);
        assert_eq!((t.pending(), t.held.len(), t.slots.len()), (0, 0, 0));
    }

    #[test]
    fn duplicates_and_unknown_ids_are_counted_not_trusted() {
        let mut t = Tracker::default();
        t.register([]);
        t.register([]);
        assert_eq!(t.complete(0, 0).completed, 1);
        assert_eq!(
            t.complete(0, 0),
            Applied {
                completed: 0,
                unknown: 1
            }
        );
        assert_eq!(t.complete(7, 9).unknown, 3);
        assert_eq!(t.pending(), 1);
    }

    #[test]
    fn ids_wrap_around() {
        let mut t = Tracker {
            next_id: u32::MAX - 1,
            ..Tracker::default()
        };
        let ids: Vec<u32> = (0..4).map(|_| t.register([])).collect();
        assert_eq!(ids, vec![u32::MAX - 1, u32::MAX, 0, 1]);
        assert_eq!(t.complete(u32::MAX - 1, 1).completed, 4);
        assert_eq!(t.pending(), 0);
        assert_eq!(t.next_id(), 2);
    }

    #[test]
    fn abandon_retires_only_what_is_in_flight() {
        let cache = FragCache::builder().build().unwrap();
        let mut t = Tracker::default();
        t.register([frag(&cache)]); // 0
        t.register([frag(&cache), Held::Bytes(Bytes::from_static(b"s"))]); // 1
        t.register([frag(&cache)]); // 2
        t.complete(2, 2); // done but behind 0 and 1
        assert_eq!(t.abandon(), (2, 1));
        assert_eq!(t.pending(), 0);
    }

    proptest! {
        /// Whatever order and grouping the completions come in, every id
        /// completes exactly once and every buffer is released at the end.
        #[test]
        fn any_order_completes_each_id_once(n in 1usize..200, start in any::<u32>(),
                                            cuts in prop::collection::vec(any::<u16>(), 0..40),
                                            seed in any::<u64>()) {
            let mut t = Tracker { next_id: start, ..Tracker::default() };
            for _ in 0..n { t.register([]); }
            // Split 0..n into ranges at the cut points, then shuffle them.
            let mut points: Vec<usize> = cuts.iter().map(|&c| c as usize % n).collect();
            points.push(0);
            points.push(n);
            points.sort_unstable();
            points.dedup();
            let mut ranges: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1] - 1)).collect();
            let mut s = seed | 1;
            for i in (1..ranges.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                ranges.swap(i, (s % (i as u64 + 1)) as usize);
            }
            let mut done = 0;
            for (lo, hi) in ranges {
                let a = t.complete(start.wrapping_add(lo as u32), start.wrapping_add(hi as u32));
                prop_assert_eq!(a.unknown, 0);
                done += a.completed;
            }
            prop_assert_eq!(done, n as u64);
            prop_assert_eq!(t.pending(), 0);
            prop_assert!(t.slots.is_empty());
        }
    }
}
