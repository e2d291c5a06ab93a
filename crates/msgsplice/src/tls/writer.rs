//! Turning a [`Msg`] into sealed records in fragments: the one copy.
//!
//! A batch of a message's plaintext is laid out over as few records as
//! possible: every record but the last carries [`MAX_PLAINTEXT`] bytes,
//! whatever the segment boundaries are (a 128-byte header, 64 KiB of data
//! and an 8-byte trailer make 5 records, not 3 partial ones plus 4). Each
//! record is one fragment of exactly its wire size; the plaintext is
//! gathered into its place there (memory segments by `memcpy`, file ranges
//! by `preadv` straight from the page cache, many records per call), and
//! the AEAD then seals it in place. No plaintext is staged anywhere else.

use std::io::IoSliceMut;
use std::os::fd::BorrowedFd;

use smallvec::SmallVec;

use super::record::{ContentType, Sealer, MAX_PLAINTEXT};
use super::{TlsError, TlsStats};
use crate::frag::{FragCache, FragMut};
use crate::msg::{Msg, Segment};
use crate::send::SendError;

/// Records filled by one `preadv` at most (1 MiB of plaintext).
const PREADV_RECORDS: usize = 64;
/// Alignment of record buffers.
const RECORD_ALIGN: usize = 16;

/// Seals the application data and control messages of one connection.
pub(crate) struct RecordWriter {
    pub(crate) sealer: Sealer,
    cache: FragCache,
    /// The records of the batch being filled; empty between calls.
    recs: Vec<FragMut>,
}

impl RecordWriter {
    pub(crate) fn new(sealer: Sealer, cache: FragCache) -> RecordWriter {
        RecordWriter {
            sealer,
            cache,
            recs: Vec::with_capacity(PREADV_RECORDS),
        }
    }

    /// Records needed for `plain` bytes of application data.
    pub(crate) fn records_for(plain: u64) -> u64 {
        plain.div_ceil(MAX_PLAINTEXT as u64)
    }

    /// Seals the next `len` plaintext bytes of `msg` (at most 2^32), from
    /// its cursor, into records appended to `out`, and advances the cursor.
    /// If gathering fails (a file shorter than its range, a read error, no
    /// memory) nothing is sealed, appended or advanced: the connection is
    /// still usable.
    pub(crate) fn seal_msg(
        &mut self,
        msg: &mut Msg<'_>,
        len: u64,
        out: &mut Msg<'static>,
        stats: &mut TlsStats,
    ) -> Result<(), TlsError> {
        debug_assert!(len <= msg.remaining());
        if len == 0 {
            return Ok(());
        }
        let prefix = self.sealer.prefix_len();
        self.recs.clear();
        let mut left = len;
        while left > 0 {
            let p = left.min(MAX_PLAINTEXT as u64) as usize;
            let rec = self.cache.alloc(self.sealer.record_len(p), RECORD_ALIGN)?;
            self.recs.push(rec);
            left -= p as u64;
        }
        let mut dst = Dest {
            recs: &mut self.recs,
            prefix,
            total: len as usize,
            pos: 0,
        };
        let r = gather(msg, len, &mut dst, stats);
        if let Err(e) = r {
            self.recs.clear();
            return Err(e);
        }
        for mut rec in self.recs.drain(..) {
            self.sealer.seal(ContentType::ApplicationData, &mut rec)?;
            out.push(rec.freeze());
        }
        stats.records += Self::records_for(len);
        stats.plaintext_bytes += len;
        msg.advance(len);
        Ok(())
    }

    /// Seals `data` as one record of type `ty` (an alert, a handshake
    /// message) and appends it to `out`.
    pub(crate) fn seal_control(
        &mut self,
        ty: ContentType,
        data: &[u8],
        out: &mut Msg<'static>,
        stats: &mut TlsStats,
    ) -> Result<(), TlsError> {
        let prefix = self.sealer.prefix_len();
        let mut rec = self
            .cache
            .alloc(self.sealer.record_len(data.len()), RECORD_ALIGN)?;
        rec[prefix..prefix + data.len()].copy_from_slice(data);
        self.sealer.seal(ty, &mut rec)?;
        out.push(rec.freeze());
        stats.records += 1;
        Ok(())
    }
}

/// Copies (memory) or reads (files) `len` bytes of `msg`, from its
/// cursor, into the records' plaintext areas. The cursor is not moved.
fn gather(
    msg: &Msg<'_>,
    len: u64,
    dst: &mut Dest<'_>,
    stats: &mut TlsStats,
) -> Result<(), TlsError> {
    let (mut seg, mut off) = msg.cursor();
    let mut left = len;
    while left > 0 {
        let Some(s) = msg.segments().get(seg) else {
            break; // len <= remaining, so this is not reached
        };
        let take = (s.len() - off).min(left);
        let (a, b) = (off as usize, (off + take) as usize);
        match s {
            Segment::Frag(f) => dst.copy_in(&f[a..b]),
            Segment::Bytes(x) => dst.copy_in(&x[a..b]),
            Segment::Borrowed(x) => dst.copy_in(&x[a..b]),
            Segment::File(r) => {
                let reads = dst.read_in(r.fd(), r.offset() + off, take as usize);
                match reads {
                    Ok(n) => stats.file_reads += n,
                    Err(ReadError::Eof) => {
                        let file_len = rustix::fs::fstat(r.fd())
                            .map(|st| st.st_size as u64)
                            .unwrap_or(0);
                        return Err(TlsError::Send(SendError::PastEof {
                            offset: r.offset(),
                            len: r.len(),
                            file_len,
                        }));
                    }
                    Err(ReadError::Os(e)) => return Err(TlsError::Io(e.into())),
                }
                stats.file_bytes_read += take;
            }
        }
        if !matches!(s, Segment::File(_)) {
            stats.bytes_copied += take;
        }
        left -= take;
        seg += 1;
        off = 0;
    }
    Ok(())
}

enum ReadError {
    /// The file ended before the range did.
    Eof,
    Os(rustix::io::Errno),
}

/// The plaintext areas of a batch's records, seen as one run of bytes:
/// byte `i` of the batch is byte `i % MAX_PLAINTEXT` of record
/// `i / MAX_PLAINTEXT`'s plaintext (every record but the last is full).
struct Dest<'a> {
    recs: &'a mut [FragMut],
    /// Bytes in front of each record's plaintext.
    prefix: usize,
    /// Plaintext bytes of the whole batch.
    total: usize,
    /// Bytes filled so far.
    pos: usize,
}

impl Dest<'_> {
    /// Plaintext bytes of record `i`.
    fn plain_len(total: usize, i: usize) -> usize {
        (total - i * MAX_PLAINTEXT).min(MAX_PLAINTEXT)
    }

    /// Copies `src` in at the current position.
    fn copy_in(&mut self, mut src: &[u8]) {
        while !src.is_empty() {
            let (i, off) = (self.pos / MAX_PLAINTEXT, self.pos % MAX_PLAINTEXT);
            let room = Self::plain_len(self.total, i) - off;
            let n = room.min(src.len());
            let at = self.prefix + off;
            self.recs[i][at..at + n].copy_from_slice(&src[..n]);
            self.pos += n;
            src = &src[n..];
        }
    }

    /// Reads `len` bytes of `fd` from `offset` in at the current position:
    /// `preadv` straight into the records, up to [`PREADV_RECORDS`] of them
    /// per call. Returns the calls made.
    fn read_in(
        &mut self,
        fd: BorrowedFd<'_>,
        mut offset: u64,
        mut len: usize,
    ) -> Result<u64, ReadError> {
        let (prefix, total) = (self.prefix, self.total);
        let mut calls = 0;
        while len > 0 {
            let end = self.pos + len;
            let mut p = self.pos;
            let mut iov: SmallVec<[IoSliceMut<'_>; PREADV_RECORDS]> = SmallVec::new();
            for (i, rec) in self.recs.iter_mut().enumerate().skip(p / MAX_PLAINTEXT) {
                if p == end || iov.len() == PREADV_RECORDS {
                    break;
                }
                let start = i * MAX_PLAINTEXT;
                let stop = end.min(start + Self::plain_len(total, i));
                iov.push(IoSliceMut::new(
                    &mut rec[prefix + p - start..prefix + stop - start],
                ));
                p = stop;
            }
            calls += 1;
            let n = match rustix::io::preadv(fd, &mut iov, offset) {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(ReadError::Os(e)),
            };
            self.pos += n;
            offset += n as u64;
            len -= n;
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_spreads_bytes_over_full_records() {
        let cache = FragCache::new();
        let total = 2 * MAX_PLAINTEXT + 10;
        let mut recs: Vec<FragMut> = [MAX_PLAINTEXT, MAX_PLAINTEXT, 10]
            .iter()
            .map(|&p| cache.alloc(3 + p + 2, 1).unwrap())
            .collect();
        let mut d = Dest {
            recs: &mut recs,
            prefix: 3,
            total,
            pos: 0,
        };
        let src: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        d.copy_in(&src[..5]);
        d.copy_in(&src[5..MAX_PLAINTEXT + 1]);
        d.copy_in(&src[MAX_PLAINTEXT + 1..]);
        assert_eq!(d.pos, total);
        let got: Vec<u8> = recs
            .iter()
            .flat_map(|r| r[3..r.len() - 2].to_vec())
            .collect();
        assert_eq!(got, src);
    }

    #[test]
    fn dest_reads_a_file_across_records() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("msgsplice-tls-dest-{}", std::process::id()));
        let total = 3 * MAX_PLAINTEXT + 7;
        let data: Vec<u8> = (0..total + 100).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::File::create(&dir)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let f = std::fs::File::open(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let cache = FragCache::new();
        let mut recs: Vec<FragMut> = (0..4)
            .map(|i| cache.alloc(5 + Dest::plain_len(total, i) + 17, 1).unwrap())
            .collect();
        let mut d = Dest {
            recs: &mut recs,
            prefix: 5,
            total,
            pos: 0,
        };
        d.copy_in(&data[..3]);
        let calls = d
            .read_in(std::os::fd::AsFd::as_fd(&f), 3, total - 3)
            .ok()
            .unwrap();
        assert_eq!(calls, 1, "one preadv for the whole range");
        let got: Vec<u8> = recs
            .iter()
            .flat_map(|r| r[5..r.len() - 17].to_vec())
            .collect();
        assert_eq!(got, &data[..total]);
        // Past the end of the file.
        let mut d = Dest {
            recs: &mut recs,
            prefix: 5,
            total,
            pos: 0,
        };
        assert!(matches!(
            d.read_in(std::os::fd::AsFd::as_fd(&f), (data.len() - 4) as u64, 10),
            Err(ReadError::Eof)
        ));
    }
}
