//! When to splice and when to copy: the per-run decision, and the knobs.
//!
//! The defaults follow measurements (`msgsplice bench`; the README keeps
//! the numbers):
//!
//! - Below about 10 KiB of spliceable bytes, the `MSG_ZEROCOPY` completion
//!   costs more than the copy it saves (`msg_zerocopy.rst`), so small runs
//!   are copied.
//! - When the kernel copies anyway (every completion says COPIED: local
//!   delivery over loopback or to a veth peer's socket), zero-copy only adds
//!   the page pinning and the completions on top of that copy, and for
//!   this crate's messages (a small header, 16 KiB to 256 KiB of data, a
//!   small trailer) it measured slower than a plain copy on loopback, over
//!   TCP and over UDP (`--sections tcp,udp`). So by default a socket stops
//!   using zero-copy after 64 consecutive COPIED completions
//!   ([`OnCopied::StopAfter`]), and to a peer on this host (a loopback
//!   address, or the socket's own) it does not start at all, since there
//!   every completion would be COPIED
//!   ([`Builder::skip_zerocopy_to_local_peers`](super::Builder::skip_zerocopy_to_local_peers));
//!   on a path that really transmits from the pages (a NIC), completions
//!   are not COPIED and zero-copy stays on. [`OnCopied::Keep`] keeps it
//!   regardless.
//! - Where completions are not COPIED (a UDP drop sink: a veth whose queue
//!   drops every packet, so nothing is delivered locally), zero-copy cost
//!   less sender CPU per byte than a copy, and the default keeps it on.

use std::time::Duration;

use crate::msg::Segment;

/// Default of [`Builder::read_file_ranges_up_to`](super::Builder::read_file_ranges_up_to):
/// half of a default fragment-cache folio, so that the read lands in a
/// shared folio rather than a mapping of its own.
pub(crate) const DEFAULT_READ_FILES_UP_TO: u64 = 32 << 10;

/// Default of [`Builder::gather_small_runs_up_to`](super::Builder::gather_small_runs_up_to).
pub(crate) const DEFAULT_GATHER_UP_TO: usize = 4 << 10;

/// What to do when the kernel reports that it copied zero-copy data anyway
/// (`SO_EE_CODE_ZEROCOPY_COPIED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnCopied {
    /// Keep sending with zero-copy; only count the reports.
    Keep,
    /// After this many consecutive send ids reported COPIED (with none
    /// zero-copied in between), stop using zero-copy on this socket. The
    /// default is `StopAfter(64)`.
    StopAfter(u32),
}

/// The tunable policy of a [`Splicer`](super::Splicer), set through its
/// [`Builder`](super::Builder).
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) splice: bool,
    pub(crate) zerocopy_threshold: usize,
    pub(crate) max_copy_into_frags: usize,
    pub(crate) completion_batch: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) on_copied: OnCopied,
    pub(crate) drain_timeout: Duration,
    pub(crate) check_file_ranges: bool,
    pub(crate) file_tail_pipe: bool,
    pub(crate) skip_local_peers: bool,
    /// File ranges of at most this many bytes are read into fragments and
    /// sent with the message's memory (stream sockets).
    pub(crate) read_files_up_to: u64,
    /// Unix stream sockets: a copied run of several parts and at most this
    /// many bytes is gathered into one buffer and sent as one.
    pub(crate) gather_up_to: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            splice: true,
            zerocopy_threshold: 10 << 10,
            max_copy_into_frags: 16 << 10,
            completion_batch: 32,
            max_in_flight: 1024,
            on_copied: OnCopied::StopAfter(64),
            drain_timeout: Duration::from_secs(1),
            check_file_ranges: true,
            file_tail_pipe: true,
            skip_local_peers: true,
            read_files_up_to: DEFAULT_READ_FILES_UP_TO,
            gather_up_to: DEFAULT_GATHER_UP_TO,
        }
    }
}

/// The parts of a run of memory segments that the decision looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RunShape {
    /// Bytes in spliceable segments (Frag, Bytes).
    pub(crate) splice_bytes: u64,
    /// Bytes in copy segments (borrowed).
    pub(crate) copy_bytes: u64,
}

impl RunShape {
    /// Counts `len` bytes of segment `s` on the side its kind puts them.
    pub(crate) fn add(&mut self, s: &Segment<'_>, len: u64) {
        if s.is_spliceable() {
            self.splice_bytes += len;
        } else {
            self.copy_bytes += len;
        }
    }
}

impl Policy {
    /// Whether a run should go with `MSG_ZEROCOPY`, given whether zero-copy
    /// is still usable on the socket (`zc_usable`: a TCP or UDP socket that
    /// has not refused `SO_ZEROCOPY`, and zero-copy not stopped or
    /// desynced). Whether the socket can take one more zero-copy send now
    /// (`SO_ZEROCOPY` turned on, room in flight) is asked afterwards, only
    /// for runs this accepts.
    ///
    /// Copy segments of a zero-copy run must first be copied into fragments
    /// (the kernel would otherwise pin memory the caller may reuse at once),
    /// so a run with more than `max_copy_into_frags` of them is sent by a
    /// plain copy instead: the kernel's copy is as cheap as ours.
    pub(crate) fn zerocopy(&self, run: RunShape, zc_usable: bool) -> bool {
        self.splice
            && zc_usable
            && run.splice_bytes >= self.zerocopy_threshold as u64
            && run.copy_bytes <= self.max_copy_into_frags as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_and_copy_limit() {
        let p = Policy::default();
        let shape = |s, c| RunShape {
            splice_bytes: s,
            copy_bytes: c,
        };
        assert!(!p.zerocopy(shape(4 << 10, 0), true), "small: copy");
        assert!(p.zerocopy(shape(16 << 10, 136), true), "large: splice");
        assert!(!p.zerocopy(shape(16 << 10, 136), false), "socket can't");
        assert!(!p.zerocopy(shape(1 << 20, 1 << 20), true), "big copy part");
        let off = Policy {
            splice: false,
            ..Policy::default()
        };
        assert!(!off.zerocopy(shape(1 << 20, 0), true), "SPLICE off");
    }
}
