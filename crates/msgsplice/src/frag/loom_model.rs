//! A loom model of the folio protocol: one owner thread carves a folio
//! through a real [`ThreadBucket`] while other threads drop its fragments.
//!
//! The code under test is the allocator's own (the bucket's bump, restart,
//! refill and release, the handles' drops, the cache's free list); only
//! the primitives in `sync.rs` are loom's. Run it with `scripts/loom.sh`.
//!
//! The properties, checked in every interleaving loom explores:
//! - every byte belongs to one live fragment at a time: each fragment is
//!   filled with its own id and checked just before it is dropped, so a
//!   restart or a reuse while a fragment is alive shows up as a foreign id;
//! - a retired folio is never carved again;
//! - each folio comes back exactly once: at the end every folio ever
//!   mapped sits in the free list once (or, if retired, was unmapped once);
//! - the owner-only return counter is touched by the owner alone (loom
//!   checks every access to it);
//! - whoever reads a fragment's bytes does so before, in happens-before
//!   order, anyone carves them again. Loom cannot see plain memory, so the
//!   model mirrors each 8 bytes of a folio with a loom cell (a [`Shadow`])
//!   that is written when the bytes are carved and read when they are
//!   checked; an ordering too weak to carry the reader's accesses to the
//!   next carver fails the model.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use loom::cell::UnsafeCell;
use loom::thread;

use super::buckets::ThreadBucket;
use super::{Frag, FragCache, FragMut, FragStats};

/// The smallest folio; fragments of half of it fill it with two.
const FOLIO: usize = 4096;

fn cache() -> FragCache {
    FragCache::builder()
        .folio_size(FOLIO)
        .build()
        .expect("a valid configuration")
}

/// Granule of the shadow: every fragment in the model starts and ends on it.
const GRANULE: usize = 8;

/// One loom cell per [`GRANULE`] bytes of each folio, made on first use.
///
/// `Rc` and `RefCell`, not `Arc` and a lock: loom runs its threads one at
/// a time and its `spawn` asks for no `Send`, and a lock here would hand
/// loom the very ordering under test.
#[derive(Default)]
struct Shadow(RefCell<HashMap<Granule, Rc<UnsafeCell<()>>>>);

/// A granule of a folio: the folio's id and the granule's offset in it.
type Granule = (usize, usize);

impl Shadow {
    /// The cells that mirror `f`'s bytes.
    fn cells(&self, f: &Frag) -> Vec<Rc<UnsafeCell<()>>> {
        assert_eq!(
            f.folio_offset() % GRANULE,
            0,
            "fragments start on a granule"
        );
        let mut map = self.0.borrow_mut();
        (f.folio_offset()..f.folio_offset() + f.len())
            .step_by(GRANULE)
            .map(|at| map.entry((f.folio_id(), at)).or_default().clone())
            .collect()
    }

    /// Tells loom that `f`'s bytes were written.
    fn wrote(&self, f: &Frag) {
        for c in self.cells(f) {
            c.with_mut(|_| ());
        }
    }

    /// Tells loom that `f`'s bytes were read.
    fn read(&self, f: &Frag) {
        for c in self.cells(f) {
            c.with(|_| ());
        }
    }
}

/// Carves `len` bytes from the owner's bucket and fills them with `id`.
fn carve(
    bucket: &mut ThreadBucket,
    cache: &FragCache,
    shadow: &Shadow,
    len: usize,
    id: u8,
) -> Frag {
    let mut f: FragMut = bucket
        .state
        .alloc(len, 1, &cache.shared)
        .expect("a 4 KiB mapping");
    f.fill(id);
    let f = f.freeze();
    shadow.wrote(&f);
    f
}

/// Checks that nobody wrote into `f` since it was carved, then drops it.
fn check_and_drop(f: Frag, shadow: &Shadow, id: u8) {
    shadow.read(&f);
    assert!(
        f.iter().all(|&b| b == id),
        "fragment {id} was overwritten while alive: {:?}",
        &f[..f.len().min(16)]
    );
    drop(f);
}

/// Drops `f` on a thread of its own, checking it first.
fn drop_elsewhere(f: Frag, shadow: &Rc<Shadow>, id: u8) -> thread::JoinHandle<()> {
    let shadow = shadow.clone();
    thread::spawn(move || check_and_drop(f, &shadow, id))
}

/// Every folio ever mapped is back in the free list, once.
fn assert_all_returned_once(s: FragStats) {
    assert_eq!(s.retired, 0, "{s:?}");
    assert_eq!(s.folios_cached, s.folios_mapped, "{s:?}");
    assert_eq!(s.folios_live, s.folios_mapped, "{s:?}");
}

/// Runs `f` under every interleaving loom explores, with at most
/// `LOOM_MAX_PREEMPTIONS` (default 3) preemptions each, which keeps the
/// whole model to seconds.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// The owner drops one fragment itself (a return without an atomic) while
/// another thread drops the other; the owner's next allocations run the
/// in-place restart check, which must not restart while the remote
/// fragment lives.
#[test]
fn restart_waits_for_remote_fragments() {
    model(|| {
        let cache = cache();
        let mut bucket = ThreadBucket::new(&cache.shared);
        let shadow = Rc::new(Shadow::default());
        let a = carve(&mut bucket, &cache, &shadow, 8, 1);
        let b = carve(&mut bucket, &cache, &shadow, 8, 2);
        let remote = drop_elsewhere(b, &shadow, 2);
        check_and_drop(a, &shadow, 1);
        // A restart here reuses a's bytes; it must leave b's alone.
        let c = carve(&mut bucket, &cache, &shadow, 8, 3);
        let d = carve(&mut bucket, &cache, &shadow, 8, 4);
        remote.join().unwrap();
        check_and_drop(c, &shadow, 3);
        check_and_drop(d, &shadow, 4);
        drop(bucket);
        assert_all_returned_once(cache.stats());
    });
}

/// The folio fills up while its fragments are being dropped on two other
/// threads: the bucket gives back its bias in one subtraction, racing the
/// remote drops, and exactly one of them must see the count reach zero.
#[test]
fn bias_give_back_races_remote_drops() {
    model(|| {
        let cache = cache();
        let mut bucket = ThreadBucket::new(&cache.shared);
        let shadow = Rc::new(Shadow::default());
        let a = carve(&mut bucket, &cache, &shadow, FOLIO / 2, 1);
        let b = carve(&mut bucket, &cache, &shadow, FOLIO / 2, 2);
        let ra = drop_elsewhere(a, &shadow, 1);
        let rb = drop_elsewhere(b, &shadow, 2);
        // The folio is full: this gives it up, or restarts it if both
        // fragments are already gone.
        let c = carve(&mut bucket, &cache, &shadow, FOLIO / 2, 3);
        ra.join().unwrap();
        rb.join().unwrap();
        check_and_drop(c, &shadow, 3);
        drop(bucket);
        assert_all_returned_once(cache.stats());
    });
}

/// The whole cycle with two remote droppers: an owner-local return, the
/// restart check, the folio filling up, the bias given back while remote
/// drops race it, and the next folio (fresh, or this one restarted).
#[test]
fn a_folio_goes_round_once_with_two_remote_droppers() {
    model(|| {
        let cache = cache();
        let mut bucket = ThreadBucket::new(&cache.shared);
        let shadow = Rc::new(Shadow::default());
        let quarter = FOLIO / 4;
        let a = carve(&mut bucket, &cache, &shadow, quarter, 1);
        let b = carve(&mut bucket, &cache, &shadow, quarter, 2);
        let c = carve(&mut bucket, &cache, &shadow, quarter, 3);
        let rb = drop_elsewhere(b, &shadow, 2);
        let rc = drop_elsewhere(c, &shadow, 3);
        check_and_drop(a, &shadow, 1);
        // Restarts only if b and c are gone; either way it must not touch
        // their bytes while they live.
        let d = carve(&mut bucket, &cache, &shadow, quarter, 4);
        // More than what is left of the folio unless it restarted: the
        // bucket gives the folio up, racing the remote drops.
        let e = carve(&mut bucket, &cache, &shadow, 2 * quarter, 5);
        rb.join().unwrap();
        rc.join().unwrap();
        check_and_drop(d, &shadow, 4);
        check_and_drop(e, &shadow, 5);
        drop(bucket);
        assert_all_returned_once(cache.stats());
    });
}

/// A retired fragment's folio is never carved again, whoever drops last,
/// and is unmapped exactly once.
#[test]
fn a_retired_folio_is_not_carved_again() {
    model(|| {
        let cache = cache();
        let mut bucket = ThreadBucket::new(&cache.shared);
        let shadow = Rc::new(Shadow::default());
        let a = carve(&mut bucket, &cache, &shadow, 8, 1);
        let b = carve(&mut bucket, &cache, &shadow, 8, 2);
        let b_end = b.folio_offset() + b.len();
        let folio = b.folio_id();
        b.retire();
        let remote = drop_elsewhere(b, &shadow, 2);
        check_and_drop(a, &shadow, 1);
        let c = carve(&mut bucket, &cache, &shadow, 8, 3);
        assert!(
            c.folio_id() != folio || c.folio_offset() >= b_end,
            "a retired folio was restarted"
        );
        remote.join().unwrap();
        check_and_drop(c, &shadow, 3);
        drop(bucket);
        let s = cache.stats();
        assert_eq!((s.retired, s.folios_live), (1, 0), "{s:?}");
    });
}
