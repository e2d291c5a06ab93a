//! The TLS record layer, sans I/O: seal a record in place in a buffer the
//! caller filled, open one in place in a buffer the caller read.
//!
//! Wire formats (RFC 8446 section 5 for TLS 1.3, RFC 5246 section 6.2 with
//! RFC 5288 and RFC 7905 for TLS 1.2):
//!
//! ```text
//! TLS 1.3            [type 23][03 03][len] AEAD(plaintext || real type) tag
//!                    nonce = iv XOR seq, AAD = the 5-byte header
//! TLS 1.2 AES-GCM    [type][03 03][len] explicit(8) AEAD(plaintext) tag
//!                    nonce = salt(4) || explicit(8), AAD = seq type 03 03 plaintext_len
//! TLS 1.2 ChaCha20   [type][03 03][len] AEAD(plaintext) tag
//!                    nonce = iv XOR seq, AAD as for AES-GCM
//! ```
//!
//! For TLS 1.2 AES-GCM the explicit part is chosen by the sender; like
//! rustls, this layer sends `(iv XOR seq)[4..]`, so it carries on from the
//! handshake's records without ever reusing a nonce.

use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::ConnectionTrafficSecrets;

use super::TlsError;

/// Most plaintext bytes one record carries (2^14, both versions).
pub const MAX_PLAINTEXT: usize = 1 << 14;
/// Bytes of a record header: type, version, length.
pub(crate) const HEADER_LEN: usize = 5;
/// Bytes of an AEAD tag (all three ciphers).
const TAG_LEN: usize = 16;
/// Largest TLSCiphertext.length a peer may send: 2^14 + 256 in TLS 1.3,
/// 2^14 + 2048 in TLS 1.2.
const MAX_CIPHERTEXT_13: usize = MAX_PLAINTEXT + 256;
const MAX_CIPHERTEXT_12: usize = MAX_PLAINTEXT + 2048;
/// The legacy record version every record carries.
const RECORD_VERSION: [u8; 2] = [0x03, 0x03];

/// A record's content type (RFC 8446 section 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentType {
    ChangeCipherSpec,
    Alert,
    Handshake,
    ApplicationData,
}

impl ContentType {
    /// The byte on the wire.
    pub(crate) fn byte(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
        }
    }

    fn from_byte(b: u8) -> Option<ContentType> {
        Some(match b {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            _ => return None,
        })
    }
}

/// The protocol version of a connection's record layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    Tls12,
    Tls13,
}

/// The AEAD of a connection: the three this record layer implements, and
/// the three that kTLS is handed (`sys::ktls` lays out the kernel's struct
/// for each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cipher {
    AesGcm128,
    AesGcm256,
    Chacha20Poly1305,
}

/// The secrets of one direction, as rustls extracted them.
pub(crate) struct Secrets<'a> {
    pub(crate) cipher: Cipher,
    pub(crate) key: &'a [u8],
    /// The 12-byte per-connection IV (static IV, or salt and IV for TLS 1.2
    /// AES-GCM).
    pub(crate) iv: [u8; aead::NONCE_LEN],
}

impl<'a> Secrets<'a> {
    /// The cipher, key and IV of rustls's extracted secrets;
    /// [`TlsError::UnsupportedCipher`] for any other AEAD.
    pub(crate) fn of(secrets: &'a ConnectionTrafficSecrets) -> Result<Secrets<'a>, TlsError> {
        let (cipher, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::AesGcm128, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::AesGcm256, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (Cipher::Chacha20Poly1305, key, iv)
            }
            _ => return Err(TlsError::UnsupportedCipher),
        };
        let iv = iv
            .as_ref()
            .try_into()
            .map_err(|_| TlsError::UnsupportedCipher)?;
        Ok(Secrets {
            cipher,
            key: key.as_ref(),
            iv,
        })
    }
}

/// One direction's key, IV and cipher, as extracted from rustls.
pub(crate) struct Keys {
    pub(crate) cipher: Cipher,
    key: LessSafeKey,
    pub(crate) iv: [u8; aead::NONCE_LEN],
}

impl Keys {
    /// Takes the key and IV out of rustls's extracted secrets.
    pub(crate) fn new(secrets: &ConnectionTrafficSecrets) -> Result<Keys, TlsError> {
        let Secrets { cipher, key, iv } = Secrets::of(secrets)?;
        let alg = match cipher {
            Cipher::AesGcm128 => &aead::AES_128_GCM,
            Cipher::AesGcm256 => &aead::AES_256_GCM,
            Cipher::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        };
        let key = UnboundKey::new(alg, key).map_err(|_| TlsError::UnsupportedCipher)?;
        Ok(Keys {
            cipher,
            key: LessSafeKey::new(key),
            iv,
        })
    }

    /// `iv XOR seq` (the sequence number right-aligned, big-endian).
    fn nonce_bytes(&self, seq: u64) -> [u8; aead::NONCE_LEN] {
        let mut n = self.iv;
        for (b, s) in n[4..].iter_mut().zip(seq.to_be_bytes()) {
            *b ^= s;
        }
        n
    }

    /// True for TLS 1.2 AES-GCM, the one format with an explicit nonce.
    fn explicit_nonce(&self, version: Version) -> bool {
        version == Version::Tls12 && self.cipher != Cipher::Chacha20Poly1305
    }
}

/// The AAD of a TLS 1.2 record: seq, type, version, plaintext length.
fn aad12(seq: u64, ty: u8, plain_len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&seq.to_be_bytes());
    a[8] = ty;
    a[9..11].copy_from_slice(&RECORD_VERSION);
    a[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
    a
}

/// Seals records for one direction: holds the keys and the next sequence
/// number. No allocation, no I/O.
pub(crate) struct Sealer {
    keys: Keys,
    version: Version,
    seq: u64,
}

impl Sealer {
    /// A sealer whose next record has sequence number `seq`.
    pub(crate) fn new(version: Version, keys: Keys, seq: u64) -> Sealer {
        Sealer { keys, version, seq }
    }

    /// Bytes of a record in front of its plaintext: the header, and the
    /// explicit nonce for TLS 1.2 AES-GCM.
    pub(crate) fn prefix_len(&self) -> usize {
        HEADER_LEN
            + if self.keys.explicit_nonce(self.version) {
                8
            } else {
                0
            }
    }

    /// Bytes of a record after its plaintext: the tag, and the inner
    /// content type for TLS 1.3.
    pub(crate) fn suffix_len(&self) -> usize {
        TAG_LEN + usize::from(self.version == Version::Tls13)
    }

    /// The length of a record carrying `plain` bytes.
    pub(crate) fn record_len(&self, plain: usize) -> usize {
        self.prefix_len() + plain + self.suffix_len()
    }

    /// The sequence number of the next record.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// Seals the record in `rec` in place. `rec` must be exactly
    /// [`record_len`](Self::record_len)`(p)` bytes with its `p` plaintext
    /// bytes at `prefix_len()..`; the rest is overwritten.
    pub(crate) fn seal(&mut self, ty: ContentType, rec: &mut [u8]) -> Result<(), TlsError> {
        let prefix = self.prefix_len();
        let suffix = self.suffix_len();
        let plain = rec
            .len()
            .checked_sub(prefix + suffix)
            .filter(|&p| p <= MAX_PLAINTEXT)
            .ok_or(TlsError::RecordOverflow { len: rec.len() })?;
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(TlsError::KeyLimit)?;
        let nonce = self.keys.nonce_bytes(seq);
        let body_len = rec.len() - HEADER_LEN;
        let (header, body) = rec.split_at_mut(HEADER_LEN);
        header[1..3].copy_from_slice(&RECORD_VERSION);
        header[3..5].copy_from_slice(&(body_len as u16).to_be_bytes());
        let (text, tag) = body.split_at_mut(body_len - TAG_LEN);
        let t = match self.version {
            Version::Tls13 => {
                header[0] = ContentType::ApplicationData.byte();
                text[plain] = ty.byte();
                self.keys.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&*header),
                    text,
                )
            }
            Version::Tls12 => {
                header[0] = ty.byte();
                let aad = Aad::from(aad12(seq, ty.byte(), plain));
                let text = if self.keys.explicit_nonce(self.version) {
                    let (explicit, text) = text.split_at_mut(8);
                    explicit.copy_from_slice(&nonce[4..]);
                    text
                } else {
                    text
                };
                self.keys.key.seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    aad,
                    text,
                )
            }
        }
        .map_err(|_| TlsError::KeyLimit)?;
        tag.copy_from_slice(t.as_ref());
        Ok(())
    }
}

/// A record header, checked against the limits of the version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The outer content type byte.
    pub(crate) ty: u8,
    /// TLSCiphertext.length: bytes after the header.
    pub(crate) len: usize,
}

impl Header {
    /// Parses the first [`HEADER_LEN`] bytes of `buf` for a connection of
    /// `version`; `Ok(None)` if fewer are there.
    pub(crate) fn parse(buf: &[u8], version: Version) -> Result<Option<Header>, TlsError> {
        let max = match version {
            Version::Tls13 => MAX_CIPHERTEXT_13,
            Version::Tls12 => MAX_CIPHERTEXT_12,
        };
        Header::parse_within(buf, max)
    }

    /// [`parse`](Header::parse) before the version is known (during the
    /// handshake): a length is checked against the larger, TLS 1.2, limit.
    pub(crate) fn parse_any_version(buf: &[u8]) -> Result<Option<Header>, TlsError> {
        Header::parse_within(buf, MAX_CIPHERTEXT_12)
    }

    /// Bytes of the whole record, header included.
    pub(crate) fn record_len(&self) -> usize {
        HEADER_LEN + self.len
    }

    /// The header at the start of `buf`, whose length field may be at
    /// most `max`: a known content type, the major version every TLS
    /// record carries, a length within the limit.
    fn parse_within(buf: &[u8], max: usize) -> Result<Option<Header>, TlsError> {
        let Some(&[ty, major, _minor, len_hi, len_lo]) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        if ContentType::from_byte(ty).is_none() || major != RECORD_VERSION[0] {
            return Err(TlsError::UnexpectedMessage("not a TLS record"));
        }
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if len > max {
            return Err(TlsError::RecordOverflow { len });
        }
        Ok(Some(Header { ty, len }))
    }
}

/// Opens records of one direction in place. No allocation, no I/O.
pub(crate) struct Opener {
    keys: Keys,
    version: Version,
    seq: u64,
}

impl Opener {
    /// An opener whose next record has sequence number `seq`.
    pub(crate) fn new(version: Version, keys: Keys, seq: u64) -> Opener {
        Opener { keys, version, seq }
    }

    /// Opens the whole record `rec` (header included) in place. Returns its
    /// content type and where its plaintext lies in `rec`. A record that
    /// fails authentication is [`TlsError::BadRecordMac`].
    pub(crate) fn open(&mut self, rec: &mut [u8]) -> Result<(ContentType, Range<usize>), TlsError> {
        let h = Header::parse(rec, self.version)?.ok_or(TlsError::BadRecordMac)?;
        if rec.len() != h.record_len() {
            return Err(TlsError::BadRecordMac);
        }
        let seq = self.seq;
        self.seq = seq.checked_add(1).ok_or(TlsError::KeyLimit)?;
        let (header, body) = rec.split_at_mut(HEADER_LEN);
        match self.version {
            Version::Tls13 => {
                if header[0] != ContentType::ApplicationData.byte() {
                    return Err(TlsError::UnexpectedMessage(
                        "unencrypted record after the handshake",
                    ));
                }
                let nonce = Nonce::assume_unique_for_key(self.keys.nonce_bytes(seq));
                let text = self
                    .keys
                    .key
                    .open_in_place(nonce, Aad::from(&*header), body)
                    .map_err(|_| TlsError::BadRecordMac)?;
                // The real type is the last non-zero byte; zeros after it
                // are padding.
                let end = text
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(TlsError::UnexpectedMessage("a record with no content type"))?;
                let ty = ContentType::from_byte(text[end])
                    .ok_or(TlsError::UnexpectedMessage("unknown inner content type"))?;
                if end > MAX_PLAINTEXT {
                    return Err(TlsError::RecordOverflow { len: end });
                }
                Ok((ty, HEADER_LEN..HEADER_LEN + end))
            }
            Version::Tls12 => {
                let ty = ContentType::from_byte(header[0])
                    .ok_or(TlsError::UnexpectedMessage("unknown content type"))?;
                let explicit = self.keys.explicit_nonce(self.version);
                let skip = if explicit { 8 } else { 0 };
                let plain = body
                    .len()
                    .checked_sub(skip + TAG_LEN)
                    .ok_or(TlsError::BadRecordMac)?;
                let mut nonce = self.keys.nonce_bytes(seq);
                if explicit {
                    nonce[4..].copy_from_slice(&body[..8]);
                }
                let aad = Aad::from(aad12(seq, header[0], plain));
                self.keys
                    .key
                    .open_in_place(Nonce::assume_unique_for_key(nonce), aad, &mut body[skip..])
                    .map_err(|_| TlsError::BadRecordMac)?;
                if plain > MAX_PLAINTEXT {
                    return Err(TlsError::RecordOverflow { len: plain });
                }
                let start = HEADER_LEN + skip;
                Ok((ty, start..start + plain))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    /// Secrets for `cipher`. `AeadKey` can only be built with 32 bytes
    /// outside rustls, so AES-128-GCM (16-byte keys) is left to the
    /// integration tests, which negotiate it with a real peer.
    fn secrets(cipher: Cipher) -> Option<ConnectionTrafficSecrets> {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        let (key, iv) = (AeadKey::from(k), Iv::from([9u8; 12]));
        match cipher {
            Cipher::AesGcm128 => None,
            Cipher::AesGcm256 => Some(ConnectionTrafficSecrets::Aes256Gcm { key, iv }),
            Cipher::Chacha20Poly1305 => {
                Some(ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv })
            }
        }
    }

    /// Two copies of one AES-256-GCM key, for a sealer and an opener.
    pub(crate) fn keys_pair() -> (Keys, Keys) {
        let s = secrets(Cipher::AesGcm256).expect("AES-256 secrets");
        (Keys::new(&s).unwrap(), Keys::new(&s).unwrap())
    }

    fn pair(version: Version, cipher: Cipher) -> Option<(Sealer, Opener)> {
        let s = secrets(cipher)?;
        let a = Keys::new(&s).ok()?;
        let b = Keys::new(&s).ok()?;
        Some((Sealer::new(version, a, 7), Opener::new(version, b, 7)))
    }

    fn roundtrip(version: Version, cipher: Cipher, plain: &[u8]) {
        let Some((mut s, mut o)) = pair(version, cipher) else {
            return;
        };
        let mut rec = vec![0u8; s.record_len(plain.len())];
        let p = s.prefix_len();
        rec[p..p + plain.len()].copy_from_slice(plain);
        s.seal(ContentType::ApplicationData, &mut rec).unwrap();
        if !plain.is_empty() {
            assert_ne!(
                &rec[p..p + plain.len().min(16)],
                &plain[..plain.len().min(16)]
            );
        }
        let (ty, range) = o.open(&mut rec).unwrap();
        assert_eq!(ty, ContentType::ApplicationData);
        assert_eq!(&rec[range], plain);
        assert_eq!(s.seq(), 8);
    }

    #[test]
    fn seal_then_open_every_format() {
        for v in [Version::Tls12, Version::Tls13] {
            for c in [Cipher::AesGcm256, Cipher::Chacha20Poly1305] {
                for len in [0, 1, 100, MAX_PLAINTEXT] {
                    roundtrip(v, c, &vec![0x5a; len]);
                }
            }
        }
    }

    #[test]
    fn tampering_is_bad_record_mac() {
        let (mut s, mut o) = pair(Version::Tls13, Cipher::AesGcm256).unwrap();
        let mut rec = vec![1u8; s.record_len(10)];
        s.seal(ContentType::ApplicationData, &mut rec).unwrap();
        rec[7] ^= 1;
        assert!(matches!(o.open(&mut rec), Err(TlsError::BadRecordMac)));
    }

    #[test]
    fn header_limits() {
        assert!(Header::parse(&[23, 3, 3, 0], Version::Tls13)
            .unwrap()
            .is_none());
        let big = (MAX_CIPHERTEXT_13 + 1) as u16;
        let mut h = [23, 3, 3, 0, 0];
        h[3..].copy_from_slice(&big.to_be_bytes());
        assert!(matches!(
            Header::parse(&h, Version::Tls13),
            Err(TlsError::RecordOverflow { .. })
        ));
        assert!(Header::parse(&h, Version::Tls12).unwrap().is_some());
        assert!(Header::parse_any_version(&h).unwrap().is_some());
        let too_big = (MAX_CIPHERTEXT_12 + 1) as u16;
        h[3..].copy_from_slice(&too_big.to_be_bytes());
        assert!(Header::parse_any_version(&h).is_err());
        assert!(Header::parse(&[99, 3, 3, 0, 1], Version::Tls13).is_err());
        assert!(
            Header::parse_any_version(&[22, 2, 0, 0, 1]).is_err(),
            "SSL 2"
        );
        let h = Header::parse_any_version(&[22, 3, 1, 0, 7])
            .unwrap()
            .unwrap();
        assert_eq!((h.ty, h.record_len()), (22, HEADER_LEN + 7));
    }

    #[test]
    fn oversized_seal_is_refused() {
        let (mut s, _) = pair(Version::Tls13, Cipher::Chacha20Poly1305).unwrap();
        let mut rec = vec![0u8; s.record_len(MAX_PLAINTEXT + 1)];
        assert!(matches!(
            s.seal(ContentType::ApplicationData, &mut rec),
            Err(TlsError::RecordOverflow { .. })
        ));
    }
}
