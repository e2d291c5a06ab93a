//! Regression tests for two kernel bugs that the MSG_SPLICE_PAGES
//! conversion of sunrpc had:
//!
//! 1. the record-marker fragment, copied into a page fragment so the reply
//!    could go in one sendmsg, was never released: the server leaked memory
//!    until it ran out;
//! 2. the offset into the first page of the payload was ignored, so clients
//!    read the start of the page (zeroes) instead of their data.

mod common;

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use common::{pair, read_to_end, Transport};
use msgsplice::send::{Builder, OnCopied};
use msgsplice::{FragCache, Msg};

/// RPC-shaped replies (4-byte marker + head + page + tail, the marker and
/// head copied into fragments for the zero-copy send) leave nothing behind:
/// while sending, live folios stay bounded; afterwards every folio of the
/// cache can be unmapped, so no fragment was kept.
#[test]
fn copied_marker_fragments_are_released() {
    let (tx, rx) = pair(Transport::Tcp4).unwrap();
    let h = read_to_end(rx);
    let cache = FragCache::builder()
        .max_cached_bytes(1 << 20)
        .build()
        .unwrap();
    let mut sp = Builder::new()
        .on_copied(OnCopied::Keep)
        .frag_cache(cache.clone())
        .build(tx)
        .unwrap();
    let mut peak = 0;
    let n = 3000;
    for i in 0..n as u32 {
        let marker = (0x8000_0000u32 | (120 + 32768 + 4)).to_be_bytes();
        let head = vec![i as u8; 120];
        let mut page = cache.alloc(32 << 10, 4096).unwrap();
        page.fill(i as u8);
        let page = page.freeze();
        let mut m = Msg::new();
        m.push(&marker[..]).push(head).push(page).push(b"tail");
        sp.send(&mut m).unwrap();
        peak = peak.max(cache.stats().folios_live);
    }
    let st = sp.stats();
    assert!(st.zerocopy_sends > n / 2, "the zero-copy path ran: {st:?}");
    assert!(sp.wait_completions(Duration::from_secs(10)).unwrap());
    drop(sp);
    assert!(peak < 200, "live folios grew to {peak}: fragments are kept");
    cache.drain();
    assert_eq!(cache.stats().folios_live, 0, "a fragment leaked");
    assert_eq!(
        h.join().unwrap().unwrap().len(),
        n as usize * (4 + 120 + 32768 + 4)
    );
}

/// Data that starts inside its first page (fragment, Bytes and file range
/// offsets of 1 to 4097 bytes, with zeroes before the offset) arrives from
/// the offset, on the zero-copy and the copy paths.
#[test]
fn offset_into_first_page_is_honoured() {
    let page_size = 4096;
    let path = std::env::temp_dir().join(format!("msgsplice-offset-{}", std::process::id()));
    let mut file = File::create(&path).unwrap();
    let mut body = vec![0u8; 4 * page_size];
    for (i, b) in body.iter_mut().enumerate().skip(1) {
        *b = 1 + (i % 251) as u8;
    }
    file.write_all(&body).unwrap();
    drop(file);
    let file = File::open(&path).unwrap();
    let _ = std::fs::remove_file(&path);

    for (t, splice) in [
        (Transport::Tcp4, true),
        (Transport::Tcp4, false),
        (Transport::UnixStream, true),
    ] {
        let (tx, rx) = pair(t).unwrap();
        let h = read_to_end(rx);
        let cache = FragCache::new();
        let mut sp = Builder::new()
            .splice(splice)
            .zerocopy_threshold(0)
            .on_copied(OnCopied::Keep) // zero-copy to a local peer
            .frag_cache(cache.clone())
            .build(tx)
            .unwrap();
        let mut want = Vec::new();
        for off in [1usize, 100, 4095, 4097] {
            let len = 2 * page_size;
            // Page-aligned memory, zero before `off`, data after.
            let mut f = cache.alloc(off + len, page_size).unwrap();
            f.copy_from_slice(&body[..off + len]);
            f[..off].fill(0);
            let frag = f.freeze().slice(off..);
            assert_eq!(frag.folio_offset() % page_size, off % page_size);
            let mut v = vec![0u8; off];
            v.extend_from_slice(&body[off..off + len]);
            let bytes = Bytes::from(v).slice(off..);
            let mut m = Msg::new();
            m.push(frag)
                .push(bytes)
                .push_file(&file, off as u64, len as u64);
            sp.send(&mut m).unwrap();
            for _ in 0..3 {
                want.extend_from_slice(&body[off..off + len]);
            }
        }
        if t == Transport::Tcp4 && splice {
            assert!(sp.stats().zerocopy_sends > 0);
        }
        drop(sp);
        let got = h.join().unwrap().unwrap();
        assert_eq!(got.len(), want.len());
        assert!(
            got == want,
            "{t:?} splice={splice}: bytes from the page start"
        );
    }
}
