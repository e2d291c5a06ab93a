//! One round's step of one message: which run of memory goes next, how
//! (copied, zero-copy, or zero-copy from registered folios), cut into
//! entries; and, once the round's completions are in, what they mean for
//! the message's cursor, the held buffers and the counters.
//!
//! A run is cut into several entries only when it goes from registered
//! folios: one `SENDMSG_ZC` takes its buffers from one registered slot, so
//! a run over two folios becomes two entries, linked (`IOSQE_IO_LINK`) so
//! the second starts only once the first sent all of its bytes, with
//! `MSG_WAITALL` on all but the last (the kernel then finishes a short
//! send itself, and a failure cancels the rest of the chain: nothing is
//! ever sent out of order) and `MSG_MORE` so they leave as one stream.

use std::os::fd::BorrowedFd;

use bytes::Bytes;

use super::conn::Conn;
use crate::frag::{Frag, FragCache};
use crate::msg::Segment;
use crate::send::completion::Held;
use crate::send::policy::RunShape;
use crate::send::run::{copy_into_frags, memory_parts};
use crate::sys::sendmsg::IOV_MAX;
use crate::sys::uring::How;

/// Pages one socket buffer can pin (`MAX_SKB_FRAGS`, 17 by default): a
/// zero-copy datagram over that is refused by the kernel, so it is copied.
const ZEROCOPY_MAX_PAGES: usize = 17;

/// Most entries a run is cut into: beyond, it goes as one unregistered
/// zero-copy entry (a chain must fit the submission queue whole).
const MAX_CHAIN: usize = 16;

/// One entry of a plan: how it sends, and how many parts and bytes of the
/// run it covers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) how: How,
    pub(crate) parts: usize,
    pub(crate) bytes: u64,
}

/// The next run of one message, planned.
pub(crate) struct Plan {
    /// Index of the job (message) in the caller's list, and of its socket.
    pub(crate) job: usize,
    pub(crate) conn: usize,
    /// The run: segments `first..end`, from byte `off` of the first.
    pub(crate) first: usize,
    pub(crate) end: usize,
    pub(crate) off: u64,
    /// Bytes of the run, and whether more of the message follows it.
    pub(crate) bytes: u64,
    pub(crate) more: bool,
    pub(crate) zc: bool,
    /// Copy segments of a zero-copy run, copied into fragments.
    pub(crate) copies: Vec<Frag>,
    /// A record of more than `IOV_MAX` parts, gathered.
    pub(crate) bounce: Vec<u8>,
    pub(crate) entries: Vec<Entry>,
    /// The tracker id of the first zero-copy entry.
    pub(crate) first_id: u32,
    /// Per entry: the send completion's result, and whether a
    /// notification follows.
    pub(crate) results: Vec<Option<(i32, bool)>>,
    /// Scratch of [`cut_by_slot`](Plan::cut_by_slot): (slot, parts, bytes)
    /// of each stretch of parts in one registered folio or in none.
    cuts: Vec<(Option<u16>, usize, u64)>,
}

/// A part of a run: its bytes and where they come from.
pub(crate) enum Part<'m> {
    Seg(&'m Segment<'m>, &'m [u8]),
    Copy(&'m Frag),
    Bounce(&'m [u8]),
}

impl<'m> Part<'m> {
    pub(crate) fn bytes(&self) -> &'m [u8] {
        match *self {
            Part::Seg(_, d) | Part::Bounce(d) => d,
            Part::Copy(f) => &f[..],
        }
    }
}

impl Plan {
    /// An empty plan, to be [`fill`](Plan::fill)ed; its lists keep their
    /// capacity from one use to the next, so a warm splicer plans with no
    /// heap allocation.
    pub(crate) fn empty() -> Plan {
        Plan {
            job: 0,
            conn: 0,
            first: 0,
            end: 0,
            off: 0,
            bytes: 0,
            more: false,
            zc: false,
            copies: Vec::new(),
            bounce: Vec::new(),
            entries: Vec::new(),
            first_id: 0,
            results: Vec::new(),
            cuts: Vec::new(),
        }
    }

    /// Forgets the last run, releasing its copies (the tracker holds its
    /// own references to what must outlive the send).
    pub(crate) fn clear(&mut self) {
        self.copies.clear();
        self.bounce.clear();
        self.entries.clear();
        self.results.clear();
        self.cuts.clear();
    }

    /// Plans an empty datagram (a message of no bytes on a datagram or
    /// seqpacket socket): one entry with no buffer, copied.
    pub(crate) fn fill_empty(&mut self, job: usize, conn_idx: usize, next_id: u32) {
        self.clear();
        self.job = job;
        self.conn = conn_idx;
        self.first = 0;
        self.end = 0;
        self.off = 0;
        self.bytes = 0;
        self.more = false;
        self.zc = false;
        self.first_id = next_id;
        self.push_entry(How::Copy, 0, 0);
    }

    /// Plans the run of memory segments at the cursor `(first, off)` of a
    /// message with `remaining` bytes left, into this (cleared) plan.
    /// `record`: a datagram or seqpacket socket, whose message must go
    /// whole in one entry.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill(
        &mut self,
        job: usize,
        fd: BorrowedFd<'_>,
        conn: &mut Conn,
        conn_idx: usize,
        segs: &[Segment<'_>],
        first: usize,
        off: u64,
        remaining: u64,
        cache: &FragCache,
        slot_of: &dyn Fn(&[u8]) -> Option<u16>,
    ) {
        let record = conn.kind.is_record();
        let (end, bytes, shape, nparts) = scan_run(segs, first, off, record);
        let run = &segs[first..end];
        self.clear();
        let plan = self;
        plan.job = job;
        plan.conn = conn_idx;
        plan.first = first;
        plan.end = end;
        plan.off = off;
        plan.bytes = bytes;
        plan.more = bytes < remaining;
        plan.zc = false;
        plan.first_id = conn.zc.tracker.next_id();
        if record && nparts > IOV_MAX {
            for (_, d) in memory_parts(run, off) {
                plan.bounce.extend_from_slice(d);
            }
            plan.push_entry(How::Copy, 1, bytes);
            return;
        }
        plan.zc = conn.wants_zerocopy(fd, shape)
            && (shape.copy_bytes == 0 || copy_into_frags(cache, &mut plan.copies, run, off));
        if plan.zc && record && pages(plan.parts(segs).map(|p| p.bytes())) > ZEROCOPY_MAX_PAGES {
            plan.zc = false;
            plan.copies.clear();
        }
        if !plan.zc {
            plan.push_entry(How::Copy, nparts, bytes);
            return;
        }
        plan.cut_by_slot(segs, slot_of, record);
    }

    /// Cuts a zero-copy run into entries, one per run of consecutive parts
    /// in the same registered folio (or in none). A record stays one
    /// entry: from one slot, or not registered.
    fn cut_by_slot(
        &mut self,
        segs: &[Segment<'_>],
        slot_of: &dyn Fn(&[u8]) -> Option<u16>,
        record: bool,
    ) {
        let mut cur: Option<(Option<u16>, usize, u64)> = None;
        let mut cuts = std::mem::take(&mut self.cuts);
        for p in self.parts(segs) {
            let d = p.bytes();
            let key = slot_of(d);
            match &mut cur {
                Some((k, n, b)) if *k == key => {
                    *n += 1;
                    *b += d.len() as u64;
                }
                _ => {
                    cuts.extend(cur.take());
                    cur = Some((key, 1, d.len() as u64));
                }
            }
        }
        cuts.extend(cur);
        if (record && cuts.len() > 1) || cuts.len() > MAX_CHAIN {
            let n = cuts.iter().map(|c| c.1).sum();
            self.push_entry(How::ZeroCopy, n, self.bytes);
        } else {
            for &(key, n, b) in &cuts {
                self.push_entry(key.map_or(How::ZeroCopy, How::Fixed), n, b);
            }
        }
        self.cuts = cuts;
    }

    fn push_entry(&mut self, how: How, parts: usize, bytes: u64) {
        self.entries.push(Entry { how, parts, bytes });
        self.results.push(None);
    }

    /// The parts of the run in order, each copy segment replaced by its
    /// fragment in a zero-copy run, or the gathered record.
    pub(crate) fn parts<'m>(
        &'m self,
        segs: &'m [Segment<'m>],
    ) -> impl Iterator<Item = Part<'m>> + 'm {
        let bounce = (!self.bounce.is_empty()).then_some(Part::Bounce(&self.bounce));
        let mut copies = self.copies.iter();
        let zc = self.zc;
        let run = if bounce.is_some() {
            &segs[..0]
        } else {
            &segs[self.first..self.end]
        };
        bounce
            .into_iter()
            .chain(memory_parts(run, self.off).map(move |(s, d)| {
                match (zc && !s.is_spliceable()).then(|| copies.next()).flatten() {
                    Some(c) => Part::Copy(c),
                    None => Part::Seg(s, d),
                }
            }))
    }

    /// Bytes the round sent of this run: the entries' results in order, up
    /// to the first that fell short. Also the first error, if one stopped
    /// the chain (a link cancelled after it is not an error of its own).
    pub(crate) fn outcome(&self) -> (u64, Option<i32>) {
        let mut sent = 0;
        for (e, r) in self.entries.iter().zip(&self.results) {
            let res = r.map_or(-libc::ECANCELED, |r| r.0);
            if res < 0 {
                return (sent, (res != -libc::ECANCELED).then_some(-res));
            }
            sent += res as u64;
            if (res as u64) < e.bytes {
                return (sent, None);
            }
        }
        (sent, None)
    }

    /// After the round: holds the buffers of every zero-copy entry until
    /// its notification (committing one tracker id per entry, in order, as
    /// [`Conn::next_ids`] promised), completes at once those the kernel
    /// said no notification follows, and counts the bytes sent.
    pub(crate) fn settle(&self, conn: &mut Conn, segs: &[Segment<'_>], sent: u64) {
        let mut left = sent;
        let mut parts = self.parts(segs);
        for (i, e) in self.entries.iter().enumerate() {
            for p in parts.by_ref().take(e.parts) {
                let len = (p.bytes().len() as u64).min(left);
                left -= len;
                let spliced = self.zc && matches!(p, Part::Seg(s, _) if s.is_spliceable());
                if spliced {
                    conn.stats.bytes_spliced += len;
                } else {
                    conn.stats.bytes_copied += len;
                }
                if self.zc {
                    match p {
                        Part::Seg(Segment::Frag(f), _) => {
                            conn.zc.tracker.hold(Held::Frag(f.clone()))
                        }
                        Part::Seg(Segment::Bytes(b), _) => {
                            conn.zc.tracker.hold(Held::Bytes(Bytes::clone(b)))
                        }
                        Part::Copy(f) => conn.zc.tracker.hold(Held::Frag(f.clone())),
                        _ => {}
                    }
                }
            }
            if !self.zc {
                continue;
            }
            let id = conn.zc.tracker.commit();
            debug_assert_eq!(id, self.first_id.wrapping_add(i as u32));
            if matches!(self.entries[i].how, How::Fixed(_)) {
                conn.fixed_sends += 1;
            }
            conn.stats.zerocopy_sends += 1;
            if !self.results[i].is_some_and(|r| r.1) {
                // No notification will come (the send failed before
                // taking pages, or was cancelled): nothing is held.
                conn.zc.tracker.complete(id, id);
            }
        }
    }
}

/// Scans the run at `(first, off)`: its end, bytes, shape and parts. A
/// stream run stops at a file range or at `IOV_MAX` parts; a record takes
/// every segment.
fn scan_run(
    segs: &[Segment<'_>],
    first: usize,
    off: u64,
    record: bool,
) -> (usize, u64, RunShape, usize) {
    let mut shape = RunShape::default();
    let (mut end, mut bytes, mut n) = (first, 0u64, 0usize);
    while let Some(s) = segs.get(end) {
        let Some(data) = s.as_memory() else { break };
        if n == IOV_MAX && !record {
            break;
        }
        let len = data.len() as u64 - if end == first { off } else { 0 };
        end += 1;
        if len == 0 {
            continue;
        }
        n += 1;
        bytes += len;
        shape.add(s, len);
    }
    (end, bytes, shape, n)
}

/// Pages the kernel pins for these buffers, counted as the send module
/// counts them (a buffer continuing the previous one in the same page
/// shares its page).
fn pages<'a>(bufs: impl Iterator<Item = &'a [u8]>) -> usize {
    let page = rustix::param::page_size();
    let (mut n, mut prev_end) = (0, None);
    for b in bufs.filter(|b| !b.is_empty()) {
        let start = b.as_ptr() as usize;
        let end = start + b.len();
        n += (end - 1) / page - start / page + 1;
        if prev_end == Some(start) && start % page != 0 {
            n -= 1;
        }
        prev_end = Some(end);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(entries: &[u64], results: &[Option<i32>]) -> Plan {
        Plan {
            job: 0,
            conn: 0,
            first: 0,
            end: 0,
            off: 0,
            bytes: entries.iter().sum(),
            more: false,
            zc: true,
            copies: Vec::new(),
            bounce: Vec::new(),
            entries: entries
                .iter()
                .map(|&bytes| Entry {
                    how: How::ZeroCopy,
                    parts: 1,
                    bytes,
                })
                .collect(),
            first_id: 0,
            results: results.iter().map(|r| r.map(|r| (r, true))).collect(),
            cuts: Vec::new(),
        }
    }

    #[test]
    fn a_chain_counts_up_to_its_first_short_entry() {
        assert_eq!(plan(&[10, 20], &[Some(10), Some(20)]).outcome(), (30, None));
        // Short first entry: the linked second was cancelled, not an error.
        let p = plan(&[10, 20], &[Some(4), Some(-libc::ECANCELED)]);
        assert_eq!(p.outcome(), (4, None));
        // An error after a full entry: what went, and the error.
        let p = plan(
            &[10, 20, 5],
            &[Some(10), Some(-libc::EPIPE), Some(-libc::ECANCELED)],
        );
        assert_eq!(p.outcome(), (10, Some(libc::EPIPE)));
        // A missing completion counts as cancelled.
        assert_eq!(plan(&[10, 20], &[Some(10), None]).outcome(), (10, None));
    }

    #[test]
    fn pages_count_shared_pages_once() {
        let page = rustix::param::page_size();
        let buf = vec![0u8; 4 * page];
        let base = (buf.as_ptr() as usize).next_multiple_of(page) - buf.as_ptr() as usize;
        let a = &buf[base..base + 100];
        let b = &buf[base + 100..base + 200]; // continues a in its page
        let c = &buf[base + page - 1..base + page + 1]; // straddles two pages
        assert_eq!(pages([a, b].into_iter()), 1);
        assert_eq!(pages([a, c].into_iter()), 3);
        assert_eq!(pages(std::iter::empty()), 0);
    }
}
