//! Registered folios: a [`FragCache`](crate::FragCache) bound to a ring has
//! each folio it maps put in a slot of the ring's sparse buffer table, so
//! that sends from it pin nothing per send.
//!
//! # Design
//!
//! The table is sparse (`IORING_RSRC_REGISTER_SPARSE`): a slot is filled
//! when the cache maps a folio (the pages are pinned there, once) and
//! cleared right before the folio is unmapped. The cache tells us through
//! its folio hook, from whichever thread maps or drops the folio, so the
//! updates go through a duplicate of the ring's descriptor.
//!
//! Unregistering never races a send: a folio is unmapped only after every
//! handle into it is dropped, and the engine holds the fragments of a
//! zero-copy send until its notification. Even so, clearing a slot while a
//! request used it would be safe: the kernel keeps its own reference to the
//! registered pages of a request in flight.
//!
//! Lookups go by address under a mutex. A slot's entry is removed before
//! its folio is unmapped, and a sender looks up only memory it holds a
//! handle to, so an address can never be found in a slot registered for an
//! earlier mapping at the same address.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::frag::FolioHook;
use crate::sys::uring::TableHandle;

/// The registered folios of one ring.
pub(crate) struct FolioTable {
    handle: TableHandle,
    inner: Mutex<Inner>,
    /// Folios registered ever, and folios left unregistered (no slot free,
    /// over the memory budget, or the kernel refused).
    pub(crate) registered: AtomicU64,
    pub(crate) refused: AtomicU64,
}

struct Inner {
    /// Folio base address -> (length, slot).
    by_base: BTreeMap<usize, (usize, u16)>,
    free: Vec<u16>,
    bytes: u64,
    budget: Option<u64>,
}

impl FolioTable {
    /// A table of `slots` over `handle`'s ring (already registered sparse),
    /// registering at most `budget` bytes (`None`: no limit).
    pub(crate) fn new(handle: TableHandle, slots: u16, budget: Option<u64>) -> FolioTable {
        FolioTable {
            handle,
            inner: Mutex::new(Inner {
                by_base: BTreeMap::new(),
                free: (0..slots).rev().collect(),
                bytes: 0,
                budget,
            }),
            registered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slot of the registered folio holding all of `ptr..ptr+len`.
    pub(crate) fn slot_of(&self, ptr: *const u8, len: usize) -> Option<u16> {
        let a = ptr as usize;
        let g = self.lock();
        let (&base, &(flen, slot)) = g.by_base.range(..=a).next_back()?;
        (a + len <= base + flen).then_some(slot)
    }

    /// Folios registered now.
    pub(crate) fn live(&self) -> usize {
        self.lock().by_base.len()
    }
}

impl FolioHook for FolioTable {
    fn mapped(&self, base: *const u8, len: usize) {
        let mut g = self.lock();
        let over = g.budget.is_some_and(|b| g.bytes + len as u64 > b);
        let slot = match g.free.pop() {
            Some(s) if !over => s,
            s => {
                g.free.extend(s);
                self.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if self.handle.set(u32::from(slot), Some((base, len))).is_err() {
            g.free.push(slot);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        g.bytes += len as u64;
        g.by_base.insert(base as usize, (len, slot));
        self.registered.fetch_add(1, Ordering::Relaxed);
    }

    fn unmapped(&self, base: *const u8, _len: usize) {
        let mut g = self.lock();
        let Some((len, slot)) = g.by_base.remove(&(base as usize)) else {
            return;
        };
        // A slot the kernel would not clear stays out of use: it still
        // names the old pages, and must not be given to another folio's
        // lookups (the entry above is gone, so none can find it).
        if self.handle.set(u32::from(slot), None).is_ok() {
            g.free.push(slot);
        }
        g.bytes -= len as u64;
    }
}
