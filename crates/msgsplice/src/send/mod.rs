//! The send engine: [`Splicer`] sends a [`Msg`] over a socket, splicing what
//! can be spliced and copying the rest.
//!
//! # How a message travels
//!
//! - **Memory only** (the common case): one `sendmsg` with every segment in
//!   the `iovec` array (beyond `IOV_MAX` = 1024 segments, one call per 1024,
//!   corked with `MSG_MORE`). With SPLICE on, over TCP or UDP, a run with at least
//!   [`Builder::zerocopy_threshold`] spliceable bytes goes with
//!   `MSG_ZEROCOPY`: the kernel pins the pages of its [`Frag`]s and
//!   [`Bytes`] and the Splicer keeps them referenced until the kernel
//!   reports completion; its copy segments are first copied into fragments
//!   so that the message still goes in one call. Otherwise the kernel
//!   copies.
//! - **With file ranges** (stream sockets only): the memory before a range
//!   goes with `MSG_MORE`, the range by `sendfile` (one call for the whole
//!   range when the socket has room), then the rest. The peer receives one
//!   contiguous message. Over TCP, a range that more of the message follows
//!   goes (its last MiB, or all of a smaller one) through a pipe by two
//!   `splice` calls with `SPLICE_F_MORE` instead, so that the trailer can
//!   leave in the same packet ([`Builder::file_tail_pipe`]).
//! - **UDP** (v4 and v6, connected, or with a destination per message by
//!   [`Splicer::send_to`]): one message is one datagram, sent by one
//!   `sendmsg`, zero-copy as above. With a GSO segment size
//!   ([`Builder::gso_segment`], [`Splicer::set_gso_segment`]) the call
//!   carries a `UDP_SEGMENT` control message, and a message of up to
//!   [`MAX_UDP_PAYLOAD_V4`] bytes leaves as segments of that size. Limits
//!   (datagram size, [`MAX_GSO_SEGMENTS`]) are checked before any byte is
//!   sent; file ranges are refused ([`SendError::FileOnRecordSocket`]).
//!   A zero-copy datagram whose pages would not fit one socket buffer's
//!   fragment list (17 pages) is copied instead, since the kernel would
//!   refuse it.
//! - **Unix sockets** copy memory (`SO_ZEROCOPY` is TCP and UDP only).
//!   Datagram and seqpacket sockets send a message as one record.
//!
//! # Progress and errors
//!
//! The `Msg` carries its cursor. A short write resumes at the exact byte,
//! across segment boundaries, within the same call; `EINTR` is retried.
//! When a non-blocking socket is full, [`Splicer::send`] returns what went
//! (or [`SendError::WouldBlock`] if nothing did) and the next call with the
//! same `Msg` resumes. No kernel error panics.
//!
//! # Costs
//!
//! In steady state a memory-only message costs one system call and no heap
//! allocation: the `iovec` array and the completion queues are reused, and
//! copy segments of zero-copy runs go into fragments (a bump allocation).
//! Zero-copy adds one error-queue read per [`Builder::completion_batch`]
//! sends, amortised.

mod builder;
pub(crate) mod completion;
mod error;
pub(crate) mod file;
pub(crate) mod policy;
pub(crate) mod run;
pub(crate) mod stats;
pub(crate) mod udp;
pub(crate) mod zerocopy;

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use bytes::Bytes;

pub use builder::{Builder, SocketKind};
pub use error::SendError;
pub use policy::OnCopied;
pub use stats::SendStats;
pub use udp::{MAX_GSO_SEGMENTS, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};

use completion::Held;
use policy::Policy;
use run::{
    copy_into_frags, fill_record, memory_parts, must_gather, push_run, push_with_copies,
    send_stream_run,
};
use zerocopy::ZeroCopy;

use crate::frag::{Frag, FragCache};
use crate::msg::{FileRange, Msg, Segment};
use crate::sys::sendmsg::{IovScratch, MSG_MORE, MSG_NOSIGNAL};

/// Why a step of a send stopped.
pub(crate) enum Stop {
    /// An error from the kernel, still to classify (EINTR, EAGAIN, ...).
    Os(io::Error),
    /// Already typed.
    Typed(SendError),
}

/// Sends [`Msg`]s over one socket, splicing what it can.
///
/// Owns (or borrows, with `S = &T`) the socket. Dropping it waits up to
/// [`Builder::drain_timeout`] for zero-copy sends in flight, then retires
/// what is left, so the kernel never reads recycled memory.
///
/// ```
/// use std::io::Read;
/// use std::os::unix::net::UnixStream;
/// use msgsplice::{FragCache, Msg, Splicer};
///
/// let (a, mut b) = UnixStream::pair()?;
/// let mut splicer = Splicer::new(a)?;
/// let page = FragCache::global().memdup(&[42u8; 4096])?;
///
/// let mut msg = Msg::new();
/// msg.push(b"HEAD").push(page).push(b"TAIL".to_vec());
/// splicer.send(&mut msg)?; // one sendmsg for the whole message
/// assert!(msg.is_sent());
///
/// let mut got = vec![0u8; 4 + 4096 + 4];
/// b.read_exact(&mut got)?;
/// assert_eq!(&got[..4], b"HEAD");
/// assert!(got[4..4100].iter().all(|&x| x == 42));
/// assert_eq!(splicer.stats().syscalls, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Splicer<S: AsFd> {
    sock: S,
    kind: SocketKind,
    policy: Policy,
    zc: ZeroCopy,
    iov: IovScratch,
    /// Copy segments of the current zero-copy run, copied into fragments.
    copies: Vec<Frag>,
    /// Record sockets: a message of more than IOV_MAX segments, gathered;
    /// Unix streams: a small copied run, gathered.
    bounce: Vec<u8>,
    cache: FragCache,
    stats: SendStats,
    /// UDP sockets: family and GSO segment size.
    udp: Option<udp::Udp>,
    /// TCP: the pipe for file-range tails, made on first use.
    pipe: Option<file::TailPipe>,
    /// Making the pipe failed once: file ranges use sendfile only.
    pipe_failed: bool,
}

impl<S: AsFd> Splicer<S> {
    /// A Splicer with the default settings (SPLICE on). Finds the socket's
    /// kind; fails with [`SendError::NotASocket`] or
    /// [`SendError::UnsupportedSocket`].
    pub fn new(sock: S) -> Result<Splicer<S>, SendError> {
        Builder::default().build(sock)
    }

    pub(crate) fn from_parts(sock: S, kind: SocketKind, b: Builder) -> Splicer<S> {
        let mut iov = IovScratch::default();
        iov.reserve(64);
        Splicer {
            sock,
            kind,
            policy: b.policy,
            zc: ZeroCopy::new(kind.supports_zerocopy()),
            iov,
            copies: Vec::with_capacity(8),
            bounce: Vec::new(),
            cache: b.cache.unwrap_or_else(|| FragCache::global().clone()),
            stats: SendStats::default(),
            udp: None,
            pipe: None,
            pipe_failed: false,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The socket's kind.
    pub fn kind(&self) -> SocketKind {
        self.kind
    }

    /// True while the SPLICE hint is on (see [`set_splice`](Splicer::set_splice)).
    pub fn is_splicing(&self) -> bool {
        self.policy.splice
    }

    /// Turns the SPLICE hint on or off for the following sends. Sends in
    /// flight are unaffected.
    pub fn set_splice(&mut self, on: bool) {
        self.policy.splice = on;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SendStats {
        let mut s = self.stats;
        s.completions_pending = self.zc.tracker.pending() as u64;
        s
    }

    /// Zero-copy sends whose buffers are still held for the kernel.
    pub fn in_flight(&self) -> usize {
        self.zc.tracker.pending()
    }

    /// Sends `msg` from its cursor, and advances the cursor.
    ///
    /// Returns the bytes sent by this call. On a blocking socket that is the
    /// whole rest of the message. On a non-blocking socket it may be less:
    /// check [`Msg::is_sent`], wait until the socket is writable, and call
    /// again with the same `msg`; if not a byte could go, the error is
    /// [`SendError::WouldBlock`]. A message that is already sent returns 0.
    ///
    /// On a datagram or seqpacket socket (UDP included) the message is one
    /// record: all of it goes, or none and an error says why. A UDP socket
    /// must be connected here (or see [`send_to`](Splicer::send_to)).
    ///
    /// Costs: one `sendmsg` for a memory-only message of up to 1024
    /// segments; with file ranges, one `fstat` per range (checked before
    /// anything is sent, unless [`Builder::check_file_ranges`] is off), one
    /// `sendmsg` per run of memory between them, and per range one
    /// `sendfile`, or over TCP, when more of the message follows the range,
    /// two `splice` calls (plus one `sendfile` for a range over 1 MiB;
    /// [`Builder::file_tail_pipe`]).
    pub fn send(&mut self, msg: &mut Msg<'_>) -> Result<u64, SendError> {
        if msg.is_sent() && msg.sent() > 0 {
            return Ok(0);
        }
        if msg.sent() == 0 {
            if self.kind.is_record() {
                if msg.has_file() {
                    return Err(SendError::FileOnRecordSocket);
                }
                if self.kind == SocketKind::Udp {
                    return self.send_datagram(msg, None);
                }
                return self.send_record(msg);
            }
            if self.pipe.as_ref().is_some_and(|p| p.holds_bytes()) {
                // Left by another message (or by this one's first try,
                // which then only refills): a message starting over cannot
                // own them, whatever file descriptor numbers match.
                self.pipe = None;
            }
            file::prepare_ranges(msg, &self.policy, &self.cache, &mut self.stats)?;
        }
        let mut progress = 0u64;
        loop {
            msg.advance(0); // step over empty segments
            if msg.is_sent() {
                break;
            }
            let (seg, off) = msg.cursor();
            let step = match &msg.segments()[seg] {
                Segment::File(r) => {
                    let n = self.send_file(r, off, msg.remaining());
                    if let Ok(n) = n {
                        self.stats.bytes_spliced += n as u64;
                    }
                    n
                }
                _ => self.send_run(msg, seg, off),
            };
            match step {
                Ok(n) => {
                    msg.advance(n as u64);
                    progress += n as u64;
                }
                Err(Stop::Os(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(Stop::Os(e)) if e.raw_os_error() == Some(libc::EAGAIN) && progress > 0 => {
                    return Ok(progress);
                }
                Err(Stop::Os(e)) => return Err(SendError::from_os(e, msg.len())),
                Err(Stop::Typed(e)) => return Err(e),
            }
        }
        self.stats.messages += 1;
        Ok(progress)
    }

    /// Reads the completions already queued, without blocking, and releases
    /// the buffers of completed sends. Returns the sends completed. Sends do
    /// this by themselves every [`Builder::completion_batch`] sends; call it
    /// when the socket is idle to let folios be recycled sooner.
    pub fn poll_completions(&mut self) -> Result<u64, SendError> {
        let fd = self.sock.as_fd();
        Ok(self
            .zc
            .drain(fd, &self.policy, &mut self.stats, usize::MAX)?)
    }

    /// Waits up to `timeout` until every zero-copy send has completed.
    /// Returns true if none is left in flight.
    pub fn wait_completions(&mut self, timeout: Duration) -> Result<bool, SendError> {
        let fd = self.sock.as_fd();
        Ok(self.zc.wait(fd, timeout, &self.policy, &mut self.stats)?)
    }

    /// Waits for sends in flight up to [`Builder::drain_timeout`], retires
    /// what is left, and returns the final counters (see
    /// [`SendStats::retired_on_close`]). Then closes the socket if owned.
    pub fn close(mut self) -> SendStats {
        self.finish();
        self.stats()
    }

    /// How long [`close`](Splicer::close) and drop wait for sends in flight
    /// ([`Builder::drain_timeout`]). For callers that wait in their own way
    /// (an async runtime's timer) before [`retire_in_flight`](Splicer::retire_in_flight).
    pub fn drain_timeout(&self) -> Duration {
        self.policy.drain_timeout
    }

    /// Gives up, without waiting, on the zero-copy sends still in flight:
    /// their fragments' folios are retired and their `Bytes` leaked, as at
    /// the end of [`close`](Splicer::close) (see
    /// [`SendStats::retired_on_close`]). No system call. Then nothing is in
    /// flight, so dropping the Splicer does not wait. Meant for callers that
    /// did the waiting themselves; no later send should follow on this
    /// socket, since completions for the abandoned sends may still arrive.
    pub fn retire_in_flight(&mut self) {
        let (retired, leaked) = self.zc.tracker.abandon();
        self.stats.retired_on_close += retired;
        self.stats.leaked_on_close += leaked;
    }

    fn finish(&mut self) {
        if self.zc.tracker.pending() == 0 {
            return;
        }
        let fd = self.sock.as_fd();
        let timeout = self.policy.drain_timeout;
        // An error reading completions is the same as their never coming.
        let _ = self.zc.wait(fd, timeout, &self.policy, &mut self.stats);
        self.retire_in_flight();
    }

    /// One step of a file range from byte `done` of it, `remaining` bytes
    /// being left in the message: by `sendfile`, or, for a TCP range with
    /// more of the message after it, its last part through the tail pipe
    /// with `SPLICE_F_MORE` (see [`file`](mod@file)).
    fn send_file(&mut self, r: &FileRange<'_>, done: u64, remaining: u64) -> Result<usize, Stop> {
        let left = r.len() - done;
        let mut count = left;
        if remaining > left && self.kind == SocketKind::Tcp && self.policy.file_tail_pipe {
            if self.pipe.as_ref().is_some_and(|p| p.is_stale(r, done)) {
                self.pipe = None;
            }
            if self.pipe.is_none() && !self.pipe_failed {
                match file::TailPipe::new(&mut self.stats.syscalls) {
                    Ok(p) => self.pipe = Some(p),
                    // Out of file descriptors, say: sendfile still works.
                    Err(_) => self.pipe_failed = true,
                }
            }
            if let Some(p) = &mut self.pipe {
                if left <= p.cap() {
                    let sock = self.sock.as_fd();
                    let n = p.send_part(sock, r, done, &mut self.stats.syscalls);
                    if let Err(Stop::Os(e)) = &n {
                        if !matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) {
                            // What the pipe holds will never be wanted.
                            self.pipe = None;
                        }
                    }
                    return n;
                }
                // The range's head by sendfile; its tail through the pipe.
                count = left - p.cap();
            }
        }
        self.stats.syscalls += 1;
        file::send_part(self.sock.as_fd(), r, done, count)
    }

    /// One `sendmsg` of the run of memory segments that starts at segment
    /// `first`, byte `off`: up to the next file range or `IOV_MAX` buffers.
    fn send_run(&mut self, msg: &Msg<'_>, first: usize, off: u64) -> Result<usize, Stop> {
        let segs = msg.segments();
        let mut batch = self.iov.batch();
        let (end, bytes, shape) = push_run(&mut batch, segs, first, off);
        let run = &segs[first..end];
        let fd = self.sock.as_fd();
        let mut zc = self.policy.zerocopy(shape, self.zc.usable())
            && self.zc.ready(fd, &self.policy, &mut self.stats);
        if !zc {
            self.zc.reap(fd, &self.policy, &mut self.stats);
            if self.kind == SocketKind::UnixStream
                && batch.len() > 1
                && bytes <= self.policy.gather_up_to as u64
            {
                // One buffer by `send(2)` costs the kernel less than several
                // parts by `sendmsg(2)` (see `Builder::gather_small_runs_up_to`).
                drop(batch);
                self.bounce.clear();
                for (_, data) in memory_parts(run, off) {
                    self.bounce.extend_from_slice(data);
                }
                self.stats.runs_gathered += 1;
                self.stats.syscalls += 1;
                let mut flags = rustix::net::SendFlags::NOSIGNAL;
                if bytes < msg.remaining() {
                    flags |= rustix::net::SendFlags::MORE;
                }
                return match rustix::net::send(fd, &self.bounce, flags) {
                    Ok(n) => {
                        self.stats.bytes_copied += n as u64;
                        Ok(n)
                    }
                    Err(e) => Err(Stop::Os(e.into())),
                };
            }
        } else if shape.copy_bytes > 0 {
            // The batch is refilled with the copies in place of the copy
            // segments.
            zc = copy_into_frags(&self.cache, &mut self.copies, run, off);
            if zc {
                batch.clear();
                push_with_copies(&mut batch, run, off, &self.copies);
            }
        }
        let more = if bytes < msg.remaining() { MSG_MORE } else { 0 };
        let (r, zc) = send_stream_run(
            &batch,
            fd,
            MSG_NOSIGNAL | more,
            zc,
            &mut self.zc,
            &self.policy,
            &mut self.stats,
        );
        drop(batch);
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.copies.clear();
                return Err(Stop::Os(e));
            }
        };
        if !zc || n == 0 {
            self.copies.clear();
            self.stats.bytes_copied += n as u64;
            return Ok(n);
        }
        self.hold_sent(run, off, n as u64);
        Ok(n)
    }

    /// After a zero-copy send took `n` bytes of `run` (from byte `off` of
    /// its first segment): holds every buffer the kernel took bytes of (the
    /// spliceable segments themselves, and the fragments in `self.copies`
    /// that copy segments were copied into) until the send completes, and
    /// records the send.
    fn hold_sent(&mut self, run: &[Segment<'_>], off: u64, n: u64) {
        let mut left = n;
        let mut copies = self.copies.drain(..);
        for (s, data) in memory_parts(run, off) {
            if left == 0 {
                break;
            }
            let len = (data.len() as u64).min(left);
            left -= len;
            let held = match s {
                Segment::Frag(f) => Held::Frag(f.clone()),
                Segment::Bytes(b) => Held::Bytes(Bytes::clone(b)),
                _ => match copies.next() {
                    Some(c) => Held::Frag(c),
                    None => continue,
                },
            };
            if s.is_spliceable() {
                self.stats.bytes_spliced += len;
            } else {
                self.stats.bytes_copied += len;
            }
            self.zc.tracker.hold(held);
        }
        drop(copies);
        self.zc.tracker.commit();
        self.stats.zerocopy_sends += 1;
    }

    /// A datagram or seqpacket message: one `sendmsg`, all or nothing.
    fn send_record(&mut self, msg: &mut Msg<'_>) -> Result<u64, SendError> {
        let fd = self.sock.as_fd();
        let segs = msg.segments();
        let mut batch = self.iov.batch();
        fill_record(&mut batch, segs, &[], &mut self.bounce, must_gather(segs));
        let n = loop {
            self.stats.syscalls += 1;
            match batch.sendmsg(fd, MSG_NOSIGNAL) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(SendError::from_os(e, msg.len())),
                Ok(n) => break n as u64,
            }
        };
        drop(batch);
        self.stats.bytes_copied += n;
        self.finish_record(msg, n)
    }

    /// After the kernel took `n` bytes of a record: moves the cursor and
    /// counts the message, which must now be sent whole.
    fn finish_record(&mut self, msg: &mut Msg<'_>, n: u64) -> Result<u64, SendError> {
        msg.advance(n);
        if !msg.is_sent() {
            return Err(SendError::Io(io::Error::other(
                "the kernel took part of a record",
            )));
        }
        self.stats.messages += 1;
        Ok(n)
    }
}

impl<S: AsFd> Drop for Splicer<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<S: AsFd> AsFd for Splicer<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl<S: AsFd> std::fmt::Debug for Splicer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Splicer")
            .field("kind", &self.kind)
            .field("splice", &self.policy.splice)
            .field("stats", &self.stats())
            .finish()
    }
}
