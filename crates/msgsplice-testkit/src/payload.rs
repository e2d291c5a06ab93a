//! Deterministic payloads, and a tally that proves each message arrived
//! exactly once.
//!
//! Patterns are pseudo-random so that a misplaced byte, a stale page or a
//! page holding another message's data is caught; checking that bytes
//! match is not enough on its own, though: a page recycled too early and
//! refilled with a *later* message's data is a perfect copy of that later
//! message. Hence [`Tally`]: the receiver records the id of every message
//! (or segment) it sees, and a duplicate or a missing id fails the test.

use std::sync::OnceLock;

/// 4 MiB of xorshift bytes, made once per process; tests cut their data
/// from it.
pub fn source() -> &'static [u8] {
    static SRC: OnceLock<Vec<u8>> = OnceLock::new();
    SRC.get_or_init(|| {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        (0..4 << 20)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    })
}

/// `len` pseudo-random bytes (xorshift64*) from `seed`, different at every
/// offset and for every seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Which (message, segment) ids a receiver has seen, out of `messages` ×
/// `segments`. One bit of memory per id.
#[derive(Debug, Clone)]
pub struct Tally {
    segments: usize,
    seen: Vec<bool>,
    distinct: usize,
    duplicates: usize,
    out_of_range: usize,
    first_duplicate: Option<(u64, u64)>,
}

impl Tally {
    /// A tally expecting each of `messages` messages to arrive as
    /// `segments` segments (1 for a stream or a plain datagram).
    pub fn new(messages: usize, segments: usize) -> Tally {
        Tally {
            segments,
            seen: vec![false; messages * segments],
            distinct: 0,
            duplicates: 0,
            out_of_range: 0,
            first_duplicate: None,
        }
    }

    /// Records one arrival of segment `segment` of message `message`;
    /// true if it is the first.
    pub fn record(&mut self, message: u64, segment: u64) -> bool {
        let (m, s) = (message as usize, segment as usize);
        if s >= self.segments || m >= self.seen.len() / self.segments.max(1) {
            self.out_of_range += 1;
            return false;
        }
        let at = &mut self.seen[m * self.segments + s];
        if *at {
            self.duplicates += 1;
            self.first_duplicate.get_or_insert((message, segment));
            return false;
        }
        *at = true;
        self.distinct += 1;
        true
    }

    /// True once every id has arrived.
    pub fn is_complete(&self) -> bool {
        self.distinct == self.seen.len()
    }

    /// Distinct ids seen so far.
    pub fn distinct(&self) -> usize {
        self.distinct
    }

    /// Arrivals of an id already seen.
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// `Ok` if every id arrived exactly once and no unknown id came;
    /// otherwise what went wrong, with the first missing and duplicated id.
    pub fn check(&self) -> Result<(), String> {
        if self.is_complete() && self.duplicates == 0 && self.out_of_range == 0 {
            return Ok(());
        }
        let first_missing = self
            .seen
            .iter()
            .position(|s| !s)
            .map(|at| (at / self.segments, at % self.segments));
        Err(format!(
            "{} of {} distinct ids arrived, {} duplicates (first {:?}), {} unknown ids; \
             first missing (message, segment) = {first_missing:?}",
            self.distinct,
            self.seen.len(),
            self.duplicates,
            self.first_duplicate,
            self.out_of_range
        ))
    }

    /// Panics with [`Tally::check`]'s reason unless every id arrived
    /// exactly once.
    #[track_caller]
    pub fn assert_exactly_once(&self) {
        if let Err(why) = self.check() {
            panic!("not every message arrived exactly once: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_rejects_duplicates_gaps_and_strangers() {
        let mut t = Tally::new(3, 2);
        for m in 0..3 {
            for s in 0..2 {
                assert!(t.record(m, s));
            }
        }
        t.assert_exactly_once();
        assert!(!t.record(1, 1));
        assert!(t.check().unwrap_err().contains("1 duplicates"));

        let mut t = Tally::new(2, 1);
        t.record(0, 0);
        t.record(0, 1);
        t.record(7, 0);
        let why = t.check().unwrap_err();
        assert!(
            why.contains("2 unknown ids") && why.contains("Some((1, 0))"),
            "{why}"
        );
    }

    #[test]
    fn patterns_differ_by_seed_and_repeat_by_seed() {
        assert_eq!(pattern(100, 3), pattern(100, 3));
        assert_ne!(pattern(100, 3), pattern(100, 4));
        assert_eq!(source().len(), 4 << 20);
        assert_eq!(&source()[..8], &source().to_vec()[..8]);
    }
}
