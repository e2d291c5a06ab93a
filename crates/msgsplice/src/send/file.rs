//! File ranges: checked before a message starts, then sent with
//! `sendfile(2)` in large batches (the kernel splices page-cache pages into
//! the socket; nothing passes through user memory).

use std::io;
use std::os::fd::BorrowedFd;

use rustix::fs::{fstat, sendfile, FileType};

use super::{SendError, Stop};
use crate::msg::{FileRange, Segment};

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

/// One `sendfile` of the range from byte `done` of it. Returns the bytes
/// sent (`Ok(0)` never happens for a non-empty rest: a file that shrank
/// under us is reported as [`SendError::PastEof`]).
pub(crate) fn send_part(sock: BorrowedFd<'_>, r: &FileRange<'_>, done: u64) -> Result<usize, Stop> {
    let left = r.len() - done;
    let mut off = r.offset() + done;
    let count = left.min(SENDFILE_MAX) as usize;
    match sendfile(sock, r.fd(), Some(&mut off), count) {
        Ok(0) => {
            let file_len = fstat(r.fd()).map(|s| s.st_size as u64).unwrap_or(0);
            Err(Stop::Typed(SendError::PastEof {
                offset: r.offset(),
                len: r.len(),
                file_len,
            }))
        }
        Ok(n) => Ok(n),
        Err(e) => Err(Stop::Os(e.into())),
    }
}
