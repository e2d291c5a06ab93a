//! Anonymous private mappings: the memory that folios are cut from.
//!
//! Wraps `mmap(2)`, `munmap(2)` and `madvise(2)` (`MADV_HUGEPAGE`,
//! `MADV_POPULATE_WRITE`) through rustix.

use std::ffi::c_void;
use std::io;
use std::ptr::NonNull;

use rustix::mm::{self, Advice, MapFlags, ProtFlags};

/// The size of a huge page on x86_64 and aarch64 with 4 KiB base pages.
pub(crate) const HUGE_PAGE: usize = 2 << 20;

/// An owned, readable and writable, anonymous private mapping.
///
/// The memory is always initialised (the kernel hands out zeroed pages), so
/// viewing any of it as `[u8]` is sound. Unmapped on drop. Pages that the
/// kernel still holds (a zero-copy send in flight) stay alive inside the
/// kernel after `munmap`, so unmapping can never make the kernel read
/// someone else's data.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Where the mapping really starts and its length, when it was
    /// over-allocated to align `ptr` (huge pages).
    raw: (NonNull<u8>, usize),
}

// SAFETY: a Mapping is plain memory with no thread affinity; access to its
// contents is governed by the users of `as_ptr`.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only exposes the address and length.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes (a multiple of the page size) and prefaults them.
    ///
    /// With `huge`, the mapping is aligned to 2 MiB and advised with
    /// `MADV_HUGEPAGE` so that transparent huge pages can back it.
    pub(crate) fn new(len: usize, huge: bool) -> io::Result<Mapping> {
        let align = if huge { HUGE_PAGE } else { 1 };
        let raw_len = len
            .checked_add(align - 1)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing aliases nothing in this process.
        let raw = unsafe {
            mm::mmap_anonymous(
                std::ptr::null_mut(),
                raw_len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )?
        };
        let raw =
            NonNull::new(raw.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        let start = (raw.as_ptr() as usize).next_multiple_of(align);
        let ptr = NonNull::new(start as *mut u8).expect("inside a non-null mapping");
        let map = Mapping {
            ptr,
            len,
            raw: (raw, raw_len),
        };
        if huge {
            // Best effort: a kernel without THP still gives us normal pages.
            // SAFETY: the range is inside the mapping we own.
            let _ =
                unsafe { mm::madvise(ptr.as_ptr().cast::<c_void>(), len, Advice::LinuxHugepage) };
        }
        map.prefault();
        Ok(map)
    }

    /// Faults every page in now, so the first send from a new folio does not
    /// pay for page faults. `MADV_POPULATE_WRITE` (Linux 5.14) where it
    /// exists, one write per page otherwise.
    fn prefault(&self) {
        // SAFETY: the range is inside the mapping we own.
        let r = unsafe {
            mm::madvise(
                self.ptr.as_ptr().cast::<c_void>(),
                self.len,
                Advice::LinuxPopulateWrite,
            )
        };
        if r.is_err() {
            let page = rustix::param::page_size();
            for off in (0..self.len).step_by(page) {
                // SAFETY: off < len, inside the mapping; nobody else holds
                // this memory yet.
                unsafe { self.ptr.as_ptr().add(off).write_volatile(0) };
            }
        }
    }

    /// The first byte of the mapping.
    pub(crate) fn as_ptr(&self) -> NonNull<u8> {
        self.ptr
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the whole raw range, and no reference into it can
        // outlive the Mapping (folios free their mapping only after the
        // last Frag into it is gone).
        let _ = unsafe { mm::munmap(self.raw.0.as_ptr().cast::<c_void>(), self.raw.1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_zeroed_writable_memory() {
        let m = Mapping::new(64 << 10, false).unwrap();
        // SAFETY: the mapping is ours and initialised.
        let s = unsafe { std::slice::from_raw_parts_mut(m.as_ptr().as_ptr(), m.len()) };
        assert!(s.iter().all(|&b| b == 0));
        s[0] = 1;
        s[m.len() - 1] = 2;
        assert_eq!(s[0] + s[m.len() - 1], 3);
    }

    #[test]
    fn huge_mappings_are_aligned() {
        let m = Mapping::new(HUGE_PAGE, true).unwrap();
        assert_eq!(m.as_ptr().as_ptr() as usize % HUGE_PAGE, 0);
        assert_eq!(m.len(), HUGE_PAGE);
    }
}
