//! XDR, the External Data Representation (RFC 4506): the bottom layer.
//!
//! Everything in XDR is a sequence of 4-byte big-endian units. Variable-length
//! data (`opaque<>`, `string<>`) is a 4-byte length followed by the bytes and
//! zero padding up to the next multiple of four.
//!
//! [`XdrDecoder`] reads from a borrowed `&[u8]`: it returns typed errors on
//! truncation or bad values, never panics, and never allocates. Every
//! variable-length read takes a caller-given maximum, checked *before* the
//! bytes are looked at, and the bytes returned are borrowed from the input,
//! so a length field claiming 4 GiB costs nothing.
//!
//! [`XdrPut`] adds the XDR forms that [`bytes::BufMut`] lacks (booleans,
//! opaques with padding). `BufMut::put_u32` and friends are already
//! big-endian, which is what XDR wants. Writing into a
//! [`msgsplice::FragBuf`] puts the encoded bytes straight into spliceable
//! memory.

use bytes::BufMut;

/// Encoded size of an `int`, `unsigned int`, `enum` or `bool`: one unit.
pub const U32_LEN: usize = 4;
/// Encoded size of a `hyper` or `unsigned hyper`: two units.
pub const U64_LEN: usize = 8;

/// Bytes of zero padding after `len` bytes of opaque data.
#[inline]
pub const fn pad_len(len: usize) -> usize {
    (4 - (len & 3)) & 3
}

/// `len` rounded up to a multiple of four (data plus padding).
#[inline]
pub const fn padded_len(len: usize) -> usize {
    len + pad_len(len)
}

/// Encoded size of a variable-length opaque or string of `len` bytes:
/// length word, data, padding.
#[inline]
pub const fn opaque_len(len: usize) -> usize {
    4 + padded_len(len)
}

/// Why XDR input could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XdrError {
    /// The input ended inside an item.
    #[error("XDR input truncated: {needed} bytes needed at offset {at}, {left} left")]
    Truncated {
        /// Offset of the item that did not fit.
        at: usize,
        /// Bytes the item needs.
        needed: usize,
        /// Bytes that were left.
        left: usize,
    },
    /// A length field exceeds the limit the protocol (or the caller) sets.
    #[error("XDR length {len} exceeds the limit of {max}")]
    TooLong {
        /// The length read from the input.
        len: u32,
        /// The largest length accepted here.
        max: u32,
    },
    /// A boolean that is neither 0 nor 1.
    #[error("XDR boolean has value {0}, not 0 or 1")]
    BadBool(u32),
    /// An enumeration (or discriminant) with a value the protocol does not
    /// define.
    #[error("XDR {what} has undefined value {value}")]
    BadEnum {
        /// What was being decoded.
        what: &'static str,
        /// The value found.
        value: u32,
    },
    /// Bytes left over after a complete item, where none may follow.
    #[error("{0} bytes left over after the XDR item")]
    Trailing(usize),
}

/// A cursor that decodes XDR items from a borrowed buffer.
///
/// Costs: no allocation, no copy; variable-length items are returned as
/// slices of the input.
#[derive(Debug, Clone)]
pub struct XdrDecoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> XdrDecoder<'a> {
    /// A decoder at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> XdrDecoder<'a> {
        XdrDecoder { buf, pos: 0 }
    }

    /// Offset of the next unread byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Fails with [`XdrError::Trailing`] unless every byte was read.
    pub fn finish(&self) -> Result<(), XdrError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(XdrError::Trailing(n)),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], XdrError> {
        let left = self.remaining();
        if n > left {
            return Err(XdrError::Truncated {
                at: self.pos,
                needed: n,
                left,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, XdrError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, XdrError> {
        Ok(self.u32()? as i32)
    }

    /// An unsigned 64-bit integer (XDR "unsigned hyper").
    pub fn u64(&mut self) -> Result<u64, XdrError> {
        let hi = self.u32()? as u64;
        let lo = self.u32()? as u64;
        Ok(hi << 32 | lo)
    }

    /// A boolean: 0 or 1, anything else is [`XdrError::BadBool`].
    pub fn bool(&mut self) -> Result<bool, XdrError> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(XdrError::BadBool(v)),
        }
    }

    /// Fixed-length opaque data of `len` bytes, and its padding.
    pub fn fixed_opaque(&mut self, len: usize) -> Result<&'a [u8], XdrError> {
        let at = self.pos;
        let total = len.checked_add(pad_len(len)).ok_or(XdrError::Truncated {
            at,
            needed: usize::MAX,
            left: self.remaining(),
        })?;
        let s = self.take(total)?;
        Ok(&s[..len])
    }

    /// Variable-length opaque data of at most `max` bytes, and its padding.
    /// The length is checked against `max` before anything else.
    pub fn opaque(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        self.fixed_opaque(len as usize)
    }

    /// A string of at most `max` bytes. XDR strings are bytes (ASCII by
    /// convention); NFS file names need not be UTF-8, so none is checked.
    pub fn string(&mut self, max: u32) -> Result<&'a [u8], XdrError> {
        self.opaque(max)
    }

    /// The element count of a variable-length array, at most `max`. The
    /// caller decodes the elements.
    pub fn array_len(&mut self, max: u32) -> Result<u32, XdrError> {
        let len = self.u32()?;
        if len > max {
            return Err(XdrError::TooLong { len, max });
        }
        Ok(len)
    }

    /// An enumeration value checked by `known`; `what` names it in errors.
    pub fn enumeration(
        &mut self,
        what: &'static str,
        known: impl Fn(u32) -> bool,
    ) -> Result<u32, XdrError> {
        let value = self.u32()?;
        if known(value) {
            Ok(value)
        } else {
            Err(XdrError::BadEnum { what, value })
        }
    }
}

/// XDR forms on top of [`bytes::BufMut`].
///
/// Integers need nothing extra: `put_u32`, `put_i32`, `put_u64` are already
/// big-endian. Like `BufMut`, these panic if the buffer has no room; size
/// the buffer first (see [`opaque_len`]).
pub trait XdrPut: BufMut {
    /// A boolean as 0 or 1.
    fn put_xdr_bool(&mut self, v: bool) {
        self.put_u32(v as u32);
    }

    /// `n` (0 to 3) bytes of zero padding.
    fn put_xdr_pad(&mut self, n: usize) {
        const ZERO: [u8; 3] = [0; 3];
        self.put_slice(&ZERO[..n & 3]);
    }

    /// Fixed-length opaque data and its padding.
    fn put_xdr_fixed_opaque(&mut self, data: &[u8]) {
        self.put_slice(data);
        self.put_xdr_pad(pad_len(data.len()));
    }

    /// Variable-length opaque data (or a string): length, data, padding.
    ///
    /// # Panics
    /// If `data` is longer than `u32::MAX` bytes, which XDR cannot express.
    fn put_xdr_opaque(&mut self, data: &[u8]) {
        let len = u32::try_from(data.len()).expect("XDR opaque longer than 4 GiB");
        self.put_u32(len);
        self.put_xdr_fixed_opaque(data);
    }
}

impl<B: BufMut + ?Sized> XdrPut for B {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn integers_are_big_endian() {
        let mut v = Vec::new();
        v.put_u32(0x0102_0304);
        v.put_u64(0x0506_0708_090a_0b0c);
        v.put_i32(-2);
        let mut d = XdrDecoder::new(&v);
        assert_eq!(d.u32(), Ok(0x0102_0304));
        assert_eq!(d.u64(), Ok(0x0506_0708_090a_0b0c));
        assert_eq!(d.i32(), Ok(-2));
        assert_eq!(d.finish(), Ok(()));
        assert_eq!(&v[..4], &[1, 2, 3, 4]);
    }

    #[test]
    fn opaque_is_padded() {
        let mut v = Vec::new();
        v.put_xdr_opaque(b"abcde");
        assert_eq!(v, b"\0\0\0\x05abcde\0\0\0");
        assert_eq!(v.len(), opaque_len(5));
        let mut d = XdrDecoder::new(&v);
        assert_eq!(d.opaque(5), Ok(&b"abcde"[..]));
        assert_eq!(d.remaining(), 0);
    }

    #[test]
    fn truncation_is_an_error() {
        let mut d = XdrDecoder::new(&[0, 0, 0]);
        assert_eq!(
            d.u32(),
            Err(XdrError::Truncated {
                at: 0,
                needed: 4,
                left: 3
            })
        );
        // Length says 5, only 4 data bytes (and no padding) follow.
        let mut d = XdrDecoder::new(b"\0\0\0\x05abcd");
        assert!(matches!(d.opaque(100), Err(XdrError::Truncated { .. })));
        // Missing padding is truncation too.
        let mut d = XdrDecoder::new(b"\0\0\0\x05abcde");
        assert!(matches!(d.opaque(100), Err(XdrError::Truncated { .. })));
    }

    #[test]
    fn huge_length_is_refused_before_reading() {
        let mut d = XdrDecoder::new(b"\xff\xff\xff\xff");
        assert_eq!(
            d.opaque(1024),
            Err(XdrError::TooLong {
                len: u32::MAX,
                max: 1024
            })
        );
        let mut d = XdrDecoder::new(b"\xff\xff\xff\xff");
        // Even with an unlimited maximum, nothing is allocated: truncation.
        assert!(matches!(
            d.opaque(u32::MAX),
            Err(XdrError::Truncated { .. })
        ));
        let mut d = XdrDecoder::new(b"\0\0\0\x11");
        assert_eq!(d.array_len(16), Err(XdrError::TooLong { len: 17, max: 16 }));
    }

    #[test]
    fn bool_and_enum_are_checked() {
        let mut d = XdrDecoder::new(b"\0\0\0\x01\0\0\0\x02\0\0\0\x07");
        assert_eq!(d.bool(), Ok(true));
        assert_eq!(d.bool(), Err(XdrError::BadBool(2)));
        assert_eq!(
            d.enumeration("colour", |v| v < 3),
            Err(XdrError::BadEnum {
                what: "colour",
                value: 7
            })
        );
    }

    #[test]
    fn trailing_bytes_are_reported() {
        let d = XdrDecoder::new(b"\0\0\0\x01");
        assert_eq!(d.finish(), Err(XdrError::Trailing(4)));
    }

    proptest! {
        #[test]
        fn opaque_round_trips(data in proptest::collection::vec(any::<u8>(), 0..64),
                              n in any::<u32>(), h in any::<u64>(), b in any::<bool>()) {
            let mut v = Vec::new();
            v.put_u32(n);
            v.put_xdr_opaque(&data);
            v.put_u64(h);
            v.put_xdr_bool(b);
            v.put_xdr_fixed_opaque(&data);
            prop_assert_eq!(v.len() % 4, 0);
            let mut d = XdrDecoder::new(&v);
            prop_assert_eq!(d.u32()?, n);
            prop_assert_eq!(d.opaque(64)?, &data[..]);
            prop_assert_eq!(d.u64()?, h);
            prop_assert_eq!(d.bool()?, b);
            prop_assert_eq!(d.fixed_opaque(data.len())?, &data[..]);
            prop_assert_eq!(d.finish(), Ok(()));
        }

        /// Whatever the bytes, decoding returns a value or an error, never
        /// panics, and never reads past the end.
        #[test]
        fn decoding_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut d = XdrDecoder::new(&bytes);
            for _ in 0..8 {
                let _ = d.opaque(u32::MAX);
                let _ = d.bool();
                let _ = d.u64();
                prop_assert!(d.position() <= bytes.len());
            }
        }
    }
}
