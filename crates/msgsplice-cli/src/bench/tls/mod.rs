//! The `tls` section: TLS over TCP loopback, messages of a 128-byte header,
//! an N-byte payload and an 8-byte trailer, sent by msgsplice's
//! [`TlsSplicer`](msgsplice::tls::TlsSplicer) and by rustls's ordinary buffered writer fed the same
//! three parts. A receiver thread decrypts with rustls and checks every
//! byte.
//!
//! Contenders (interleaved within each run, on a fresh connection each):
//!
//! - `rustls writer + write_tls` (baseline): `conn.writer().write_all` of
//!   the three parts (buffer limit lifted), then `write_tls` until nothing
//!   is left: rustls's buffered writer with one flush per message, the
//!   strongest way to use it. Each part becomes its own record(s): the
//!   header, the payload in 16 KiB pieces, the trailer.
//! - `rustls StreamOwned, 3 writes`: `write_all` of each part on a
//!   `StreamOwned`, as most code does; every write flushes.
//! - `msgsplice TlsSplicer`: one `send` of a three-segment [`Msg`](msgsplice::Msg); records
//!   are filled across the parts and sealed in fragments (default SPLICE
//!   policy, which stops `MSG_ZEROCOPY` on loopback after the kernel
//!   reports it copied anyway).
//! - `msgsplice TlsSplicer, SPLICE off`: the same with plain copying sends.
//!
//! The sender and the receiver run on one pair of long-lived threads
//! for the whole section, pinned to two different CPUs where there are two
//! (`bench::pair`), as a server and a remote client would be. Even so, on
//! a small VM whole runs can swing by a large factor (apparently with
//! where the host runs the vCPUs), for every contender alike; so each row
//! also reports its *per-run ratio*: its GB/s over the baseline's in the
//! same run, as a median over runs.
//!
//! The receiver reads the socket through a 256 KiB buffer (so that
//! rustls's 4 KiB `read_tls` calls do not each cost a system call) and
//! takes the plaintext with `fill_buf`/`consume`; it is the same for every
//! contender. A run is timed from the first send to the receiver's
//! close_notify. Besides GB/s each row reports the sending thread's CPU
//! time per message (from `/proc/thread-self/schedstat`, nanoseconds),
//! which shows the sender's cost even when the receiver sets the pace,
//! its write system calls and its heap allocations per message. A last
//! group measures, without I/O, what every contender must spend on a
//! 64 KiB message: ring's AES-256-GCM over it and one copy of it. Measured
//! here, those two and the kernel's send path are nearly all of the
//! sender's time, which bounds what a better sender can gain.

mod run;

use std::time::Duration;

use msgsplice::frag::FragCache;

pub use run::{
    fixed_costs, run, run_on, Configs, Contender, Parts, Receiver, RunResult, CONTENDERS, WARMUP,
};

use super::net::{pattern, HEADER, TRAILER};
use super::pair::ThreadPair;
use super::report::{Group, Outcome, Row, Table};
use super::{fmt_size, section, Options, Progress, Section};

/// Per-run duration unless `--duration-ms` says otherwise.
const RUN: Duration = Duration::from_millis(150);
/// The groups of the table: payload size and receiver (64 KiB, decrypted,
/// is the case the section is built around).
pub const CONDITIONS: [(usize, Receiver); 4] = [
    (16 << 10, Receiver::Decrypt),
    (64 << 10, Receiver::Decrypt),
    (256 << 10, Receiver::Decrypt),
    (64 << 10, Receiver::Discard),
];
const MSGS: &str = "msgs/s";
const CPU: &str = "send CPU us/msg";
const CALLS: &str = "writes/msg";
const ALLOCS: &str = "allocs/msg";
const PAIRED: &str = "per-run ratio";

/// The section.
pub struct TlsSection;

impl Section for TlsSection {
    fn id(&self) -> &'static str {
        "tls"
    }

    fn title(&self) -> String {
        "TLS over TCP loopback: msgsplice TlsSplicer against rustls's buffered writer".into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        let rows = (CONTENDERS.len() * CONDITIONS.len() * opts.runs) as u32;
        (opts.run_duration(RUN) + Duration::from_millis(10)) * rows
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        section::outcome(measure(opts, progress))
    }
}

fn measure(opts: &Options, progress: &mut Progress) -> Result<Table, String> {
    let dur = opts.run_duration(RUN);
    let cfg = Configs::new()?;
    let header = pattern(HEADER, 1);
    let trailer = pattern(TRAILER, 2);
    let cache = FragCache::new();
    let mut t = table(opts, dur);
    let mut user_copies = Vec::new();
    // Every condition's message, made before the threads that borrow them.
    let mut messages = Vec::new();
    for (n, _) in CONDITIONS {
        let payload = cache
            .memdup(&pattern(n, 3))
            .map_err(|e| format!("FragCache::memdup: {e}"))?;
        let expected = [&header[..], &payload[..], &trailer[..]].concat();
        messages.push((payload, expected));
    }
    let pinned = std::thread::scope(|scope| -> Result<Option<(usize, usize)>, String> {
        let pair = ThreadPair::spawn(scope);
        for ((n, mode), (payload, expected)) in CONDITIONS.into_iter().zip(&messages) {
            let msg = Parts {
                header: &header,
                payload,
                trailer: &trailer,
                expected,
            };
            let group = match mode {
                Receiver::Decrypt => format!("N = {}", fmt_size(n)),
                Receiver::Discard => format!(
                    "N = {}, sender-bound: the receiver drops the ciphertext unread",
                    fmt_size(n)
                ),
            };
            let names = CONTENDERS.map(Contender::name);
            let samples = section::interleaved(&group, &names, opts.runs, 5, progress, |_, i| {
                let c = CONTENDERS[i];
                let res = run_on(&pair, c, &cfg, &msg, Ok(dur), mode)
                    .map_err(|e| format!("{}: {e}", c.name()))?;
                user_copies.extend(res.user_copies_per_byte);
                let secs = res.elapsed.as_secs_f64();
                Ok(vec![
                    Some(res.bytes as f64 / secs / 1e9),
                    Some(res.messages as f64 / secs),
                    Some(res.cpu_us_per_msg),
                    Some(res.writes_per_msg),
                    res.allocs_per_msg,
                ])
            })?;
            t.groups.push(samples.into_group(
                group,
                &names,
                &[MSGS, CPU, CALLS, ALLOCS],
                Some(PAIRED),
            ));
        }
        Ok(pair.pinned())
    })?;
    t.about.push(match pinned {
        Some((a, b)) => format!("sender pinned to CPU {a}, receiver to CPU {b}, for every run"),
        None => "sender and receiver threads not pinned (fewer than two CPUs allowed)".into(),
    });
    t.groups.push(fixed_costs_group(dur)?);
    t.notes = copy_notes(&user_copies);
    t.notes.extend(section::allocs_note(ALLOCS));
    t.compute_ratios();
    Ok(t)
}

/// The empty table: its columns and how its numbers are taken.
fn table(opts: &Options, dur: Duration) -> Table {
    let mut t = Table::new("GB/s", true, "ratio");
    t.about = vec![
        format!(
            "messages of {HEADER} B header + N payload + {TRAILER} B trailer over TLS 1.3 \
             (rustls's default suite, AES-256-GCM), TCP_NODELAY; a rustls client decrypts and \
             checks every byte"
        ),
        section::about_runs(
            "GB/s of plaintext, higher is better",
            opts.runs,
            dur,
            CONTENDERS[0].name(),
        ),
        format!(
            "{CPU}: the sending thread's CPU time; {CALLS}: write/sendmsg calls counted at the \
             socket; {ALLOCS}: heap allocations on the sending thread after {WARMUP} messages"
        ),
        format!(
            "{PAIRED}: median over runs of the row's GB/s divided by the baseline's in the same \
             run (contenders alternate within a run); steadier than the ratio of medians when \
             the machine's speed changes between runs"
        ),
    ];
    t.extra_columns = vec![
        MSGS.into(),
        CPU.into(),
        CALLS.into(),
        ALLOCS.into(),
        PAIRED.into(),
    ];
    t
}

/// What no sender can avoid: the AEAD and one copy of a 64 KiB message,
/// without I/O.
fn fixed_costs_group(dur: Duration) -> Result<Group, String> {
    let len = HEADER + (64 << 10) + TRAILER;
    let (seal, copy) = fixed_costs(len, dur / 4)?;
    let mut g =
        Group::new("reference: fixed costs of one 64 KiB message, no I/O (best of repetitions)");
    let gbps = |us: f64| len as f64 / us / 1e3;
    g.rows.extend(
        Row::new(
            "AES-256-GCM seal in 16 KiB records (ring)",
            false,
            &[gbps(seal)],
        )
        .map(|r| r.with_extra(CPU, &[seal])),
    );
    g.rows.extend(
        Row::new("memcpy of the plaintext", false, &[gbps(copy)])
            .map(|r| r.with_extra(CPU, &[copy])),
    );
    Ok(g)
}

/// Where each sender copies the plaintext, with msgsplice's copies as its
/// counters measured them.
fn copy_notes(user_copies: &[f64]) -> Vec<String> {
    let measured = user_copies.iter().copied().fold(0.0f64, f64::max);
    vec![
        format!(
            "copies per plaintext byte: msgsplice 1 in user space (measured: at most {measured:.3}, \
             from its counters: memcpy into the record fragment, sealed in place) + 1 by the kernel \
             (sendmsg copies the ciphertext into the socket; on loopback MSG_ZEROCOPY is copied too)"
        ),
        "copies per plaintext byte: rustls 1 in user space (from its source: each record's \
         plaintext is copied into a new Vec, sealed in place) + 1 by the kernel (writev); the \
         difference is not the copies but the records (header and trailer get their own), a heap \
         allocation per record, and for StreamOwned a flush per part"
            .into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every contender delivers exactly what it sent, closes with
    /// close_notify, and counts what it should: msgsplice one sendmsg per
    /// message and one user-space copy per byte, StreamOwned a write per
    /// part. No clock decides anything here.
    #[test]
    fn every_contender_delivers_and_counts() {
        let cfg = Configs::new().unwrap();
        let cache = FragCache::new();
        let payload = cache.memdup(&pattern(64 << 10, 3)).unwrap();
        let (h, t) = (pattern(HEADER, 1), pattern(TRAILER, 2));
        for c in CONTENDERS {
            let r = run(c, &cfg, &payload, &h, &t, Err(100), Receiver::Decrypt).unwrap();
            assert_eq!(r.messages, 100, "{c:?}");
            assert_eq!(r.bytes, 100 * ((64 << 10) + 136), "{c:?}");
            match c {
                Contender::Splicer { splice } => {
                    assert_eq!(r.user_copies_per_byte, Some(1.0), "{c:?}");
                    assert!(r.writes_per_msg <= 1.2, "{c:?}: {}", r.writes_per_msg);
                    // Not one per record as rustls. With SPLICE on, the
                    // first messages go zero-copy (until loopback's COPIED
                    // reports stop it) and hold their folios until the
                    // completions come, so new folios are mapped then.
                    if let (false, Some(a)) = (splice, r.allocs_per_msg) {
                        assert!(a < 0.1, "{c:?}: {a} heap allocations per message");
                    }
                }
                Contender::RustlsStream => assert!(r.writes_per_msg >= 3.0, "{c:?}"),
                Contender::RustlsWriter => assert!(r.writes_per_msg >= 1.0, "{c:?}"),
            }
        }
    }
}
