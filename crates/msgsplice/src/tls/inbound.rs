//! The receiving side: the peer's records, deframed and opened in place in
//! one buffer, sans I/O. The driver ([`TlsSplicer::read`](super::TlsSplicer::read))
//! fills the buffer from the socket and acts on what comes out.

use std::ops::Range;

use super::record::{ContentType, Header, Opener, Version, HEADER_LEN};
use super::TlsError;

/// Received bytes kept at most (records are at most 2^14 + 2048 + 5).
const BUF_LEN: usize = 64 << 10;
/// Largest post-handshake handshake message accepted (a session ticket).
const MAX_HANDSHAKE_MSG: usize = 64 << 10;

/// What the next record held.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Application data, to be taken with [`Inbound::take_plaintext`].
    Data,
    /// The peer's close_notify: no more data will come.
    CloseNotify,
    /// A complete post-handshake handshake message: its type and body.
    Handshake(u8, Vec<u8>),
    /// A record that needs nothing (an empty one, a TLS 1.2 warning).
    Nothing,
}

/// Received ciphertext and the plaintext opened from it.
pub(crate) struct Inbound {
    pub(crate) opener: Opener,
    version: Version,
    buf: Box<[u8]>,
    /// Unprocessed received bytes: `buf[start..end]`.
    start: usize,
    end: usize,
    /// Opened application data not yet handed out, inside `buf`.
    plain: Range<usize>,
    /// Application data rustls decrypted during the handshake.
    early: Vec<u8>,
    /// A handshake message that spans records.
    hs: Vec<u8>,
    pub(crate) peer_closed: bool,
    pub(crate) records: u64,
}

impl Inbound {
    /// Starts with the bytes the handshake read past its end and the
    /// application data it decrypted.
    pub(crate) fn new(
        opener: Opener,
        version: Version,
        leftover: &[u8],
        early: Vec<u8>,
    ) -> Inbound {
        let mut buf = vec![0u8; BUF_LEN.max(leftover.len())].into_boxed_slice();
        buf[..leftover.len()].copy_from_slice(leftover);
        Inbound {
            opener,
            version,
            buf,
            start: 0,
            end: leftover.len(),
            plain: 0..0,
            early,
            hs: Vec::new(),
            peer_closed: false,
            records: 0,
        }
    }

    /// Copies opened application data into `out`; 0 if none is waiting.
    pub(crate) fn take_plaintext(&mut self, out: &mut [u8]) -> usize {
        if !self.early.is_empty() {
            let n = out.len().min(self.early.len());
            out[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            return n;
        }
        let n = out.len().min(self.plain.len());
        out[..n].copy_from_slice(&self.buf[self.plain.start..self.plain.start + n]);
        self.plain.start += n;
        n
    }

    /// Drops the opened application data not handed out yet (while closing,
    /// when nobody reads it).
    pub(crate) fn discard_plaintext(&mut self) {
        self.early.clear();
        self.plain = self.plain.end..self.plain.end;
    }

    /// Drops every received byte not processed yet: after the peer's
    /// close_notify, nothing it sends matters.
    pub(crate) fn discard_received(&mut self) {
        self.discard_plaintext();
        self.start = 0;
        self.end = 0;
        self.plain = 0..0;
    }

    /// True while opened application data waits to be taken.
    pub(crate) fn has_plaintext(&self) -> bool {
        !self.early.is_empty() || !self.plain.is_empty()
    }

    /// Where the socket's next bytes go. Moves what is unprocessed to the
    /// front first (only once no plaintext is waiting in the buffer).
    pub(crate) fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 && self.plain.is_empty() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            self.plain = 0..0;
        }
        &mut self.buf[self.end..]
    }

    /// Counts `n` bytes written into [`spare`](Self::spare).
    pub(crate) fn filled(&mut self, n: usize) {
        self.end += n;
    }

    /// What an end of stream means now: after close_notify nothing; between
    /// records a truncation; inside one a cut record.
    pub(crate) fn eof_error(&self) -> TlsError {
        let have = self.end - self.start;
        if have == 0 {
            return TlsError::UnexpectedEof;
        }
        let want = match Header::parse(&self.buf[self.start..self.end], self.version) {
            Ok(Some(h)) => h.record_len(),
            _ => HEADER_LEN,
        };
        TlsError::TruncatedRecord { got: have, want }
    }

    /// Opens the next complete record in the buffer. `Ok(None)`: more bytes
    /// are needed (and [`spare`](Self::spare) has room for them).
    pub(crate) fn next(&mut self) -> Result<Option<Event>, TlsError> {
        debug_assert!(self.plain.is_empty());
        let Some(h) = Header::parse(&self.buf[self.start..self.end], self.version)? else {
            return Ok(None);
        };
        let len = h.record_len();
        if self.end - self.start < len {
            return Ok(None);
        }
        let at = self.start;
        self.start += len;
        self.records += 1;
        let (ty, range) = self.opener.open(&mut self.buf[at..at + len])?;
        let range = at + range.start..at + range.end;
        match ty {
            ContentType::ApplicationData => {
                if !self.hs.is_empty() {
                    return Err(TlsError::UnexpectedMessage(
                        "data inside a handshake message",
                    ));
                }
                self.plain = range;
                Ok(Some(if self.plain.is_empty() {
                    Event::Nothing
                } else {
                    Event::Data
                }))
            }
            ContentType::Alert => match self.buf[range] {
                [level, desc] => self.alert(level, desc),
                _ => Err(TlsError::UnexpectedMessage("malformed alert")),
            },
            ContentType::Handshake => {
                self.hs.extend_from_slice(&self.buf[range]);
                self.handshake_message()
            }
            ContentType::ChangeCipherSpec => Err(TlsError::UnexpectedMessage(
                "change_cipher_spec after the handshake",
            )),
        }
    }

    fn alert(&mut self, level: u8, desc: u8) -> Result<Option<Event>, TlsError> {
        if desc == 0 {
            self.peer_closed = true;
            return Ok(Some(Event::CloseNotify));
        }
        // TLS 1.2 warnings other than close_notify can be ignored; in TLS
        // 1.3 every alert but close_notify and user_canceled ends the
        // connection (RFC 8446 section 6).
        let ignorable = match self.version {
            Version::Tls12 => level == 1,
            Version::Tls13 => desc == 90,
        };
        if ignorable {
            Ok(Some(Event::Nothing))
        } else {
            Err(TlsError::AlertReceived(rustls::AlertDescription::from(
                desc,
            )))
        }
    }

    /// Takes one complete message off the handshake buffer, if there is one.
    pub(crate) fn handshake_message(&mut self) -> Result<Option<Event>, TlsError> {
        let Some(&[ty, a, b, c]) = self.hs.get(..4) else {
            return Ok(Some(Event::Nothing));
        };
        let len = u32::from_be_bytes([0, a, b, c]) as usize;
        if len > MAX_HANDSHAKE_MSG {
            return Err(TlsError::UnexpectedMessage("oversized handshake message"));
        }
        if self.hs.len() < 4 + len {
            return Ok(Some(Event::Nothing));
        }
        let body = self.hs[4..4 + len].to_vec();
        self.hs.drain(..4 + len);
        Ok(Some(Event::Handshake(ty, body)))
    }

    /// True if a handshake message already waits in the buffer (several can
    /// share a record).
    pub(crate) fn handshake_pending(&self) -> bool {
        self.hs.len() >= 4
            && self.hs.len()
                >= 4 + u32::from_be_bytes([0, self.hs[1], self.hs[2], self.hs[3]]) as usize
    }

    /// Bytes of handshake messages received but not complete yet.
    pub(crate) fn handshake_partial(&self) -> bool {
        !self.hs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::record::{tests::keys_pair, Sealer};

    /// A sealer and an inbound buffer that share keys.
    fn pair(version: Version) -> (Sealer, Inbound) {
        let (a, b) = keys_pair();
        let sealer = Sealer::new(version, a, 0);
        let inbound = Inbound::new(Opener::new(version, b, 0), version, &[], Vec::new());
        (sealer, inbound)
    }

    fn record(s: &mut Sealer, ty: ContentType, body: &[u8]) -> Vec<u8> {
        let mut rec = vec![0u8; s.record_len(body.len())];
        let p = s.prefix_len();
        rec[p..p + body.len()].copy_from_slice(body);
        s.seal(ty, &mut rec).unwrap();
        rec
    }

    fn feed(ib: &mut Inbound, bytes: &[u8]) {
        ib.spare()[..bytes.len()].copy_from_slice(bytes);
        ib.filled(bytes.len());
    }

    #[test]
    fn records_arrive_in_pieces() {
        for v in [Version::Tls12, Version::Tls13] {
            let (mut s, mut ib) = pair(v);
            let rec = record(&mut s, ContentType::ApplicationData, b"hello world");
            // Byte by byte: nothing until the last byte is there.
            for b in &rec[..rec.len() - 1] {
                feed(&mut ib, &[*b]);
                assert_eq!(ib.next().unwrap(), None);
            }
            feed(&mut ib, &rec[rec.len() - 1..]);
            assert_eq!(ib.next().unwrap(), Some(Event::Data));
            let mut out = [0u8; 5];
            assert_eq!(ib.take_plaintext(&mut out), 5);
            assert_eq!(&out, b"hello");
            let mut out = [0u8; 64];
            assert_eq!(ib.take_plaintext(&mut out), 6);
            assert_eq!(&out[..6], b" world");
            assert!(!ib.has_plaintext());
        }
    }

    #[test]
    fn handshake_messages_split_and_joined() {
        let (mut s, mut ib) = pair(Version::Tls13);
        // Two messages in one record, then one spread over two records.
        let mut two = vec![4, 0, 0, 2, 0xaa, 0xbb];
        two.extend_from_slice(&[24, 0, 0, 1, 1]);
        let big: Vec<u8> = [4, 0, 0, 6, 1, 2, 3, 4, 5, 6].to_vec();
        let mut bytes = record(&mut s, ContentType::Handshake, &two);
        bytes.extend(record(&mut s, ContentType::Handshake, &big[..3]));
        bytes.extend(record(&mut s, ContentType::Handshake, &big[3..]));
        feed(&mut ib, &bytes);
        assert_eq!(
            ib.next().unwrap(),
            Some(Event::Handshake(4, vec![0xaa, 0xbb]))
        );
        assert!(ib.handshake_pending());
        assert_eq!(
            ib.handshake_message().unwrap(),
            Some(Event::Handshake(24, vec![1]))
        );
        assert!(!ib.handshake_pending());
        assert_eq!(ib.next().unwrap(), Some(Event::Nothing), "half a message");
        assert!(ib.handshake_partial());
        assert_eq!(
            ib.next().unwrap(),
            Some(Event::Handshake(4, big[4..].to_vec()))
        );
        assert!(!ib.handshake_partial());
    }

    #[test]
    fn alerts_by_version() {
        // close_notify ends the stream in both versions.
        let (mut s, mut ib) = pair(Version::Tls13);
        feed(&mut ib, &record(&mut s, ContentType::Alert, &[1, 0]));
        assert_eq!(ib.next().unwrap(), Some(Event::CloseNotify));
        assert!(ib.peer_closed);
        // A TLS 1.2 warning is ignored; in TLS 1.3 it is fatal.
        let (mut s, mut ib) = pair(Version::Tls12);
        feed(&mut ib, &record(&mut s, ContentType::Alert, &[1, 100]));
        assert_eq!(ib.next().unwrap(), Some(Event::Nothing));
        let (mut s, mut ib) = pair(Version::Tls13);
        feed(&mut ib, &record(&mut s, ContentType::Alert, &[1, 100]));
        assert!(matches!(ib.next(), Err(TlsError::AlertReceived(_))));
        let (mut s, mut ib) = pair(Version::Tls13);
        feed(&mut ib, &record(&mut s, ContentType::Alert, &[2]));
        assert!(matches!(ib.next(), Err(TlsError::UnexpectedMessage(_))));
    }

    #[test]
    fn end_of_stream_is_told_apart() {
        let (mut s, mut ib) = pair(Version::Tls13);
        assert!(matches!(ib.eof_error(), TlsError::UnexpectedEof));
        let rec = record(&mut s, ContentType::ApplicationData, &[9; 100]);
        feed(&mut ib, &rec[..10]);
        assert_eq!(ib.next().unwrap(), None);
        match ib.eof_error() {
            TlsError::TruncatedRecord { got, want } => assert_eq!((got, want), (10, rec.len())),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn data_may_not_interrupt_a_handshake_message() {
        let (mut s, mut ib) = pair(Version::Tls13);
        let mut bytes = record(&mut s, ContentType::Handshake, &[4, 0, 0, 9, 1]);
        bytes.extend(record(&mut s, ContentType::ApplicationData, b"x"));
        feed(&mut ib, &bytes);
        assert_eq!(ib.next().unwrap(), Some(Event::Nothing));
        assert!(matches!(ib.next(), Err(TlsError::UnexpectedMessage(_))));
    }

    #[test]
    fn the_buffer_makes_room_for_full_records() {
        let (mut s, mut ib) = pair(Version::Tls12);
        let mut got = 0;
        for round in 0..10u8 {
            // Three full records arriving in 20000-byte pieces.
            let mut all = Vec::new();
            for k in 0..3 {
                all.extend(record(
                    &mut s,
                    ContentType::ApplicationData,
                    &[round + k; 16384],
                ));
            }
            for chunk in all.chunks(20_000) {
                assert!(ib.spare().len() >= chunk.len());
                feed(&mut ib, chunk);
                while let Some(ev) = ib.next().unwrap() {
                    assert_eq!(ev, Event::Data);
                    let mut out = vec![0u8; 20_000];
                    let n = ib.take_plaintext(&mut out);
                    assert!(out[..n].iter().all(|&b| b == out[0]));
                    got += n;
                }
            }
        }
        assert_eq!(got, 10 * 3 * 16384);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever bytes arrive, the receive side answers with events or
        /// typed errors, never a panic, and never loops without progress.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..3000),
                                tls13 in proptest::prelude::any::<bool>()) {
            let v = if tls13 { Version::Tls13 } else { Version::Tls12 };
            let (_, mut ib) = pair(v);
            for chunk in bytes.chunks(700) {
                feed(&mut ib, chunk);
                for _ in 0..100 {
                    let mut out = [0u8; 64];
                    if ib.take_plaintext(&mut out) > 0 { continue; }
                    match ib.next() {
                        Ok(Some(_)) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            let _ = ib.eof_error();
        }

        /// A stream of records cut at arbitrary points yields the same
        /// plaintext.
        #[test]
        fn any_split_yields_the_same_bytes(lens in proptest::collection::vec(0usize..20_000, 1..6),
                                           cuts in proptest::collection::vec(1usize..9000, 1..20)) {
            let (mut s, mut ib) = pair(Version::Tls13);
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for (i, &n) in lens.iter().enumerate() {
                let n = n.min(16384);
                let body: Vec<u8> = (0..n).map(|k| (k * 31 + i) as u8).collect();
                wire.extend(record(&mut s, ContentType::ApplicationData, &body));
                want.extend(body);
            }
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < wire.len() {
                let n = (*cut.next().unwrap_or(&1)).min(wire.len() - at).min(ib.spare().len());
                feed(&mut ib, &wire[at..at + n]);
                at += n;
                loop {
                    let mut out = [0u8; 5000];
                    let k = ib.take_plaintext(&mut out);
                    if k > 0 { got.extend_from_slice(&out[..k]); continue; }
                    match ib.next().unwrap() { Some(_) => {} None => break }
                }
            }
            proptest::prop_assert!(got == want);
        }
    }
}
