//! The counters a [`Splicer`] keeps.

#[cfg(doc)]
use super::{OnCopied, Splicer};

/// Counters of one [`Splicer`], from [`Splicer::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendStats {
    /// Messages sent completely.
    pub messages: u64,
    /// System calls made on the socket (sends, `sendfile`, error-queue
    /// reads, polls, `fstat` of file ranges, `setsockopt`).
    pub syscalls: u64,
    /// Bytes handed to the kernel by reference: spliceable memory sent with
    /// `MSG_ZEROCOPY`, and file ranges sent with `sendfile`.
    pub bytes_spliced: u64,
    /// Bytes copied: by the kernel (plain sends) or by the Splicer (copy
    /// segments of a zero-copy run, copied into fragments).
    pub bytes_copied: u64,
    /// File ranges read into fragments to leave with the message's memory
    /// ([`Builder::read_file_ranges_up_to`](super::Builder::read_file_ranges_up_to));
    /// their bytes then count as memory (copied, or spliced by zero-copy).
    pub file_ranges_read: u64,
    /// Unix stream runs of several parts gathered into one buffer first
    /// ([`Builder::gather_small_runs_up_to`](super::Builder::gather_small_runs_up_to)).
    pub runs_gathered: u64,
    /// Successful `MSG_ZEROCOPY` sends (each takes one completion id).
    pub zerocopy_sends: u64,
    /// Zero-copy sends whose completion has not been read yet.
    pub completions_pending: u64,
    /// Zero-copy sends completed.
    pub completions: u64,
    /// Completed zero-copy sends that the kernel reported COPIED.
    pub completions_copied: u64,
    /// Completion notifications read (each covers a range of sends).
    pub notifications: u64,
    /// Completion ids that matched no send in flight (should stay 0).
    pub unexpected_completions: u64,
    /// `ENOBUFS` from a zero-copy send (the socket's option memory full).
    pub enobufs: u64,
    /// Runs copied instead of zero-copied because too many sends were in
    /// flight.
    pub zerocopy_deferred: u64,
    /// Zero-copy was switched off by [`OnCopied::StopAfter`]: after that
    /// many COPIED completions, or at once because the peer is this host
    /// (see [`zerocopy_local_peer`](SendStats::zerocopy_local_peer)).
    pub zerocopy_stopped: bool,
    /// The peer is this host (a loopback address, or the socket's own), so
    /// [`OnCopied::StopAfter`] did not start zero-copy at all: local
    /// delivery copies every page (each completion would say COPIED).
    /// [`OnCopied::Keep`] still uses zero-copy there.
    pub zerocopy_local_peer: bool,
    /// Zero-copy was switched off because a UDP send failed in a way that
    /// leaves it unknown whether the kernel gave it a completion id (for
    /// instance `ENOBUFS` from a full queue on a socket with `IP_RECVERR`):
    /// later completions could no longer be matched to their buffers, and
    /// copying is always safe. Sends already in flight are unaffected.
    pub zerocopy_desynced: bool,
    /// Zero-copy UDP sends the kernel refused after giving them an id (a
    /// GSO segment too large for the path MTU): their ids complete with no
    /// data, so `completions` counts them too.
    pub zerocopy_failed: u64,
    /// Fragments whose completion never came before close: their folios
    /// were retired (unmapped when free, never reused).
    pub retired_on_close: u64,
    /// `Bytes` whose completion never came before close: leaked on purpose
    /// (their memory could otherwise be reused while the kernel reads it).
    pub leaked_on_close: u64,
}
