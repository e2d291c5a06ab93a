//! The allocator section: `FragCache` against the heap-backed buffers a
//! server would otherwise use for small messages.
//!
//! One operation is a whole cycle: allocate (and copy, for `memdup`), then
//! drop. Single-thread, the cycle runs in a loop on one thread. Cross-thread,
//! a producer allocates and a consumer drops, on two threads kept for the
//! whole section ([`ThreadPair`]), the items handed over through the same
//! SPSC ring ([`ring`]) for every contender, one by one or in batches of 64;
//! the time is from start until the consumer has dropped the last item,
//! divided by the number of items. That is the shape of a server whose
//! sending thread builds messages and whose completion path frees them.
//!
//! `std::hint::black_box` keeps the compiler from eliding an allocation or a
//! copy. What each cycle makes is observed through its data pointer
//! (`black_box(v.as_ref().as_ptr())`), never moved whole into `black_box`:
//! that move copied the value to a new stack slot with a 16-byte load over
//! the 8-byte stores that had just written it, which the CPU cannot forward
//! from; the stall (about 10 ns a cycle here) belonged to the harness, and
//! it came and went with the compiler's inlining choices between builds of
//! the same code (FragCache memdup of 256 B measured 5 to 18 ns). Every
//! contender's closure is `#[inline(always)]` for the same reason: called
//! out of line, a result of more than two words comes back through memory. The heap contenders run under the counting global allocator of the
//! binary, which adds one thread-local increment per allocation (about a
//! nanosecond; `FragCache` does not allocate from the heap).

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use msgsplice::frag::{BucketMode, FragCache};

use super::pair::ThreadPair;
use super::report::{Group, Outcome, Row, Table};
use super::{Options, Progress, Section};
use msgsplice_testkit::ring;

/// Per-run duration unless `--duration-ms` says otherwise.
const RUN: Duration = Duration::from_millis(40);
/// Operations between two looks at the clock.
const CHUNK: u64 = 256;
/// Slots of the hand-over ring (room for a few batches in flight).
const RING_SLOTS: usize = 512;

/// What one cycle does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate `n` bytes and copy `n` bytes into them.
    Memdup(usize),
    /// Allocate `n` bytes, write the first 64.
    Alloc(usize),
}

/// Where the buffer is freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Allocated and dropped on the same thread.
    Single,
    /// Allocated on one thread, dropped on another, published `batch` at a
    /// time.
    Cross {
        /// Items per hand-over.
        batch: usize,
    },
}

const OPS: [Op; 4] = [
    Op::Memdup(64),
    Op::Memdup(256),
    Op::Memdup(1500),
    Op::Alloc(4096),
];
const MODES: [Mode; 3] = [
    Mode::Single,
    Mode::Cross { batch: 1 },
    Mode::Cross { batch: 64 },
];

/// One allocator under test.
pub enum Contender {
    /// `FragCache`, as configured (per-thread or per-CPU buckets).
    Frag(FragCache),
    /// `bytes::Bytes` (the baseline).
    Bytes,
    /// `Vec<u8>`.
    Vec,
    /// `Box<[u8]>`.
    Box,
    /// `Arc<[u8]>`.
    Arc,
}

/// The section.
pub struct AllocSection;

impl AllocSection {
    /// The contenders in display order, with their names; the one named
    /// [`BASELINE`] is the baseline.
    pub fn contenders() -> Result<Vec<(&'static str, Contender)>, String> {
        let per_cpu = FragCache::builder()
            .bucket_mode(BucketMode::PerCpu)
            .build()
            .map_err(|e| format!("cannot build a per-CPU FragCache: {e}"))?;
        Ok(vec![
            ("FragCache", Contender::Frag(FragCache::new())),
            ("FragCache per-CPU", Contender::Frag(per_cpu)),
            (BASELINE, Contender::Bytes),
            ("Vec<u8>", Contender::Vec),
            ("Box<[u8]>", Contender::Box),
            ("Arc<[u8]>", Contender::Arc),
        ])
    }
}

/// The baseline contender's name.
pub const BASELINE: &str = "Bytes";

fn group_name(mode: Mode, op: Op) -> String {
    let m = match mode {
        Mode::Single => "single thread".to_string(),
        Mode::Cross { batch: 1 } => "cross-thread, singly".to_string(),
        Mode::Cross { batch } => format!("cross-thread, batches of {batch}"),
    };
    let o = match op {
        Op::Memdup(n) => format!("memdup {n} B"),
        Op::Alloc(n) => format!("alloc {} KiB", n / 1024),
    };
    format!("{m}, {o}")
}

impl Section for AllocSection {
    fn id(&self) -> &'static str {
        "alloc"
    }

    fn title(&self) -> String {
        "allocator: one allocate+copy+drop cycle per op".into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        let cells = (OPS.len() * MODES.len() * 6 * opts.runs) as u32;
        opts.run_duration(RUN) * cells
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        let contenders = match Self::contenders() {
            Ok(c) => c,
            Err(error) => return Outcome::Failed { error },
        };
        let dur = opts.run_duration(RUN);
        let src: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 1) as u8).collect();
        let mut table = Table::new("ns/op", false, "vs Bytes");
        table.about = vec![
            format!(
                "ns per cycle, lower is better; median of {} runs of {} ms, spread min..max; \
                 ratio = Bytes ns / row ns (above 1.00x: faster than Bytes)",
                opts.runs,
                dur.as_millis()
            ),
            "memdup N: FragCache::memdup, Bytes::copy_from_slice, to_vec, Box::from, Arc::from"
                .into(),
            "alloc 4 KiB: FragCache::alloc(4096, 16), BytesMut::with_capacity+freeze, \
             Vec::with_capacity, Box/Arc::new_uninit_slice; each writes its first 64 bytes"
                .into(),
            format!(
                "cross-thread: allocated on one thread, dropped on another (the same two \
                 threads all section), handed over through one SPSC ring ({RING_SLOTS} slots)"
            ),
        ];
        let mut pinned = None;
        // One producer and one consumer thread for the whole section (see
        // `pair`); `contenders` and `src` outlive them.
        let measured = std::thread::scope(|s| -> Result<(), String> {
            let pair = ThreadPair::spawn(s);
            pinned = pair.pinned();
            for mode in MODES {
                for op in OPS {
                    let name = group_name(mode, op);
                    let mut samples = vec![Vec::with_capacity(opts.runs); contenders.len()];
                    for run in 0..opts.runs {
                        // Interleave contenders within a run, so that a slow
                        // moment of the shared machine hits them all alike.
                        for (i, (cname, c)) in contenders.iter().enumerate() {
                            progress.step(format_args!(
                                "{name}: {cname}, run {}/{}",
                                run + 1,
                                opts.runs
                            ));
                            match measure(&pair, c, mode, op, &src, dur) {
                                Ok(ns) => samples[i].push(ns),
                                Err(error) => return Err(error),
                            }
                        }
                    }
                    let mut g = Group::new(name);
                    for ((cname, _), s) in contenders.iter().zip(&samples) {
                        g.rows.extend(Row::new(*cname, *cname == BASELINE, s));
                    }
                    table.groups.push(g);
                }
            }
            Ok(())
        });
        if let Err(error) = measured {
            return Outcome::Failed { error };
        }
        table.about.push(match pinned {
            Some((a, b)) => {
                format!("cross-thread: producer pinned to CPU {a}, consumer to CPU {b}")
            }
            None => "cross-thread: threads not pinned (fewer than two CPUs allowed)".into(),
        });
        for (cname, c) in &contenders {
            if let Contender::Frag(cache) = c {
                let st = cache.stats();
                table.notes.push(format!(
                    "{cname}: {:.1} GB handed out from {} folios mapped ({} recycled, {} live now)",
                    st.bytes_handed_out as f64 / 1e9,
                    st.folios_mapped,
                    st.recycled,
                    st.folios_live
                ));
            }
        }
        table.compute_ratios();
        Outcome::Ran(table)
    }
}

/// Runs one contender for `dur` and returns ns per cycle; cross-thread
/// modes run on `pair`.
pub fn measure<'env>(
    pair: &ThreadPair<'env>,
    c: &'env Contender,
    mode: Mode,
    op: Op,
    src: &'env [u8],
    dur: Duration,
) -> Result<f64, String> {
    let head = &src[..64];
    let ns = match (c, op) {
        (Contender::Frag(cache), Op::Memdup(n)) => {
            cache.memdup(&src[..n]).map_err(frag_failed)?;
            run_mode(
                pair,
                mode,
                dur,
                #[inline(always)]
                move || {
                    cache
                        .memdup(black_box(&src[..n]))
                        .expect(FRAG_FAILED_MID_RUN)
                },
            )
        }
        (Contender::Frag(cache), Op::Alloc(n)) => {
            cache.alloc(n, 16).map_err(frag_failed)?;
            run_mode(
                pair,
                mode,
                dur,
                #[inline(always)]
                move || {
                    let mut f = cache.alloc(n, 16).expect(FRAG_FAILED_MID_RUN);
                    f[..64].copy_from_slice(black_box(head));
                    f.freeze()
                },
            )
        }
        (Contender::Bytes, Op::Memdup(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || Bytes::copy_from_slice(black_box(&src[..n])),
        ),
        (Contender::Bytes, Op::Alloc(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || {
                let mut b = BytesMut::with_capacity(n);
                b.extend_from_slice(black_box(head));
                b.freeze()
            },
        ),
        (Contender::Vec, Op::Memdup(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || black_box(&src[..n]).to_vec(),
        ),
        (Contender::Vec, Op::Alloc(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || {
                let mut v = Vec::with_capacity(n);
                v.extend_from_slice(black_box(head));
                v
            },
        ),
        (Contender::Box, Op::Memdup(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || Box::<[u8]>::from(black_box(&src[..n])),
        ),
        (Contender::Box, Op::Alloc(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || {
                let mut b = Box::<[u8]>::new_uninit_slice(n);
                write_head(&mut b, head);
                b
            },
        ),
        (Contender::Arc, Op::Memdup(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || Arc::<[u8]>::from(black_box(&src[..n])),
        ),
        (Contender::Arc, Op::Alloc(n)) => run_mode(
            pair,
            mode,
            dur,
            #[inline(always)]
            move || {
                let mut a = Arc::<[u8]>::new_uninit_slice(n);
                if let Some(m) = Arc::get_mut(&mut a) {
                    write_head(m, head);
                }
                a
            },
        ),
    };
    Ok(ns)
}

/// Writes `head` into the start of uninitialised memory.
#[inline]
fn write_head(dst: &mut [MaybeUninit<u8>], head: &[u8]) {
    for (d, s) in dst.iter_mut().zip(black_box(head)) {
        d.write(*s);
    }
}

/// Said when `FragCache` cannot map memory in the middle of a timed run.
/// The heap contenders abort on allocation failure too, and turning the
/// `Result` into an `Option` in the timed loop was measured to cost
/// FragCache 2 to 4 ns per operation, so the run stops here instead.
const FRAG_FAILED_MID_RUN: &str =
    "FragCache could not map memory during the benchmark (it worked just before the run)";

fn frag_failed(e: msgsplice::frag::FragError) -> String {
    format!("FragCache cannot allocate: {e}")
}

/// Times `make` (and dropping what it makes) in `mode`; ns per cycle.
/// Single-thread runs on the calling thread, cross-thread on `pair`.
pub fn run_mode<'env, T, F>(pair: &ThreadPair<'env>, mode: Mode, dur: Duration, make: F) -> f64
where
    T: Observe + Send + 'env,
    F: FnMut() -> T + Send + 'env,
{
    match mode {
        Mode::Single => single(dur, make),
        Mode::Cross { batch } => cross(pair, dur, batch, make),
    }
}

/// What the contenders make: anything with a data pointer to observe.
pub trait Observe {
    /// The address of the data.
    fn addr(&self) -> *const u8;
}

macro_rules! observe_by_deref {
    ($($t:ty),*) => {$(
        impl Observe for $t {
            #[inline(always)]
            fn addr(&self) -> *const u8 {
                self.as_ptr() as *const u8
            }
        }
    )*};
}
observe_by_deref!(
    msgsplice::Frag,
    Bytes,
    Vec<u8>,
    Box<[u8]>,
    Arc<[u8]>,
    Box<[MaybeUninit<u8>]>,
    Arc<[MaybeUninit<u8>]>
);

/// Uses a value the compiler cannot see through, without moving it.
#[inline(always)]
fn consume<T: Observe>(v: T) {
    black_box(v.addr());
    drop(v);
}

fn single<T: Observe, F: FnMut() -> T>(dur: Duration, mut make: F) -> f64 {
    for _ in 0..CHUNK * 4 {
        consume(make());
    }
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..CHUNK {
            consume(make());
        }
        n += CHUNK;
        let t = start.elapsed();
        if t >= dur {
            return t.as_nanos() as f64 / n as f64;
        }
    }
}

/// The producer allocates on `pair`'s first thread until `dur` is over;
/// the consumer drops on the second until the ring is closed and empty.
/// Time: start to the consumer's last drop, per item.
fn cross<'env, T, F>(pair: &ThreadPair<'env>, dur: Duration, batch: usize, mut make: F) -> f64
where
    T: Observe + Send + 'env,
    F: FnMut() -> T + Send + 'env,
{
    let (mut tx, mut rx) = ring::channel(RING_SLOTS, batch);
    let start = Instant::now();
    let (made, (seen, t)) = pair.run(
        move || {
            let mut n = 0u64;
            loop {
                for _ in 0..CHUNK {
                    tx.push(make());
                }
                n += CHUNK;
                if start.elapsed() >= dur {
                    // Dropping `tx` publishes the rest and closes the ring.
                    return n;
                }
            }
        },
        move || {
            let seen = rx.drain_until_closed(batch, consume);
            (seen, start.elapsed())
        },
    );
    debug_assert_eq!(made, seen);
    t.as_nanos() as f64 / made as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contender_every_mode_runs() {
        let src: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let contenders = AllocSection::contenders().unwrap();
        std::thread::scope(|s| {
            let pair = ThreadPair::spawn(s);
            for (_, c) in &contenders {
                for mode in MODES {
                    for op in OPS {
                        let ns = measure(&pair, c, mode, op, &src, Duration::from_millis(1));
                        let ns = ns.unwrap();
                        assert!(ns.is_finite() && ns > 0.0);
                    }
                }
            }
        });
    }

    #[test]
    fn cross_thread_drops_every_item() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static MADE: AtomicU64 = AtomicU64::new(0);
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        struct Item;
        impl Observe for Item {
            fn addr(&self) -> *const u8 {
                std::ptr::null()
            }
        }
        impl Drop for Item {
            fn drop(&mut self) {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
        std::thread::scope(|s| {
            let pair = ThreadPair::spawn(s);
            for batch in [1, 64] {
                run_mode(
                    &pair,
                    Mode::Cross { batch },
                    Duration::from_millis(2),
                    || {
                        MADE.fetch_add(1, Ordering::Relaxed);
                        Item
                    },
                );
            }
        });
        assert_eq!(
            MADE.load(Ordering::Relaxed),
            DROPPED.load(Ordering::Relaxed)
        );
    }

    #[test]
    fn group_names() {
        assert_eq!(
            group_name(Mode::Single, Op::Memdup(256)),
            "single thread, memdup 256 B"
        );
        assert_eq!(
            group_name(Mode::Cross { batch: 64 }, Op::Alloc(4096)),
            "cross-thread, batches of 64, alloc 4 KiB"
        );
    }
}
