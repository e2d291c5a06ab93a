//! Small file ranges read into fragments (`Builder::read_file_ranges_up_to`):
//! the same bytes arrive as by `sendfile`, at every boundary of the
//! threshold and at unaligned offsets, in two system calls per message, and
//! a file shorter than its range fails before any byte of the message goes.

mod common;

use std::fs::File;
use std::io::Write;

use common::{pair, read_to_end, send_all, source, Transport};
use msgsplice::send::Builder;
use msgsplice::{FragCache, Msg, SendError};
use proptest::prelude::*;

/// An unlinked temporary file holding `data`.
fn temp_file(data: &[u8]) -> File {
    let mut f = tempfile_in_tmp();
    f.write_all(data).unwrap();
    f
}

fn tempfile_in_tmp() -> File {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "msgsplice-reads-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f
}

/// Sends header + `file[off..off + len]` + trailer per `(off, len)` with
/// ranges of at most `threshold` bytes read, checks the bytes and returns
/// the Splicer's counters.
fn send_ranges(
    t: Transport,
    splice: bool,
    threshold: u64,
    file: &File,
    data: &[u8],
    ranges: &[(u64, u64)],
) -> msgsplice::SendStats {
    let (tx, rx) = pair(t).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::new();
    let mut sp = Builder::new()
        .splice(splice)
        .read_file_ranges_up_to(threshold)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let mut want = Vec::new();
    for (i, &(off, len)) in ranges.iter().enumerate() {
        let hdr = format!("<{i}:{off}+{len}>");
        let mut m = Msg::new();
        m.push(hdr.as_bytes())
            .push_file(file, off, len)
            .push(cache.memdup(&[i as u8; 8]).unwrap());
        send_all(&mut sp, &mut m).unwrap();
        want.extend_from_slice(hdr.as_bytes());
        want.extend_from_slice(&data[off as usize..(off + len) as usize]);
        want.extend_from_slice(&[i as u8; 8]);
    }
    let st = sp.stats();
    drop(sp);
    let got = h.join().unwrap().unwrap();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes differ");
    st
}

/// Lengths around the threshold (0, 1, T - 1, T, T + 1) at aligned and
/// unaligned offsets: ranges up to T are read, longer ones spliced, and
/// what arrives is the same either way, over TCP and a Unix stream.
#[test]
fn every_boundary_of_the_threshold() {
    let data = &source()[..256 << 10];
    let file = temp_file(data);
    for t in [Transport::Tcp4, Transport::UnixStream] {
        for threshold in [4096u64, 32 << 10] {
            let mut ranges = Vec::new();
            for off in [0u64, 1, 4095, 4097, 65_536 + 3] {
                for len in [0, 1, threshold - 1, threshold, threshold + 1] {
                    ranges.push((off, len));
                }
            }
            for splice in [true, false] {
                let st = send_ranges(t, splice, threshold, &file, data, &ranges);
                let read = ranges
                    .iter()
                    .filter(|&&(_, l)| l > 0 && l <= threshold)
                    .count();
                assert_eq!(st.file_ranges_read, read as u64, "{t:?} {threshold}");
                assert_eq!(st.messages, ranges.len() as u64);
            }
        }
    }
}

/// A message whose only range is read costs one `pread` and one
/// `sendmsg`: no `fstat` (the read itself finds a short file), no
/// `sendfile`, no pipe.
#[test]
fn a_small_range_costs_a_read_and_one_send() {
    let data = &source()[..64 << 10];
    let file = temp_file(data);
    for t in [Transport::Tcp4, Transport::Tcp6, Transport::UnixStream] {
        // Below the zero-copy threshold, so no message asks about the peer.
        let ranges: Vec<(u64, u64)> = (0..20u64).map(|i| (i * 997, 1000 + i * 400)).collect();
        let st = send_ranges(t, true, 32 << 10, &file, data, &ranges);
        assert_eq!(st.file_ranges_read, 20);
        assert_eq!(st.syscalls, 20 * 2, "{t:?}");
        assert_eq!(st.bytes_spliced, 0, "{t:?}: nothing by sendfile");
    }
}

/// A file shorter than a range that would be read fails with `PastEof`
/// before a byte of the message goes, whether the range checks are on or
/// off; the connection stays usable.
#[test]
fn a_short_file_fails_before_any_byte() {
    let data = &source()[..10_000];
    let file = temp_file(data);
    for check in [true, false] {
        let (tx, rx) = pair(Transport::Tcp4).unwrap();
        let h = read_to_end(rx);
        let mut sp = Builder::new().check_file_ranges(check).build(tx).unwrap();
        let mut m = Msg::new();
        m.push(b"header")
            .push_file(&file, 9_000, 2_000)
            .push(b"end");
        match sp.send(&mut m) {
            Err(SendError::PastEof {
                offset,
                len,
                file_len,
            }) => assert_eq!((offset, len, file_len), (9_000, 2_000, 10_000)),
            other => panic!("check {check}: {other:?}"),
        }
        assert_eq!(m.sent(), 0, "check {check}: nothing went");
        let mut ok = Msg::new();
        ok.push(b"next").push_file(&file, 9_000, 1_000);
        sp.send(&mut ok).unwrap();
        drop(sp);
        let mut want = b"next".to_vec();
        want.extend_from_slice(&data[9_000..]);
        assert_eq!(h.join().unwrap().unwrap(), want, "check {check}");
    }
}

/// A range the file only partly covers, with a file that shrinks after
/// the message was built: the read finds it, nothing goes.
#[test]
fn a_file_truncated_after_the_message_was_built() {
    let data = &source()[..20_000];
    let file = temp_file(data);
    let (tx, rx) = pair(Transport::UnixStream).unwrap();
    let h = read_to_end(rx);
    let mut sp = Builder::new().check_file_ranges(false).build(tx).unwrap();
    let mut m = Msg::new();
    m.push(b"declared 4096 bytes:")
        .push_file(&file, 12_000, 4096);
    file.set_len(14_000).unwrap();
    assert!(matches!(
        sp.send(&mut m),
        Err(SendError::PastEof {
            file_len: 14_000,
            ..
        })
    ));
    assert_eq!(m.sent(), 0);
    drop(sp);
    assert!(h.join().unwrap().unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random messages of memory and file ranges, any threshold, SPLICE on
    /// or off: the same bytes arrive as with every range spliced.
    #[test]
    fn any_threshold_sends_the_same_bytes(
        parts in prop::collection::vec((0u64..200_000, 0u64..70_000, any::<bool>()), 1..6),
        threshold in prop_oneof![Just(0u64), 1u64..70_000, Just(u64::MAX)],
        splice in any::<bool>(),
        unix in any::<bool>(),
    ) {
        let data = &source()[..270_000];
        let file = temp_file(data);
        let t = if unix { Transport::UnixStream } else { Transport::Tcp4 };
        let (tx, rx) = pair(t).unwrap();
        let h = read_to_end(rx);
        let mut sp = Builder::new()
            .splice(splice)
            .read_file_ranges_up_to(threshold)
            .build(tx)
            .unwrap();
        let mut want = Vec::new();
        let mut m = Msg::new();
        for (i, &(off, len, with_mem)) in parts.iter().enumerate() {
            let len = len.min(data.len() as u64 - off);
            if with_mem {
                m.push(vec![i as u8; i + 1]);
                want.extend_from_slice(&vec![i as u8; i + 1]);
            }
            m.push_file(&file, off, len);
            want.extend_from_slice(&data[off as usize..(off + len) as usize]);
        }
        send_all(&mut sp, &mut m).unwrap();
        drop(sp);
        let got = h.join().unwrap().unwrap();
        prop_assert_eq!(got.len(), want.len());
        prop_assert!(got == want);
    }
}

/// Over a Unix stream a small message of several parts is gathered into
/// one buffer and sent in one call; a larger one, or with gathering off,
/// goes as it is. The same bytes arrive either way.
#[test]
fn small_unix_stream_runs_are_gathered() {
    let cache = FragCache::new();
    for (gather, len, gathered) in [
        (4096usize, 1000usize, true),
        (0, 1000, false),
        (4096, 8000, false),
    ] {
        let (tx, rx) = pair(Transport::UnixStream).unwrap();
        let h = read_to_end(rx);
        let mut sp = Builder::new()
            .gather_small_runs_up_to(gather)
            .build(tx)
            .unwrap();
        let body = cache.memdup(&source()[..len]).unwrap();
        let mut want = Vec::new();
        for i in 0..10u8 {
            let head = [i; 16];
            let mut m = Msg::new();
            m.push(&head[..]).push(body.clone()).push(vec![i; 8]);
            send_all(&mut sp, &mut m).unwrap();
            want.extend_from_slice(&[i; 16]);
            want.extend_from_slice(&source()[..len]);
            want.extend_from_slice(&[i; 8]);
        }
        let st = sp.stats();
        assert_eq!(
            st.runs_gathered,
            if gathered { 10 } else { 0 },
            "{gather} {len}"
        );
        assert_eq!(st.syscalls, 10, "one call a message either way");
        drop(sp);
        assert!(h.join().unwrap().unwrap() == want, "{gather} {len}");
    }
}
