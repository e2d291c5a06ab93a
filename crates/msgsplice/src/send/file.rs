//! File ranges: checked before a message starts, then sent with
//! `sendfile(2)` in large batches, or through a pipe with `splice(2)` when
//! more of the message follows on TCP (the kernel moves page-cache pages
//! into the socket either way; nothing passes through user memory).
//!
//! # Why a pipe for the tail
//!
//! `sendfile` cannot say "more follows": it pushes what it queued when it
//! returns. With `TCP_NODELAY` a header + range + trailer message then
//! leaves as at least two packets (header and range, then the trailer
//! alone), and on loopback each packet costs a trip through the receiver's
//! stack. Splicing the range's last part from the file into a pipe and from
//! the pipe into the socket with `SPLICE_F_MORE` keeps the range corked so
//! that the trailer's `sendmsg` can push it with the rest. That is one
//! system call more and fewer packets, and on loopback more messages per
//! second (the `file` section of `msgsplice bench` measures it against the
//! baselines).
//! A range that ends its message has nothing to wait for and goes by
//! `sendfile` alone.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{fstat, sendfile, FileType};
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};

use super::{SendError, Stop};
use crate::frag::FragCache;
use crate::msg::{FileRange, Msg, Segment};

/// Most bytes asked of one `sendfile` call: the kernel's own cap
/// (`MAX_RW_COUNT`, just under 2 GiB). The kernel moves them in batches of
/// pipe buffers internally, so one call is one system call per range in the
/// common (blocking) case.
const SENDFILE_MAX: u64 = 0x7fff_f000;

/// Checks every file range of a message before its first byte is sent, so
/// that a range past the end of its file fails cleanly instead of leaving
/// the peer with half a message. One `fstat` per range; ranges of files
/// that are not regular (block devices) are left to `sendfile`.
pub(crate) fn check_ranges(segs: &[Segment<'_>]) -> Result<u64, SendError> {
    let mut syscalls = 0;
    for s in segs {
        let Segment::File(r) = s else { continue };
        if r.is_empty() {
            continue;
        }
        syscalls += 1;
        let st = fstat(r.fd()).map_err(io::Error::from)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            continue;
        }
        let file_len = st.st_size as u64;
        let end = r.offset().checked_add(r.len());
        if end.is_none_or(|end| end > file_len) {
            return Err(SendError::PastEof {
                offset: r.offset(),
                len: r.len(),
                file_len,
            });
        }
    }
    Ok(syscalls)
}

/// The file-range steps before a message's first byte, the same for every
/// engine: small ranges read into fragments by the policy's threshold,
/// then, if the policy checks them, the rest measured against their files.
pub(crate) fn prepare_ranges(
    msg: &mut Msg<'_>,
    policy: &super::policy::Policy,
    cache: &FragCache,
    stats: &mut super::SendStats,
) -> Result<(), SendError> {
    if msg.has_file() && policy.read_files_up_to > 0 {
        read_small_ranges(msg, policy.read_files_up_to, cache, stats)?;
    }
    if policy.check_file_ranges && msg.has_file() {
        stats.syscalls += check_ranges(msg.segments())?;
    }
    Ok(())
}

/// Reads every non-empty file range of `msg` of at most `max` bytes into a
/// fragment of `cache` and puts the fragment in the range's place, so the
/// message leaves with its memory in one `sendmsg` instead of a `sendmsg`
/// and a `sendfile` (or two `splice` calls) per range. Called before any
/// byte of the message goes: a file shorter than its range fails here with
/// [`SendError::PastEof`] and nothing is sent, so the bytes a protocol
/// header declared are never followed by fewer. One `pread` per range
/// (more only if the kernel returns a short read).
///
/// A range that cannot be read this way (a file that is not seekable, or a
/// cache out of memory) is left as it is, for `sendfile`.
fn read_small_ranges(
    msg: &mut Msg<'_>,
    max: u64,
    cache: &FragCache,
    stats: &mut super::SendStats,
) -> Result<(), SendError> {
    for i in 0..msg.segments().len() {
        let Segment::File(r) = msg.segments()[i] else {
            continue;
        };
        if r.is_empty() || r.len() > max {
            continue;
        }
        let Ok(mut buf) = cache.alloc(r.len() as usize, 1) else {
            continue;
        };
        match read_exact_at(&r, &mut buf, &mut stats.syscalls) {
            Ok(()) => {
                msg.replace_file(i, buf.freeze());
                stats.file_ranges_read += 1;
            }
            Err(ReadFail::Eof) => return Err(past_eof_error(&r)),
            // Not a regular file (a pipe, a socket): sendfile copes.
            Err(ReadFail::NotSeekable) => {}
            Err(ReadFail::Os(e)) => return Err(SendError::Io(e)),
        }
    }
    Ok(())
}

enum ReadFail {
    Eof,
    NotSeekable,
    Os(io::Error),
}

/// Fills `buf` from the range's first byte, retrying short reads and EINTR.
fn read_exact_at(r: &FileRange<'_>, buf: &mut [u8], syscalls: &mut u64) -> Result<(), ReadFail> {
    let mut done = 0;
    while done < buf.len() {
        *syscalls += 1;
        match rustix::io::pread(r.fd(), &mut buf[done..], r.offset() + done as u64) {
            Ok(0) => return Err(ReadFail::Eof),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::SPIPE | rustix::io::Errno::INVAL) if done == 0 => {
                return Err(ReadFail::NotSeekable)
            }
            Err(e) => return Err(ReadFail::Os(e.into())),
        }
    }
    Ok(())
}

/// One `sendfile` of at most `count` bytes of the range from byte `done`
/// of it. Returns the bytes sent (`Ok(0)` never happens for a non-empty
/// rest: a file that shrank under us is reported as
/// [`SendError::PastEof`]).
pub(crate) fn send_part(
    sock: BorrowedFd<'_>,
    r: &FileRange<'_>,
    done: u64,
    count: u64,
) -> Result<usize, Stop> {
    let mut off = r.offset() + done;
    let count = count.min(r.len() - done).min(SENDFILE_MAX) as usize;
    match sendfile(sock, r.fd(), Some(&mut off), count) {
        Ok(0) => Err(past_eof(r)),
        Ok(n) => Ok(n),
        Err(e) => Err(Stop::Os(e.into())),
    }
}

fn past_eof(r: &FileRange<'_>) -> Stop {
    Stop::Typed(past_eof_error(r))
}

/// [`SendError::PastEof`] for a range its file no longer holds, with the
/// file's length now (0 if even `fstat` fails).
fn past_eof_error(r: &FileRange<'_>) -> SendError {
    let file_len = fstat(r.fd()).map(|s| s.st_size as u64).unwrap_or(0);
    SendError::PastEof {
        offset: r.offset(),
        len: r.len(),
        file_len,
    }
}

/// Pipe size asked for: the kernel's default `pipe-max-size`. The kernel
/// may give less (an unprivileged user over `pipe-user-pages-soft`); the
/// pipe works at any size, with more calls per range.
const PIPE_SIZE: usize = 1 << 20;

/// A Splicer's pipe for range tails (see the module documentation). Made on
/// first use; two file descriptors per Splicer that sends such messages.
pub(crate) struct TailPipe {
    rd: OwnedFd,
    wr: OwnedFd,
    /// Bytes one fill is sure to fit: a page less than the pipe's size, as
    /// a range that starts mid-page takes one more page slot.
    cap: u64,
    /// Bytes in the pipe, not yet taken by the socket.
    held: u64,
    /// Where those bytes come from: the file and its offset of the first.
    src: (RawFd, u64),
}

impl TailPipe {
    /// A new, empty pipe; `syscalls` counts the calls made.
    pub(crate) fn new(syscalls: &mut u64) -> io::Result<TailPipe> {
        *syscalls += 2;
        let (rd, wr) = pipe_with(PipeFlags::CLOEXEC)?;
        let size = match fcntl_setpipe_size(&wr, PIPE_SIZE) {
            Ok(n) => n,
            Err(_) => {
                *syscalls += 1;
                fcntl_getpipe_size(&wr)?
            }
        };
        let page = rustix::param::page_size();
        Ok(TailPipe {
            rd,
            wr,
            cap: size.saturating_sub(page).max(page) as u64,
            held: 0,
            src: (-1, 0),
        })
    }

    /// Bytes one fill takes at most.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// True if the pipe holds bytes not yet taken by the socket.
    pub(crate) fn holds_bytes(&self) -> bool {
        self.held > 0
    }

    /// True if the pipe holds bytes that are not the range's from byte
    /// `done` on: left by a message abandoned half-way. The caller then
    /// makes a new pipe rather than send them.
    pub(crate) fn is_stale(&self, r: &FileRange<'_>, done: u64) -> bool {
        self.held > 0 && self.src != (r.fd().as_raw_fd(), r.offset() + done)
    }

    /// Moves the range from byte `done` towards the socket: fills the pipe
    /// from the file if it is empty (at most `cap` bytes), then splices what
    /// it holds into the socket with `SPLICE_F_MORE`. Returns the bytes the
    /// socket took; what it did not take stays in the pipe for the next
    /// call with the same range and position.
    pub(crate) fn send_part(
        &mut self,
        sock: BorrowedFd<'_>,
        r: &FileRange<'_>,
        done: u64,
        syscalls: &mut u64,
    ) -> Result<usize, Stop> {
        debug_assert!(!self.is_stale(r, done));
        if self.held == 0 {
            let at = r.offset() + done;
            let want = (r.len() - done).min(self.cap) as usize;
            let mut off = at;
            *syscalls += 1;
            // No SPLICE_F_NONBLOCK: the pipe is empty, so this never waits
            // for room, and the file read may block as sendfile's does.
            match splice(
                r.fd(),
                Some(&mut off),
                &self.wr,
                None,
                want,
                SpliceFlags::empty(),
            ) {
                Ok(0) => return Err(past_eof(r)),
                Ok(n) => {
                    self.held = n as u64;
                    self.src = (r.fd().as_raw_fd(), at);
                }
                Err(e) => return Err(Stop::Os(e.into())),
            }
        }
        *syscalls += 1;
        // Never more than the pipe holds, so a blocking call cannot wait
        // on the pipe (only on the socket, as a send would).
        match splice(
            &self.rd,
            None,
            sock.as_fd(),
            None,
            self.held as usize,
            SpliceFlags::MORE,
        ) {
            Ok(n) => {
                self.held -= n as u64;
                self.src.1 += n as u64;
                Ok(n)
            }
            Err(e) => Err(Stop::Os(e.into())),
        }
    }
}
