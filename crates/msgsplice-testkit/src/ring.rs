//! A bounded single-producer, single-consumer ring: the one queue every
//! contender of the cross-thread allocator benchmark is handed over through.
//!
//! The queue must cost the same for everybody and as little as possible, so
//! that what differs between rows is the allocator (glibc's cross-thread
//! `free` against a fragment's atomic decrement), not the hand-off. Each
//! side keeps its own index privately and publishes it with one release
//! store; with `publish_every = 64` the producer publishes once per batch of
//! 64 items and the consumer takes up to 64 items per acquire, so the
//! cache-line traffic between the two cores is paid once per batch.
//!
//! Waiting spins briefly and then yields: the machines are small and shared,
//! and a spinning waiter must not starve the thread it waits for.
//!
//! One of the kit's two unsafe modules (with [`alloc`](crate::alloc)): the
//! slots hold items that one side writes and the other reads, ordered by
//! the indices' release and acquire; every block says why it is sound.
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps the producer's and the consumer's index on separate cache lines
/// (128 bytes covers adjacent-line prefetching).
#[repr(align(128))]
struct Padded<T>(T);

/// The ring's storage, shared by its two ends.
struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Items consumed so far (written by the consumer only).
    head: Padded<AtomicUsize>,
    /// Items published so far (written by the producer only).
    tail: Padded<AtomicUsize>,
    /// Set by the producer after its last publish.
    closed: AtomicBool,
}

// SAFETY: `channel` makes exactly one producer and one consumer (neither
// is Clone); a slot is only read after the release/acquire pair on `tail`
// and only rewritten after the pair on `head`; items move between threads,
// hence `T: Send`.
unsafe impl<T: Send> Sync for Ring<T> {}

/// A ring of `capacity` slots (rounded up to a power of two) and its two
/// ends. The producer publishes every `publish_every` pushes (1: each item
/// on its own; 64: batches of 64; clamped to the capacity), and on drop.
pub fn channel<T: Send>(capacity: usize, publish_every: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let ring = Arc::new(Ring {
        slots: (0..cap)
            .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
            .collect(),
        mask: cap - 1,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        closed: AtomicBool::new(false),
    });
    (
        Producer {
            ring: ring.clone(),
            tail: 0,
            head_seen: 0,
            unpublished: 0,
            every: publish_every.clamp(1, cap),
        },
        Consumer { ring, head: 0 },
    )
}

impl<T> Drop for Ring<T> {
    /// Drops items published but never consumed (both ends are gone).
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        for i in head..tail {
            // SAFETY: slots in head..tail hold initialised items, and no
            // one else can reach them (`&mut self`).
            unsafe { self.slots[i & self.mask].get_mut().assume_init_drop() };
        }
    }
}

/// The pushing end.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    /// Next position to write.
    tail: usize,
    /// The consumer's head as last read (a lower bound of the real one).
    head_seen: usize,
    unpublished: usize,
    every: usize,
}

impl<T: Send> Producer<T> {
    /// Appends `item`, waiting while the ring is full.
    #[inline]
    pub fn push(&mut self, item: T) {
        let cap = self.ring.slots.len();
        if self.tail - self.head_seen == cap {
            // Items sitting unpublished can never be consumed: publish
            // before waiting for room.
            self.publish();
            let mut w = Wait::default();
            loop {
                self.head_seen = self.ring.head.0.load(Ordering::Acquire);
                if self.tail - self.head_seen < cap {
                    break;
                }
                w.wait();
            }
        }
        // SAFETY: `tail - head < cap`, so this slot is empty: the consumer
        // has moved its item out and published that (acquire above), and it
        // reads no slot at or beyond the published tail.
        unsafe { (*self.ring.slots[self.tail & self.ring.mask].get()).write(item) };
        self.tail += 1;
        self.unpublished += 1;
        if self.unpublished == self.every {
            self.publish();
        }
    }

    /// Makes every pushed item visible to the consumer.
    #[inline]
    pub fn publish(&mut self) {
        self.ring.tail.0.store(self.tail, Ordering::Release);
        self.unpublished = 0;
    }
}

impl<T> Drop for Producer<T> {
    /// Publishes what is left and tells the consumer nothing more comes.
    fn drop(&mut self) {
        self.ring.tail.0.store(self.tail, Ordering::Release);
        self.ring.closed.store(true, Ordering::Release);
    }
}

/// The popping end.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    head: usize,
}

impl<T: Send> Consumer<T> {
    /// Hands up to `max` published items to `f`, in order, and returns how
    /// many; 0 if none is published yet.
    #[inline]
    pub fn pop_up_to(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let tail = self.ring.tail.0.load(Ordering::Acquire);
        let n = (tail - self.head).min(max);
        for _ in 0..n {
            // SAFETY: head < tail: the producer wrote this slot and
            // published it (acquire above), and will not rewrite it until
            // our release of a head beyond it.
            let item =
                unsafe { (*self.ring.slots[self.head & self.ring.mask].get()).assume_init_read() };
            self.head += 1;
            f(item);
        }
        if n > 0 {
            self.ring.head.0.store(self.head, Ordering::Release);
        }
        n
    }

    /// Pops `max` items at a time into `f` until the producer is gone and
    /// the ring is empty; returns the number of items seen.
    pub fn drain_until_closed(&mut self, max: usize, mut f: impl FnMut(T)) -> u64 {
        let mut seen = 0u64;
        let mut w = Wait::default();
        loop {
            let n = self.pop_up_to(max, &mut f);
            if n > 0 {
                seen += n as u64;
                w = Wait::default();
                continue;
            }
            if self.ring.closed.load(Ordering::Acquire) {
                // The final publish happened before `closed`: one more look.
                let n = self.pop_up_to(usize::MAX, &mut f);
                seen += n as u64;
                if n == 0 {
                    return seen;
                }
                continue;
            }
            w.wait();
        }
    }
}

/// Spin a little, then yield the CPU.
#[derive(Default)]
struct Wait(u32);

impl Wait {
    #[inline]
    fn wait(&mut self) {
        if self.0 < 128 {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn transfer(publish_every: usize, max: usize, count: u64) {
        let (mut p, mut c) = channel::<Box<u64>>(16, publish_every);
        let got = std::thread::scope(|s| {
            s.spawn(move || {
                for i in 0..count {
                    p.push(Box::new(i));
                }
            });
            let mut next = 0u64;
            let seen = c.drain_until_closed(max, |b| {
                assert_eq!(*b, next, "items arrive in order");
                next += 1;
            });
            assert_eq!(next, count);
            seen
        });
        assert_eq!(got, count);
    }

    #[test]
    fn singly_and_batched_in_order() {
        transfer(1, 1, 100_000);
        transfer(64, 64, 100_000);
        // A batch larger than the ring is clamped to the ring.
        transfer(64, 64, 1000);
        // Counts that are not a multiple of the batch: the tail is
        // published on close.
        transfer(7, 3, 1001);
    }

    #[test]
    fn leftovers_are_dropped() {
        static DROPS: AtomicU64 = AtomicU64::new(0);
        struct Counted;
        impl Drop for Counted {
            fn drop(&mut self) {
                DROPS.fetch_add(1, Ordering::Relaxed);
            }
        }
        let (mut p, mut c) = channel(8, 1);
        for _ in 0..5 {
            p.push(Counted);
        }
        assert_eq!(c.pop_up_to(2, drop), 2);
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        drop(p);
        assert_eq!(DROPS.load(Ordering::Relaxed), 2);
        // The last end to go drops the three items still in the ring.
        drop(c);
        assert_eq!(DROPS.load(Ordering::Relaxed), 5);
    }
}
