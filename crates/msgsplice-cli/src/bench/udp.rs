//! The `udp` section: what zero-copy saves the sender of UDP GSO
//! traffic, where it can save anything, and whether the default policy
//! picks the better choice on each path.
//!
//! A message is one 64400-byte payload fragment that leaves as 46 GSO
//! segments of 1400 bytes from one `sendmsg`. The fragments come from a
//! ring of 256 MiB (2 MiB folios, so transparent huge pages where the
//! kernel grants them), cycled through, so that copying them reads memory,
//! not cache. Three ways to send
//! them, each over its own socket, taking turns in short slices within
//! each run (so a disturbance of the shared machine hits all three alike):
//! SPLICE off (the kernel copies; the baseline), SPLICE on with
//! zero-copy kept whatever the completions say, and the default policy
//! (SPLICE on, zero-copy stopped after 64 COPIED completions).
//!
//! Two paths, IPv4 and IPv6 each:
//!
//! - **drop sink** ([`DropSink`]): packets leave without local delivery, so
//!   the pages are never copied (needs root);
//! - **loopback**: a receiver thread reads what it can; delivery to it copies
//!   zero-copy pages anyway, and every completion says COPIED.
//!
//! The sender's CPU time is read from `CLOCK_THREAD_CPUTIME_ID`: the
//! scheduler's runtime of the sending thread, the counter that
//! `getrusage(RUSAGE_THREAD)` reports as user + system time, here to the
//! nanosecond. It includes the kernel's work on the send path (building,
//! dropping or delivering the packet, which runs in the sender's context),
//! and the wait for the last completions. Bytes are verified by the crate's
//! tests, not here (UDP on loopback drops what the receiver cannot keep up
//! with, which is not an error).

mod send;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub use self::send::{measure_run, Mode, PayloadRing, Sample, Sender, SLICES};

use super::netns::{self, DropSink};
use super::report::{Group, Outcome, Row, Table};
use super::{section, Options, Progress, Section};

/// Per-run duration unless `--duration-ms` says otherwise (six slices of
/// 40 ms per mode; kept short so that the default benchmark, `uring`
/// included, stays within its two minutes).
const RUN: Duration = Duration::from_millis(240);
/// The GSO segment size: fits a 1500-byte MTU under IPv6 and IPv4 headers.
pub const SEGMENT: u16 = 1400;
/// Message length: 46 segments.
pub const MESSAGE: usize = 46 * SEGMENT as usize;
/// Payload bytes cycled through: far more than any cache.
pub const RING_BYTES: usize = 256 << 20;
/// The ring with `--quick` (numbers not meaningful anyway).
const QUICK_RING_BYTES: usize = 8 << 20;

const CPU: &str = "CPU s/GiB";
const ZC: &str = "zero-copy %";
const COPIED: &str = "COPIED %";
const CALLS: &str = "syscalls/msg";

/// Reads and discards datagrams on loopback until dropped.
struct Receiver {
    addr: SocketAddr,
    stop: std::sync::Arc<AtomicBool>,
    bytes: std::sync::Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start(v6: bool) -> std::io::Result<Receiver> {
        let ip: IpAddr = if v6 {
            Ipv6Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::LOCALHOST.into()
        };
        let sock = UdpSocket::bind((ip, 0))?;
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&sock, 4 << 20);
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = sock.local_addr()?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let bytes = std::sync::Arc::new(AtomicU64::new(0));
        let (s, b) = (stop.clone(), bytes.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !s.load(Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    b.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        });
        Ok(Receiver {
            addr,
            stop,
            bytes,
            thread: Some(thread),
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The section.
pub struct UdpSection;

/// One group of the table: a path and a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    DropSink,
    Loopback,
}

impl Section for UdpSection {
    fn id(&self) -> &'static str {
        "udp"
    }

    fn title(&self) -> String {
        "UDP GSO: sender CPU with and without zero-copy, drop sink and loopback".into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        let rows = (4 * Mode::ALL.len() * opts.runs) as u32;
        opts.run_duration(RUN) * rows + Duration::from_millis(if opts.quick { 100 } else { 500 })
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        section::outcome(measure_all(opts, progress))
    }
}

fn measure_all(opts: &Options, progress: &mut Progress) -> Result<Table, String> {
    let dur = opts.run_duration(RUN);
    progress.step(format_args!("filling the payload ring"));
    let ring = PayloadRing::new(if opts.quick {
        QUICK_RING_BYTES
    } else {
        RING_BYTES
    })?;
    let mut t = table(opts, dur, &ring);
    let sink = DropSink::up();
    let mut groups = Vec::new();
    for v6 in [false, true] {
        match &sink {
            Ok(_) => groups.push((Path::DropSink, v6)),
            Err(why) if !v6 => t.notes.push(format!("drop sink: not measured: {why}")),
            Err(_) => {}
        }
    }
    groups.push((Path::Loopback, false));
    groups.push((Path::Loopback, true));

    for (path, v6) in groups {
        let name = format!(
            "{}, {}",
            match path {
                Path::DropSink => "drop sink",
                Path::Loopback => "loopback",
            },
            if v6 { "IPv6" } else { "IPv4" }
        );
        let receiver = match path {
            Path::Loopback => match Receiver::start(v6) {
                Ok(r) => Some(r),
                Err(e) if v6 => {
                    t.notes.push(format!("{name}: not measured: {e}"));
                    continue;
                }
                Err(e) => return Err(format!("{name}: receiver: {e}")),
            },
            Path::DropSink => None,
        };
        let to = match &receiver {
            Some(r) => r.addr,
            None => SocketAddr::new(netns::receiver(v6), 9),
        };
        let sink = match path {
            Path::DropSink => sink.as_ref().ok(),
            Path::Loopback => None,
        };
        let samples = section::together(&name, Mode::ALL.len(), opts.runs, 5, progress, |run| {
            let samples = match sink {
                Some(sink) => run_in_namespace(sink, to, &ring, dur, run),
                None => measure_run(to, &ring, dur, run),
            }?;
            Ok(samples.iter().map(turn).collect())
        })?;
        if let Some(r) = &receiver {
            if r.bytes.load(Ordering::Relaxed) == 0 {
                return Err(format!("{name}: the receiver got nothing"));
            }
        }
        let names = Mode::ALL.map(Mode::name);
        let g = samples.into_group(name, &names, &[CPU, ZC, COPIED, CALLS], None);
        t.notes.extend(verdicts(&g));
        t.groups.push(g);
    }
    drop(sink);
    t.compute_ratios();
    Ok(t)
}

/// One sample as a row's values: GB/s, then the extra columns in the
/// order of [`table`].
fn turn(s: &Sample) -> section::Turn {
    vec![
        Some(s.gbps()),
        Some(s.cpu_per_gib()),
        Some(s.zerocopy_percent()),
        Some(s.copied_percent()),
        Some(s.syscalls_per_msg()),
    ]
}

/// [`measure_run`] on a thread of its own that enters the drop sink's
/// namespace first (a thread leaves its namespace only by ending).
fn run_in_namespace(
    sink: &DropSink,
    to: SocketAddr,
    ring: &PayloadRing,
    dur: Duration,
    run: usize,
) -> Result<Vec<Sample>, String> {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            sink.enter()
                .map_err(|e| format!("enter the namespace: {e}"))?;
            measure_run(to, ring, dur, run)
        })
        .join()
        .map_err(|_| "the sending thread panicked".to_string())?
    })
}

/// The empty table: its columns and how its numbers are taken.
fn table(opts: &Options, dur: Duration, ring: &PayloadRing) -> Table {
    let mut t = Table::new("GB/s", true, "vs off");
    t.about = vec![
        format!(
            "{MESSAGE}-byte messages (one payload fragment each) sent as {} GSO segments of \
             {SEGMENT} B by one sendmsg each; fragments cycled from a ring of {} MiB \
             (2 MiB folios)",
            MESSAGE / usize::from(SEGMENT),
            ring.bytes() >> 20
        ),
        format!(
            "GB/s of message bytes sent and {CPU} of the sending thread (CLOCK_THREAD_CPUTIME_ID, \
             = getrusage RUSAGE_THREAD user+sys), first send to last completion; \
             median of {} runs of {} ms per mode, the modes taking turns in {SLICES} slices",
            opts.runs,
            dur.as_millis()
        ),
        "drop sink: veth to a namespace, every packet dropped by the sender's queue \
         (no local delivery, pages never copied); loopback: a receiver thread reads what it can"
            .into(),
        format!(
            "{ZC}: bytes handed over by reference; {COPIED}: zero-copy completions the kernel \
             reported copied"
        ),
    ];
    t.extra_columns = vec![CPU.into(), ZC.into(), COPIED.into(), CALLS.into()];
    t
}

/// The targets, checked on one group's medians. Drop sink (where
/// the sender is busy all the time, so CPU per GiB is its speed and is not
/// disturbed by other work on the machine): SPLICE on uses at most 0.35x
/// the CPU per GiB of SPLICE off, and the default policy at most 1.05x the
/// CPU per GiB of the better fixed choice. Loopback (where the sender also
/// waits for delivery, so only the wall clock tells its speed): the default
/// policy reaches at least 0.95x the GB/s of the better fixed choice.
fn verdicts(g: &Group) -> Vec<String> {
    let find = |m: Mode| g.rows.iter().find(|r| r.name == m.name());
    let (Some(off), Some(on), Some(def)) = (find(Mode::Off), find(Mode::On), find(Mode::Default))
    else {
        return Vec::new();
    };
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let cpu = |r: &Row| r.extras.get(CPU).map_or(f64::NAN, |s| s.median);
    let mut out = Vec::new();
    if g.name.starts_with("drop sink") {
        let x = cpu(on) / cpu(off);
        out.push(format!(
            "{}: SPLICE on uses {x:.2}x the CPU per GiB of SPLICE off (target <= 0.35x): {}",
            g.name,
            met(x <= 0.35)
        ));
        let (better, name) = if cpu(on) <= cpu(off) {
            (cpu(on), "SPLICE on")
        } else {
            (cpu(off), "SPLICE off")
        };
        let x = cpu(def) / better;
        out.push(format!(
            "{}: the default policy uses {x:.2}x the CPU per GiB of the better fixed choice \
             ({name}) (target <= 1.05x): {}",
            g.name,
            met(x <= 1.05)
        ));
    } else {
        let (better, name) = if on.value.median >= off.value.median {
            (on.value.median, "SPLICE on")
        } else {
            (off.value.median, "SPLICE off")
        };
        let x = def.value.median / better;
        let by_cpu = cpu(def) / cpu(off).min(cpu(on));
        out.push(format!(
            "{}: the default policy runs at {x:.2}x the GB/s of the better fixed choice \
             ({name}) (target >= 0.95x): {}; its sender CPU per GiB is {by_cpu:.2}x the \
             lower of the two",
            g.name,
            met(x >= 0.95)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One run on loopback, a few milliseconds per mode: shapes, not
    /// speeds. SPLICE off splices nothing; SPLICE on splices every payload
    /// and every completion says COPIED.
    #[test]
    fn measures_each_mode_on_loopback() {
        let ring = PayloadRing::new(4 << 20).unwrap();
        assert!(ring.bytes() >= 4 << 20);
        let rx = Receiver::start(false).unwrap();
        let samples = measure_run(rx.addr, &ring, Duration::from_millis(6), 1).unwrap();
        for (mode, s) in Mode::ALL.iter().zip(&samples) {
            assert!(s.bytes >= u64::from(SLICES) * 16 * MESSAGE as u64);
            assert!(s.gbps() > 0.0 && s.cpu_per_gib() > 0.0, "{s:?}");
            assert_eq!(s.stats.messages * MESSAGE as u64, s.bytes);
            match mode {
                Mode::Off => assert_eq!(s.zerocopy_percent(), 0.0),
                Mode::On => {
                    assert_eq!(s.zerocopy_percent(), 100.0, "{s:?}");
                    assert_eq!(s.copied_percent(), 100.0);
                }
                Mode::Default => {}
            }
        }
    }

    #[test]
    fn verdicts_name_the_better_choice() {
        let row = |m: Mode, gbps: f64, cpu: f64| {
            Row::new(m.name(), m == Mode::Off, &[gbps])
                .unwrap()
                .with_extra(CPU, &[cpu])
        };
        let mut g = Group::new("drop sink, IPv4");
        g.rows = vec![
            row(Mode::Off, 3.0, 0.30),
            row(Mode::On, 9.0, 0.09),
            row(Mode::Default, 8.9, 0.09),
        ];
        let v = verdicts(&g);
        assert!(v[0].contains("0.30x") && v[0].ends_with(": met"), "{v:?}");
        assert!(
            v[1].contains("(SPLICE on)") && v[1].ends_with(": met"),
            "{v:?}"
        );
        g.name = "loopback, IPv4".into();
        g.rows[2] = row(Mode::Default, 2.0, 0.5);
        let v = verdicts(&g);
        assert_eq!(v.len(), 1);
        assert!(
            v[0].contains("(SPLICE on)") && v[0].contains("NOT met"),
            "{v:?}"
        );
        assert!(v[0].ends_with("5.56x the lower of the two"), "{v:?}");
    }
}
