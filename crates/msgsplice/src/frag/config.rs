//! The settings of a [`FragCache`] and the builder that checks them.

use super::buckets::Buckets;
use super::pool::{Shared, MIN_FOLIO};
use super::{FragCache, FragError};
use crate::sys::mmap::HUGE_PAGE;

/// How buckets are keyed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BucketMode {
    /// One bucket per thread that allocates (the default). No lock at all:
    /// a thread-local lookup and a bump. Measured faster than per-CPU here
    /// (see the README's allocator table).
    PerThread,
    /// One bucket per CPU, chosen with `sched_getcpu` and guarded by an
    /// uncontended mutex (a thread can migrate between the lookup and the
    /// bump, so user space cannot go lock-free as the kernel does with
    /// preemption off). Fewer partly used folios with many threads.
    PerCpu,
}

/// Settings of a [`FragCache`]; build one with [`FragCache::builder`].
#[derive(Clone, Debug)]
pub(super) struct Config {
    pub(super) folio_size: usize,
    pub(super) mode: BucketMode,
    pub(super) max_cached: usize,
    pub(super) poison: Option<u8>,
    pub(super) fail_maps_over: Option<usize>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            folio_size: 64 << 10,
            mode: BucketMode::PerThread,
            max_cached: 8 << 20,
            poison: None,
            fail_maps_over: None,
        }
    }
}

/// Builder for a [`FragCache`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    cfg: Config,
}

impl Builder {
    /// Folio size in bytes: a power of two from 4 KiB to 2 MiB (default
    /// 64 KiB). At 2 MiB folios are aligned and advised `MADV_HUGEPAGE`.
    pub fn folio_size(mut self, bytes: usize) -> Builder {
        self.cfg.folio_size = bytes;
        self
    }

    /// Per-thread (default) or per-CPU buckets.
    pub fn bucket_mode(mut self, mode: BucketMode) -> Builder {
        self.cfg.mode = mode;
        self
    }

    /// Bytes of unused folios kept for reuse (default 8 MiB, at least two
    /// folios). Folios freed beyond this are unmapped, so a burst does not
    /// pin memory forever.
    pub fn max_cached_bytes(mut self, bytes: usize) -> Builder {
        self.cfg.max_cached = bytes;
        self
    }

    /// Debug mode: fill every folio with `byte` when it is recycled, so that
    /// anyone still reading it (a kernel send that was not waited for) sees
    /// the poison instead of plausible data. Costs a memset per recycle.
    pub fn poison_recycled(mut self, byte: u8) -> Builder {
        self.cfg.poison = Some(byte);
        self
    }

    /// Fault injection for tests: pretend every mapping larger than `bytes`
    /// fails, to exercise the fall-back to smaller folios.
    #[doc(hidden)]
    pub fn fail_maps_over(mut self, bytes: usize) -> Builder {
        self.cfg.fail_maps_over = Some(bytes);
        self
    }

    /// Checks the settings and creates the cache. No memory is mapped until
    /// the first allocation.
    pub fn build(self) -> Result<FragCache, FragError> {
        let c = self.cfg;
        if !c.folio_size.is_power_of_two() || !(MIN_FOLIO..=HUGE_PAGE).contains(&c.folio_size) {
            return Err(FragError::BadFolioSize(c.folio_size));
        }
        let buckets = Buckets::new(c.mode);
        Ok(FragCache {
            shared: Shared::new(c, buckets),
        })
    }
}
