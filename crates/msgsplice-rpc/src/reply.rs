//! Reply framing: a reply is head + data + tail, sent as one message.
//!
//! The three parts follow the kernel's `xdr_buf`: the *head* holds the
//! record marker, the RPC reply header and the procedure's fixed results;
//! the *data* is bulk payload (file pages); the *tail* holds the XDR padding
//! of the data and any results that follow it.
//!
//! The head is built in a [`FragBuf`] with 4 bytes of headroom. Once the
//! whole reply is known, [`ReplyBuilder::finish`] writes the record marker
//! into that headroom, in place: the marker needs no allocation and no
//! separate buffer. The tail lives inline in the [`Reply`] (at most
//! [`TAIL_CAPACITY`] bytes).
//!
//! [`ReplyBuilder::accepted`], [`Reply::accepted`] and [`Reply::denied`]
//! start a head with the RPC reply header, so a program writes only its
//! results.
//!
//! A transport turns a [`Reply`] into one send:
//! [`SplicerTransport`](crate::transport::SplicerTransport) as one message
//! of segments, [`SocketTransport`](crate::transport::SocketTransport) with
//! `writev`/`sendfile`.

use std::fs::File;
use std::sync::Arc;

use bytes::BufMut;
use msgsplice::frag::{Frag, FragBuf, FragCache, FragError};

use crate::record::{last_fragment_marker, MAX_FRAGMENT};
use crate::rpc::{
    put_accepted, put_rejected, AcceptStat, Rejection, MAX_ACCEPTED_HEADER, MAX_DENIED_REPLY,
};
use crate::xdr::pad_len;

/// Bytes reserved in front of every head for the record marker.
pub const MARKER_LEN: usize = 4;
/// Largest tail a reply can carry inline.
pub const TAIL_CAPACITY: usize = 60;

/// A byte range of an open file, to be sent from the page cache
/// (`sendfile`/`splice`) rather than copied through user space.
#[derive(Debug, Clone)]
pub struct FileRange {
    /// The file. Shared so a descriptor cache can hand it out without
    /// reopening; the reply keeps it open until sent.
    pub file: Arc<File>,
    /// Byte offset in the file.
    pub offset: u64,
    /// Number of bytes. The file must hold them when the reply is sent; if
    /// it shrank, the transport fails the send (and the connection) rather
    /// than pad with bytes the file does not have.
    pub len: u64,
}

impl FileRange {
    /// Reads the range's next bytes from byte `done` of it into `buf` (at
    /// most what is left, one `pread`), for a transport that must copy a
    /// file its socket cannot splice from. Returns the bytes read; a file
    /// that now ends before the range does is an `UnexpectedEof` error,
    /// never a short reply.
    pub fn read_chunk(&self, done: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let want = ((self.len - done) as usize).min(buf.len());
        match self.file.read_at(&mut buf[..want], self.offset + done)? {
            0 if want > 0 => Err(self.shrank()),
            n => Ok(n),
        }
    }

    /// The error for a file that ended before the range did.
    pub(crate) fn shrank(&self) -> std::io::Error {
        use std::os::fd::AsRawFd;
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!(
                "file (fd {}) ended before offset {} + {}: it shrank while being sent",
                self.file.as_raw_fd(),
                self.offset,
                self.len
            ),
        )
    }
}

/// The bulk part of a reply.
#[derive(Debug, Clone, Default)]
pub enum ReplyData {
    /// No bulk data.
    #[default]
    None,
    /// Data already in fragments (spliceable memory), in order.
    Frags(Vec<Frag>),
    /// A file range.
    File(FileRange),
}

impl ReplyData {
    /// Total bytes of data.
    pub fn len(&self) -> u64 {
        match self {
            ReplyData::None => 0,
            ReplyData::Frags(v) => v.iter().map(|f| f.len() as u64).sum(),
            ReplyData::File(r) => r.len,
        }
    }

    /// True if there are no data bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A reply laid out as one message, in wire order: `head`, the data
/// (fragments, each clone a reference-count increment, or a file range),
/// `tail`. What every transport sends.
pub(crate) fn reply_msg<'a>(head: Frag, data: &'a ReplyData, tail: &'a Tail) -> msgsplice::Msg<'a> {
    let mut msg = msgsplice::Msg::new();
    msg.push(head);
    match data {
        ReplyData::None => {}
        ReplyData::Frags(frags) => msg.extend(frags.iter().cloned()),
        ReplyData::File(r) => {
            msg.push_file(&*r.file, r.offset, r.len);
        }
    }
    msg.push(tail.as_bytes());
    msg
}

/// The tail of a reply: XDR padding after the data and any trailing fields,
/// stored inline (no allocation), at most [`TAIL_CAPACITY`] bytes.
#[derive(Clone, Copy)]
pub struct Tail {
    bytes: [u8; TAIL_CAPACITY],
    len: u8,
}

impl Default for Tail {
    fn default() -> Self {
        Tail {
            bytes: [0; TAIL_CAPACITY],
            len: 0,
        }
    }
}

impl Tail {
    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Bytes still free.
    pub fn room(&self) -> usize {
        TAIL_CAPACITY - self.len as usize
    }

    /// Appends bytes.
    ///
    /// # Panics
    /// If they do not fit ([`Tail::room`]).
    pub fn put_slice(&mut self, data: &[u8]) {
        let at = self.len as usize;
        assert!(data.len() <= self.room(), "reply tail overflow");
        self.bytes[at..at + data.len()].copy_from_slice(data);
        self.len += data.len() as u8;
    }

    /// Appends a big-endian `u32` (an XDR word).
    pub fn put_u32(&mut self, v: u32) {
        self.put_slice(&v.to_be_bytes());
    }
}

impl std::fmt::Debug for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Tail").field(&self.as_bytes()).finish()
    }
}

/// A complete reply, ready to send: record marker and head in one fragment,
/// then data, then tail. The marker counts every byte after it.
#[derive(Debug)]
pub struct Reply {
    head: Frag,
    data: ReplyData,
    tail: Tail,
}

impl Reply {
    /// Record marker and head, one contiguous fragment.
    pub fn head(&self) -> &Frag {
        &self.head
    }

    /// The bulk data.
    pub fn data(&self) -> &ReplyData {
        &self.data
    }

    /// The tail bytes.
    pub fn tail(&self) -> &[u8] {
        self.tail.as_bytes()
    }

    /// Bytes on the wire, marker included.
    pub fn wire_len(&self) -> u64 {
        self.head.len() as u64 + self.data.len() + self.tail.len as u64
    }

    /// The parts, for a driver that sends them.
    pub fn into_parts(self) -> (Frag, ReplyData, Tail) {
        (self.head, self.data, self.tail)
    }
}

/// Why a reply could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// No memory for the head fragment.
    #[error("no memory for the reply head: {0}")]
    Alloc(#[from] FragError),
    /// The reply would not fit in one record fragment (2 GiB).
    #[error("reply of {0} bytes is larger than one record fragment")]
    TooLarge(u64),
}

/// Builds a [`Reply`]: write the head through [`ReplyBuilder::head`]
/// (a [`bytes::BufMut`]), set data and tail, then [`finish`](Self::finish).
#[derive(Debug)]
pub struct ReplyBuilder {
    head: FragBuf,
    data: ReplyData,
    tail: Tail,
}

impl ReplyBuilder {
    /// A builder whose head can hold `capacity` bytes after the marker.
    ///
    /// Costs: one bump allocation from `cache` (no heap allocation, no
    /// system call unless the cache needs a new folio).
    pub fn new(cache: &FragCache, capacity: usize) -> Result<ReplyBuilder, ReplyError> {
        Ok(ReplyBuilder {
            head: FragBuf::with_headroom(cache, MARKER_LEN, capacity)?,
            data: ReplyData::None,
            tail: Tail::default(),
        })
    }

    /// The head, to write into. Like any `BufMut`, it panics when full:
    /// check `remaining_mut()` before variable-length items.
    pub fn head(&mut self) -> &mut FragBuf {
        &mut self.head
    }

    /// The tail, to write into.
    pub fn tail(&mut self) -> &mut Tail {
        &mut self.tail
    }

    /// Sets the data part (replacing any).
    pub fn set_data(&mut self, data: ReplyData) {
        self.data = data;
    }

    /// Writes a variable-length XDR opaque whose bytes are `data`: the length
    /// word goes into the head, the bytes are the data part, and the padding
    /// starts the tail. Fields written to the tail afterwards follow it.
    ///
    /// # Panics
    /// If the data is longer than `u32::MAX` bytes.
    pub fn put_opaque_data(&mut self, data: ReplyData) {
        let len = data.len();
        let len32 = u32::try_from(len).expect("XDR opaque longer than 4 GiB");
        self.head.put_u32(len32);
        self.tail.put_slice(&[0; 3][..pad_len(len as usize)]);
        self.data = data;
    }

    /// Bytes after the marker so far (head body + data + tail).
    pub fn body_len(&self) -> u64 {
        self.head.len() as u64 + self.data.len() + self.tail.len as u64
    }

    /// Writes the record marker into the headroom and freezes the head.
    ///
    /// Costs: four byte stores. No allocation, no copy.
    pub fn finish(mut self) -> Result<Reply, ReplyError> {
        let len = self.body_len();
        if len > MAX_FRAGMENT as u64 {
            return Err(ReplyError::TooLarge(len));
        }
        self.head
            .headroom_mut()
            .copy_from_slice(&last_fragment_marker(len as usize));
        Ok(Reply {
            head: self.head.freeze(),
            data: self.data,
            tail: self.tail,
        })
    }
}

/// RPC replies: the reply header written first, then the results.
impl ReplyBuilder {
    /// A builder whose head holds an accepted reply header for `xid` with
    /// `stat`, and room for `capacity` more bytes of results.
    ///
    /// Costs: as [`ReplyBuilder::new`], plus the header's stores.
    pub fn accepted(
        cache: &FragCache,
        xid: u32,
        stat: AcceptStat,
        capacity: usize,
    ) -> Result<ReplyBuilder, ReplyError> {
        let mut b = ReplyBuilder::new(cache, MAX_ACCEPTED_HEADER + capacity)?;
        put_accepted(b.head(), xid, stat);
        Ok(b)
    }
}

impl Reply {
    /// The complete accepted reply with no results: an error status
    /// (`PROC_UNAVAIL`, `GARBAGE_ARGS`, ...), or success of a procedure
    /// whose results are void (NULL).
    pub fn accepted(cache: &FragCache, xid: u32, stat: AcceptStat) -> Result<Reply, ReplyError> {
        ReplyBuilder::accepted(cache, xid, stat, 0)?.finish()
    }

    /// The complete denied reply for `xid`: RPC version mismatch or
    /// authentication error.
    pub fn denied(cache: &FragCache, xid: u32, why: Rejection) -> Result<Reply, ReplyError> {
        let mut b = ReplyBuilder::new(cache, MAX_DENIED_REPLY)?;
        put_rejected(b.head(), xid, why);
        b.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr::XdrDecoder;
    use std::io::Write;

    fn cache() -> FragCache {
        FragCache::new()
    }

    #[test]
    fn marker_counts_head_only() {
        let c = cache();
        let mut b = ReplyBuilder::new(&c, 64).unwrap();
        b.head().put_u32(7);
        b.head().put_u32(8);
        let r = b.finish().unwrap();
        assert_eq!(&r.head()[..], &[0x80, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 8]);
        assert_eq!(r.wire_len(), 12);
        assert!(r.tail().is_empty());
    }

    #[test]
    fn marker_counts_data_and_padded_tail() {
        let c = cache();
        let mut b = ReplyBuilder::new(&c, 64).unwrap();
        b.head().put_u32(1);
        let frag = c.memdup(b"hello").unwrap();
        b.put_opaque_data(ReplyData::Frags(vec![frag]));
        b.tail().put_u32(0xabcd);
        let r = b.finish().unwrap();
        // head body 4 + length 4, data 5, tail 3 pad + 4 = 20.
        assert_eq!(&r.head()[..4], &(0x8000_0000u32 | 20).to_be_bytes());
        assert_eq!(r.tail(), &[0, 0, 0, 0, 0, 0xab, 0xcd]);
        assert_eq!(r.wire_len(), 24);
        // Reassembled, the reply decodes as XDR.
        let mut wire = r.head()[4..].to_vec();
        if let ReplyData::Frags(v) = r.data() {
            for f in v {
                wire.extend_from_slice(f);
            }
        }
        wire.extend_from_slice(r.tail());
        let mut d = XdrDecoder::new(&wire);
        assert_eq!(d.u32(), Ok(1));
        assert_eq!(d.opaque(16), Ok(&b"hello"[..]));
        assert_eq!(d.u32(), Ok(0xabcd));
        assert_eq!(d.finish(), Ok(()));
    }

    #[test]
    fn file_range_counts_in_marker() {
        let c = cache();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[1; 10]).unwrap();
        let mut b = ReplyBuilder::new(&c, 16).unwrap();
        b.put_opaque_data(ReplyData::File(FileRange {
            file: Arc::new(f),
            offset: 3,
            len: 7,
        }));
        let r = b.finish().unwrap();
        assert_eq!(&r.head()[..4], &(0x8000_0000u32 | 12).to_be_bytes());
        assert_eq!(r.tail(), &[0]);
    }
}
