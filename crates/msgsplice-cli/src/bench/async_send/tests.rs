//! The `async` section's turns measured against known answers: what
//! arrives on every connection, how many system calls, how many
//! allocations. Nothing here looks at a clock.

use msgsplice::frag::FragCache;

use super::run::{byte_count, run_turn, warmup, Contender, Parts, Runtimes, Stop, CONTENDERS};
use super::*;

fn parts(n: usize) -> Parts {
    let payload = FragCache::new().memdup(&pattern(n, 3)).unwrap();
    Parts::new(&pattern(HEADER, 1), payload, &pattern(TRAILER, 2))
}

#[test]
fn every_contender_delivers_exactly_its_messages() {
    let rts = Runtimes::new().unwrap();
    let p = parts(1 << 10);
    let want = p.expected().repeat(20);
    for conns in [1, 4] {
        for c in CONTENDERS {
            let r = run_turn(&rts, c, conns, &p, Stop::Messages(20), true).unwrap();
            assert_eq!(r.messages, 20 * conns as u64, "{c:?}, {conns} connections");
            assert_eq!(r.bytes, (want.len() * conns) as u64, "{c:?}");
            assert_eq!(r.received.len(), conns, "{c:?}");
            assert_eq!(r.per_connection, vec![20; conns], "{c:?}");
            assert_eq!(r.fairness(), 1.0);
            for (i, got) in r.received.iter().enumerate() {
                assert!(*got == want, "{c:?}, connection {i}: bytes differ");
            }
        }
    }
}

/// System calls per 1 KiB message, while the socket never fills: one
/// write per `write_all`, one `writev`, one `sendmsg` (below the zero-copy
/// threshold, so no completions to read either).
fn expected_calls(c: Contender) -> u64 {
    match c {
        Contender::ThreeWriteAll => 3,
        Contender::JoinedWriteAll | Contender::WriteVectored => 1,
        Contender::Splicer | Contender::SplicerOff => 1,
    }
}

#[test]
fn syscall_and_allocation_counts_on_known_cases() {
    assert!(
        crate::alloc_count::installed(),
        "unit tests count allocations"
    );
    let rts = Runtimes::new().unwrap();
    let p = parts(1 << 10);
    // 20 messages of 1160 B fit in the receiver's window: no write finds
    // the socket full, so the counts are exact.
    let count = 20;
    for conns in [1, 4] {
        for c in CONTENDERS {
            let r = run_turn(&rts, c, conns, &p, Stop::Messages(count), false).unwrap();
            let msgs = count * conns as u64;
            assert_eq!(r.syscalls, msgs * expected_calls(c), "{c:?}, {conns}");
            // Every message after warm-up is counted, and none allocates.
            let counted = (count - warmup(conns)) * conns as u64;
            assert_eq!(r.allocs, Some((0, counted)), "{c:?}, {conns}");
            assert_eq!(r.allocs_per_msg(), Some(0.0));
        }
    }
}

#[test]
fn allocations_in_the_sending_task_are_counted() {
    // The message copied into a fresh Vec would be one allocation each:
    // the per-task meter must see the tokio row's own reused Vec grow once
    // (during warm-up) and nothing after, and must not be fooled by the
    // receivers' buffers, allocated on the other runtime. Here the warm-up
    // is 0 messages (Stop::Messages(1)), so the growth itself is counted.
    let rts = Runtimes::new().unwrap();
    let p = parts(1 << 10);
    let r = run_turn(
        &rts,
        Contender::JoinedWriteAll,
        1,
        &p,
        Stop::Messages(1),
        false,
    )
    .unwrap();
    assert_eq!(r.allocs, Some((1, 1)));
}

#[test]
fn fairness_is_the_fewest_over_the_mean() {
    let mut r = run_turn(
        &Runtimes::new().unwrap(),
        Contender::Splicer,
        1,
        &parts(64),
        Stop::Messages(3),
        false,
    )
    .unwrap();
    assert_eq!(r.fairness(), 1.0);
    r.per_connection = vec![10, 30];
    assert_eq!(r.fairness(), 0.5);
    r.per_connection = vec![0, 0];
    assert_eq!(r.fairness(), 0.0);
}

#[test]
fn a_short_or_long_stream_fails_the_count() {
    assert!(byte_count(300, 3, 100).is_ok());
    assert!(byte_count(0, 0, 100).is_ok());
    let e = byte_count(299, 3, 100).unwrap_err();
    assert!(e.contains("read 299 bytes, 300 were sent"), "{e}");
    assert!(byte_count(400, 3, 100).is_err());
}

/// The samples of rows whose GB/s per run are `gbps`, in contender order.
fn group(gbps: [&[f64]; 5]) -> GroupSamples {
    let mut s = GroupSamples::new(gbps.len(), 5);
    for (row, v) in gbps.iter().enumerate() {
        for &x in *v {
            s.push(row, &[Some(x), Some(1.0), Some(1.0), Some(0.0), Some(1.0)]);
        }
    }
    s
}

#[test]
fn targets_judge_against_the_best_tokio_row_per_run() {
    // write_vectored is the best tokio row by median; in run 2 three
    // write_all got lucky, which must not count. AsyncSplicer per run:
    // 1.0x, 0.5x, 1.0x of write_vectored, and 2x, 1x, 2x of three
    // write_all. The SPLICE-off row is faster but not judged.
    let s = group([
        &[1.0, 0.9, 1.0],
        &[1.5, 0.3, 1.5],
        &[2.0, 0.4, 2.0],
        &[2.0, 0.2, 2.0],
        &[9.0, 9.0, 9.0],
    ]);
    let (g, best) = into_group(group_name(1 << 10, 1), &s);
    assert_eq!(CONTENDERS[best], Contender::WriteVectored);
    assert_eq!(g.rows.len(), 5);
    assert!(g.rows[0].baseline && !g.rows[3].baseline);
    assert_eq!(g.rows[3].extras[VS_BEST].samples, [1.0, 0.5, 1.0]);
    let lines = targets(&g, 1 << 10, &s, best);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("1.00x the best tokio row, tokio: write_vectored loop"),
        "{}",
        lines[0]
    );
    assert!(lines[0].ends_with(": met"), "{}", lines[0]);
    assert!(
        lines[1].contains("2.00x tokio: three write_all"),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(": met"), "{}", lines[1]);
    // Not 1 KiB: no line against three write_all.
    assert_eq!(targets(&g, 16 << 10, &s, best).len(), 1);

    let slow = group([
        &[1.0, 1.0, 1.0],
        &[1.0, 1.0, 1.0],
        &[1.0, 1.0, 1.0],
        &[0.9, 0.9, 0.9],
        &[1.0, 1.0, 1.0],
    ]);
    let (g, best) = into_group("g".into(), &slow);
    let lines = targets(&g, 1 << 10, &slow, best);
    assert!(lines.iter().all(|l| l.ends_with("NOT met")), "{lines:?}");
}

#[test]
fn allocation_target_takes_the_worst_run() {
    let s = group([&[1.0]; 5]);
    let (mut g, _) = into_group("g".into(), &s);
    let line = allocs_target(std::slice::from_ref(&g)).unwrap();
    assert!(line.ends_with("(target 0): met"), "{line}");
    g.rows[3] = g.rows[3].clone().with_extra(ALLOCS, &[0.0, 0.01]);
    let line = allocs_target(&[g]).unwrap();
    assert!(
        line.contains("at most 0.010") && line.ends_with("NOT met"),
        "{line}"
    );
}

#[test]
fn estimate_stays_within_its_budget() {
    // Not a timing test: the arithmetic of the plan, so that the section
    // stays near 12 s by default and short with --quick.
    let o = Options::default();
    assert!(AsyncSection.estimate(&o) <= Duration::from_secs(13));
    let quick = Options {
        quick: true,
        runs: crate::bench::QUICK_RUNS,
        ..Options::default()
    };
    assert!(AsyncSection.estimate(&quick) <= Duration::from_secs(2));
}
