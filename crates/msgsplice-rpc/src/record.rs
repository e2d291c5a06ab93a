//! Record marking (RFC 5531 section 11): RPC messages over a byte stream.
//!
//! On TCP each RPC message is a *record* sent as one or more *fragments*.
//! A fragment is a 4-byte big-endian marker (top bit: "last fragment";
//! low 31 bits: fragment length) followed by that many bytes.
//!
//! [`RecordAssembler`] is a sans-IO state machine: feed it whatever chunks
//! the socket returned, in any sizes, and it yields complete records. Its
//! buffer grows only with bytes that actually arrived, never to a size a
//! marker claims, and is reused from record to record (no allocation per
//! record in steady state). A record larger than the configured maximum,
//! or with too many fragments, is a [`RecordError`]: the connection cannot
//! be resynchronised and must be closed.

/// The "last fragment" bit of a record marker.
pub const LAST_FRAGMENT: u32 = 0x8000_0000;
/// Largest fragment length a marker can express.
pub const MAX_FRAGMENT: u32 = LAST_FRAGMENT - 1;

/// Default largest record accepted: a 1 MiB payload plus headers.
pub const DEFAULT_MAX_RECORD: usize = (1 << 20) + 4096;
/// Default largest number of fragments in one record.
pub const DEFAULT_MAX_FRAGMENTS: u32 = 1024;

/// Buffer capacity kept between records; more is given back.
const SHRINK_OVER: usize = 64 * 1024;

/// The marker for a single-fragment record of `len` bytes.
///
/// # Panics
/// If `len` exceeds [`MAX_FRAGMENT`].
pub fn last_fragment_marker(len: usize) -> [u8; 4] {
    assert!(len <= MAX_FRAGMENT as usize, "RPC fragment of {len} bytes");
    (LAST_FRAGMENT | len as u32).to_be_bytes()
}

/// Why the byte stream cannot be read as records. Each of these means
/// "close the connection": there is no way to find the next record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A record (so far, plus the fragment just announced) exceeds the limit.
    #[error("RPC record of at least {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Bytes the record would hold with the announced fragment.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A record has more fragments than the configured maximum.
    #[error("RPC record has more than {max} fragments")]
    TooManyFragments {
        /// The configured maximum.
        max: u32,
    },
}

/// Reassembles records from a byte stream. See the module docs.
#[derive(Debug)]
pub struct RecordAssembler {
    max_record: usize,
    max_fragments: u32,
    buf: Vec<u8>,
    marker: [u8; 4],
    marker_len: usize,
    in_body: bool,
    frag_left: usize,
    last: bool,
    fragments: u32,
    complete: bool,
    failed: Option<RecordError>,
}

impl Default for RecordAssembler {
    fn default() -> Self {
        RecordAssembler::new(DEFAULT_MAX_RECORD)
    }
}

impl RecordAssembler {
    /// An assembler accepting records of up to `max_record` bytes (not
    /// counting markers) and [`DEFAULT_MAX_FRAGMENTS`] fragments.
    pub fn new(max_record: usize) -> RecordAssembler {
        RecordAssembler {
            max_record,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
            buf: Vec::new(),
            marker: [0; 4],
            marker_len: 0,
            in_body: false,
            frag_left: 0,
            last: false,
            fragments: 0,
            complete: false,
            failed: None,
        }
    }

    /// Sets the largest number of fragments in one record (at least 1).
    pub fn with_max_fragments(mut self, max: u32) -> RecordAssembler {
        self.max_fragments = max.max(1);
        self
    }

    /// The configured maximum record size.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// True between records: no byte of a next record has arrived. A stream
    /// that ends when this is false ended inside a record.
    pub fn is_idle(&self) -> bool {
        self.failed.is_none()
            && (self.complete || (self.buf.is_empty() && !self.in_body && self.marker_len == 0))
    }

    /// Consumes bytes from the front of `input` until a record completes or
    /// `input` is empty.
    ///
    /// Returns the completed record, borrowed from the assembler until the
    /// next call, or `None` if `input` ran out first (then it is empty).
    /// Call again with the rest of `input` for further records. Each call
    /// with non-empty input consumes at least one byte or returns a record.
    ///
    /// Costs: one copy of the payload into the reassembly buffer, which
    /// grows only as bytes arrive and is reused for the next record.
    pub fn push<'s>(&'s mut self, input: &mut &[u8]) -> Result<Option<&'s [u8]>, RecordError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.complete {
            self.buf.clear();
            // One large record (a WRITE) must not pin its buffer for the
            // life of the connection; small calls never reach this.
            if self.buf.capacity() > SHRINK_OVER {
                self.buf.shrink_to(SHRINK_OVER);
            }
            self.complete = false;
            self.fragments = 0;
        }
        loop {
            if !self.in_body {
                let n = (4 - self.marker_len).min(input.len());
                self.marker[self.marker_len..self.marker_len + n].copy_from_slice(&input[..n]);
                self.marker_len += n;
                *input = &input[n..];
                if self.marker_len < 4 {
                    return Ok(None);
                }
                self.marker_len = 0;
                if let Err(e) = self.start_fragment() {
                    self.failed = Some(e.clone());
                    return Err(e);
                }
            }
            let n = self.frag_left.min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            *input = &input[n..];
            self.frag_left -= n;
            if self.frag_left > 0 {
                return Ok(None);
            }
            self.in_body = false;
            if self.last {
                self.complete = true;
                return Ok(Some(&self.buf));
            }
        }
    }

    fn start_fragment(&mut self) -> Result<(), RecordError> {
        let m = u32::from_be_bytes(self.marker);
        let len = (m & MAX_FRAGMENT) as usize;
        self.fragments += 1;
        if self.fragments > self.max_fragments {
            return Err(RecordError::TooManyFragments {
                max: self.max_fragments,
            });
        }
        let size = self.buf.len() as u64 + len as u64;
        if size > self.max_record as u64 {
            return Err(RecordError::TooLarge {
                size,
                max: self.max_record,
            });
        }
        self.last = m & LAST_FRAGMENT != 0;
        self.frag_left = len;
        self.in_body = true;
        Ok(())
    }

    /// Bytes currently reserved by the reassembly buffer.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Encodes `records`, each split into fragments of at most `frag` bytes.
    fn encode(records: &[Vec<u8>], frag: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            let mut chunks: Vec<&[u8]> = r.chunks(frag.max(1)).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            let n = chunks.len();
            for (i, c) in chunks.into_iter().enumerate() {
                let mut m = c.len() as u32;
                if i + 1 == n {
                    m |= LAST_FRAGMENT;
                }
                out.extend_from_slice(&m.to_be_bytes());
                out.extend_from_slice(c);
            }
        }
        out
    }

    /// Feeds `stream` in chunks of the given sizes (cycled), collecting records.
    fn feed(
        asm: &mut RecordAssembler,
        stream: &[u8],
        sizes: &[usize],
    ) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < stream.len() {
            let n = sizes[i % sizes.len()].max(1).min(stream.len() - at);
            i += 1;
            let mut input = &stream[at..at + n];
            while !input.is_empty() {
                if let Some(r) = asm.push(&mut input)? {
                    out.push(r.to_vec());
                }
            }
            at += n;
        }
        Ok(out)
    }

    #[test]
    fn single_fragment_record() {
        let mut asm = RecordAssembler::default();
        let mut input: &[u8] = b"\x80\x00\x00\x03abc\x80\x00\x00\x01d";
        assert_eq!(asm.push(&mut input), Ok(Some(&b"abc"[..])));
        assert!(asm.is_idle());
        assert_eq!(asm.push(&mut input), Ok(Some(&b"d"[..])));
        assert!(input.is_empty());
    }

    #[test]
    fn multi_fragment_record_and_byte_by_byte() {
        let stream = b"\x00\x00\x00\x02ab\x00\x00\x00\x00\x80\x00\x00\x03cde";
        let mut asm = RecordAssembler::default();
        let recs = feed(&mut asm, stream, &[1]).unwrap();
        assert_eq!(recs, vec![b"abcde".to_vec()]);
        assert!(asm.is_idle());
    }

    #[test]
    fn empty_record() {
        let mut asm = RecordAssembler::default();
        let mut input: &[u8] = b"\x80\x00\x00\x00";
        assert_eq!(asm.push(&mut input), Ok(Some(&b""[..])));
    }

    #[test]
    fn partial_record_is_not_idle() {
        let mut asm = RecordAssembler::default();
        let mut input: &[u8] = b"\x80\x00";
        assert_eq!(asm.push(&mut input), Ok(None));
        assert!(!asm.is_idle());
        let mut input: &[u8] = b"\x00\x04ab";
        assert_eq!(asm.push(&mut input), Ok(None));
        assert!(!asm.is_idle());
    }

    #[test]
    fn oversize_marker_is_refused_without_allocating() {
        let mut asm = RecordAssembler::new(1000);
        let mut input: &[u8] = b"\xff\xff\xff\xff";
        assert_eq!(
            asm.push(&mut input),
            Err(RecordError::TooLarge {
                size: 0x7fff_ffff,
                max: 1000
            })
        );
        assert_eq!(asm.buffer_capacity(), 0);
        // The assembler stays failed.
        let mut more: &[u8] = b"\x80\x00\x00\x00";
        assert!(asm.push(&mut more).is_err());
        assert!(!asm.is_idle());
    }

    #[test]
    fn oversize_across_fragments_is_refused() {
        let mut asm = RecordAssembler::new(10);
        let stream = encode(&[vec![7; 11]], 4);
        assert_eq!(
            feed(&mut asm, &stream, &[100]),
            Err(RecordError::TooLarge { size: 11, max: 10 })
        );
        // Exactly at the limit is fine.
        let mut asm = RecordAssembler::new(11);
        assert_eq!(feed(&mut asm, &stream, &[3]).unwrap(), vec![vec![7; 11]]);
    }

    #[test]
    fn a_large_claim_allocates_only_what_arrives() {
        let mut asm = RecordAssembler::new(1 << 30);
        let mut input: &[u8] = b"\x80\x00\x10\x00abcd"; // claims 1 MiB... 4 KiB
        assert_eq!(asm.push(&mut input), Ok(None));
        assert!(asm.buffer_capacity() < 4096);
    }

    #[test]
    fn a_large_record_does_not_pin_its_buffer() {
        let mut asm = RecordAssembler::new(1 << 20);
        let stream = encode(&[vec![1; 300_000], vec![2; 10]], 1 << 20);
        let recs = feed(&mut asm, &stream, &[1 << 16]).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(asm.buffer_capacity() <= SHRINK_OVER);
    }

    #[test]
    fn too_many_fragments() {
        let mut asm = RecordAssembler::default().with_max_fragments(3);
        let stream = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(
            feed(&mut asm, stream, &[16]),
            Err(RecordError::TooManyFragments { max: 3 })
        );
    }

    #[test]
    fn marker_encoding() {
        assert_eq!(last_fragment_marker(5), [0x80, 0, 0, 5]);
    }

    proptest! {
        /// Whatever the fragmentation and the chunking of the stream, the
        /// records that come out are the records that went in.
        #[test]
        fn records_survive_any_chunking(
            records in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            frag in 1usize..100,
            sizes in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let stream = encode(&records, frag);
            let mut asm = RecordAssembler::new(300);
            let got = feed(&mut asm, &stream, &sizes).unwrap();
            prop_assert_eq!(got, records);
            prop_assert!(asm.is_idle());
        }

        /// Arbitrary bytes yield records or an error, never a panic, and the
        /// buffer never exceeds the limit.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                sizes in proptest::collection::vec(1usize..64, 1..4)) {
            let mut asm = RecordAssembler::new(256).with_max_fragments(8);
            if let Ok(recs) = feed(&mut asm, &bytes, &sizes) {
                for r in recs {
                    prop_assert!(r.len() <= 256);
                }
            }
            prop_assert!(asm.buffer_capacity() <= 2 * 256 + 64);
        }
    }
}
