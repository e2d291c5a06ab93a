//! The `uring` section: the same messages sent four ways ([`Way`]), side
//! by side: `sendmsg` copying, `sendmsg` with `MSG_ZEROCOPY` (both through
//! a Splicer), and io_uring `SENDMSG_ZC` (the UringSplicer) from ordinary
//! memory and from folios registered with the ring
//! ([`UringBuilder::bind_cache`](msgsplice::uring::UringBuilder::bind_cache)).
//!
//! Groups ([`SPECS`]): UDP on the drop sink (the test kit's two hosts with
//! the link dropping every packet at the sender, so pages are never copied)
//! and TCP over the same veth link delivering to a receiver thread in the
//! other namespace ([`drain`]); 64 KiB and 4 KiB messages; one socket and
//! 64 sockets (the Splicer rows loop over the sockets, the io_uring rows
//! send one message on each with one `send_many`). Each way has sockets of
//! its own for the whole group; the ways take turns within each run.
//!
//! Per row: GB/s, the sending side's CPU seconds per GiB (the process's
//! CPU time, io_uring's worker threads included, minus the TCP receiver
//! thread's), messages per CPU second, system calls and zero-copy
//! notifications per message, and the per-run ratios of the two CPU
//! figures against the `MSG_ZEROCOPY` row. Needs root (namespaces) and an
//! io_uring with `SENDMSG_ZC`; otherwise the section says why.

mod drain;
mod way;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use msgsplice::uring::UringBuilder;
use msgsplice_testkit::hosts::{self, Hosts, LinkMode, Side};

use self::drain::Drain;
use self::way::{Payload, Sample, Sender, Shape, Way, ZC_THRESHOLD};
use super::report::{Group, Outcome, Row, Table};
use super::section::{self, GroupSamples};
use super::{fmt_size, Options, Progress, Section};

/// Per-turn duration unless `--duration-ms` says otherwise: short, so
/// that the section stays cheap (the counts per message do not need long
/// turns; CPU per GiB is steady enough at this length on the drop sink).
const RUN: Duration = Duration::from_millis(25);
/// Setup and drain of one turn, for the estimate.
const TURN_OVERHEAD: Duration = Duration::from_millis(3);
/// Namespaces, payload rings, sockets and rings of every group, for the
/// estimate.
const SETUP: Duration = Duration::from_millis(400);
/// Payload bytes of each ring of fragments: the size of the test
/// machines' last-level cache, and each group uses two.
const RING_BYTES: usize = 32 << 20;
/// The ring with `--quick`.
const QUICK_RING_BYTES: usize = 2 << 20;
/// Untimed rounds before a group's first turn.
const WARM_ROUNDS: usize = 4;
/// The UDP GSO segment: a 1500-byte MTU less the IPv4 and UDP headers.
pub const SEGMENT: u16 = 1472;
/// The "64 KiB" UDP message: the most whole segments under the 65507
/// bytes a UDP datagram can carry.
pub const UDP_BIG: usize = 44 * SEGMENT as usize;

const CPU: &str = "CPU s/GiB";
const MPC: &str = "msgs/CPU-s";
const CALLS: &str = "syscalls/msg";
const NOTIFS: &str = "notifs/msg";
const CPU_VS: &str = "CPU/GiB vs ZC";
const MPC_VS: &str = "msgs/CPU-s vs ZC";

/// The network path of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// UDP GSO to the drop sink.
    UdpDrop,
    /// TCP to the receiver in the other namespace.
    TcpDeliver,
}

/// One group: a path, a message size class, a socket count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The path.
    pub link: Link,
    /// 64 KiB messages (else 4 KiB).
    pub big: bool,
    /// Sockets.
    pub sockets: usize,
}

/// The groups, in the order they run.
pub const SPECS: [Spec; 8] = {
    const fn s(link: Link, big: bool, sockets: usize) -> Spec {
        Spec { link, big, sockets }
    }
    [
        s(Link::UdpDrop, true, 1),
        s(Link::UdpDrop, true, 64),
        s(Link::UdpDrop, false, 1),
        s(Link::UdpDrop, false, 64),
        s(Link::TcpDeliver, true, 1),
        s(Link::TcpDeliver, true, 64),
        s(Link::TcpDeliver, false, 1),
        s(Link::TcpDeliver, false, 64),
    ]
};

impl Spec {
    /// What its senders send.
    pub fn shape(self) -> Shape {
        let udp = self.link == Link::UdpDrop;
        let len = match (self.big, udp) {
            (true, true) => UDP_BIG,
            (true, false) => 64 << 10,
            (false, _) => 4 << 10,
        };
        Shape {
            len,
            sockets: self.sockets,
            gso: udp.then_some(SEGMENT),
        }
    }

    /// The group's name.
    pub fn name(self) -> String {
        format!(
            "{}, {}, {} socket{}",
            match self.link {
                Link::UdpDrop => "UDP drop sink",
                Link::TcpDeliver => "TCP to the other namespace",
            },
            if self.big { "64 KiB" } else { "4 KiB" },
            self.sockets,
            if self.sockets == 1 { "" } else { "s" }
        )
    }
}

/// The section.
pub struct UringSection;

impl Section for UringSection {
    fn id(&self) -> &'static str {
        "uring"
    }

    fn title(&self) -> String {
        "io_uring SENDMSG_ZC (plain and registered folios) against sendmsg copy and MSG_ZEROCOPY"
            .into()
    }

    fn run_length(&self) -> Option<Duration> {
        Some(RUN)
    }

    fn estimate(&self, opts: &Options) -> Duration {
        let turns = (SPECS.len() * Way::ALL.len() * runs(opts)) as u32;
        (opts.run_duration(RUN) + TURN_OVERHEAD) * turns + SETUP
    }

    fn run(&self, opts: &Options, progress: &mut Progress) -> Outcome {
        let fixed = match probe() {
            Ok(fixed) => fixed,
            Err(reason) => return Outcome::Skipped { reason },
        };
        if let Err(e) = hosts::remove_on_signal() {
            return Outcome::Failed {
                error: format!("cannot watch for signals: {e}"),
            };
        }
        let hosts = match Hosts::up() {
            Ok(h) => h,
            Err(e) => {
                return Outcome::Skipped {
                    reason: format!("needs two network namespaces: {e}"),
                }
            }
        };
        let ways = match &fixed {
            Ok(()) => Way::ALL.to_vec(),
            Err(_) => Way::ALL[..3].to_vec(),
        };
        let mut t = table(opts, &ways);
        if let Err(why) = fixed {
            t.notes.push(format!(
                "{}: not measured: this kernel cannot send from registered buffers ({why})",
                Way::RingFixed.name()
            ));
        }
        section::outcome(measure(&hosts, &SPECS, &ways, opts, progress, t))
    }
}

/// Runs per row: half of `--runs`, rounded up, to keep the section cheap
/// (it has eight groups of four rows).
pub fn runs(opts: &Options) -> usize {
    opts.runs.div_ceil(2)
}

/// Whether the kernel's io_uring can send zero-copy here: `Err` says why
/// not; `Ok(Err)` says why registered folios cannot be used.
fn probe() -> Result<Result<(), String>, String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("probe socket: {e}"))?;
    let sp = UringBuilder::new()
        .build(sock)
        .map_err(|e| format!("io_uring cannot be used here: {e}"))?;
    let p = sp.probe();
    if !p.sendmsg_zc {
        return Err("io_uring lacks IORING_OP_SENDMSG_ZC (Linux 6.1)".into());
    }
    Ok(match (p.fixed_sendmsg_zc, &p.fixed_why) {
        (true, _) => Ok(()),
        (false, why) => Err(why.clone().unwrap_or_else(|| "no reason given".into())),
    })
}

/// Measures the groups `specs` with the rows `ways` into `t`, on a thread
/// of its own in the sending namespace.
fn measure(
    hosts: &Hosts,
    specs: &[Spec],
    ways: &[Way],
    opts: &Options,
    progress: &mut Progress,
    mut t: Table,
) -> Result<Table, String> {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            hosts
                .enter(Side::Sender)
                .map_err(|e| format!("enter the sending namespace: {e}"))?;
            let mut run = Groups::new(hosts, ways, opts);
            for &spec in specs {
                let (g, notes) = run.group(spec, progress)?;
                t.notes.extend(verdicts(spec, &g));
                t.notes.extend(notes);
                t.groups.push(g);
            }
            t.compute_ratios();
            Ok(t)
        })
        .join()
        .map_err(|_| "the sending thread panicked".to_string())?
    })
}

/// What the groups share: the hosts, the TCP receiver once started, the
/// unregistered payload rings (one per message length).
struct Groups<'h> {
    hosts: &'h Hosts,
    ways: Vec<Way>,
    dur: Duration,
    runs: usize,
    ring_bytes: usize,
    link: Option<Link>,
    drain: Option<Drain>,
    payloads: HashMap<usize, Arc<Payload>>,
}

impl<'h> Groups<'h> {
    fn new(hosts: &'h Hosts, ways: &[Way], opts: &Options) -> Groups<'h> {
        Groups {
            hosts,
            ways: ways.to_vec(),
            dur: opts.run_duration(RUN),
            runs: runs(opts),
            ring_bytes: if opts.quick {
                QUICK_RING_BYTES
            } else {
                RING_BYTES
            },
            link: None,
            drain: None,
            payloads: HashMap::new(),
        }
    }

    /// Measures one group; returns it and its notes.
    fn group(
        &mut self,
        spec: Spec,
        progress: &mut Progress,
    ) -> Result<(Group, Vec<String>), String> {
        let name = spec.name();
        progress.step(format_args!("{name}: setting up"));
        let received = self.drain.as_ref().map_or(0, Drain::bytes);
        let mut senders = self.senders(spec).map_err(|e| format!("{name}: {e}"))?;
        let ways = self.ways.clone();
        let names: Vec<&str> = ways.iter().map(|w| w.name()).collect();
        let drain = self
            .drain
            .as_ref()
            .filter(|_| spec.link == Link::TcpDeliver);
        let cpu = || sender_cpu(drain);
        let mut fixed = (0u64, 0u64);
        let samples = section::interleaved(&name, &names, self.runs, 5, progress, |_, row| {
            let s = senders[row].turn(self.dur, &cpu)?;
            if ways[row] == Way::RingFixed {
                fixed.0 += s.fixed_sends;
                fixed.1 += s.zerocopy_sends;
            }
            Ok(values(&s))
        })?;
        let sent: u64 = senders.iter().map(Sender::bytes_sent).sum();
        drop(senders);
        if let Some(d) = drain {
            if !d.wait_for(received + sent, Duration::from_secs(5)) {
                return Err(format!(
                    "{name}: the receiver got {} of the {sent} bytes sent",
                    d.bytes() - received
                ));
            }
        }
        let mut notes = Vec::new();
        if fixed.0 < fixed.1 {
            notes.push(format!(
                "{name}: only {:.0}% of the registered row's zero-copy sends came from \
                 registered folios (the rest were not registered: slots or RLIMIT_MEMLOCK)",
                100.0 * fixed.0 as f64 / fixed.1 as f64
            ));
        }
        Ok((group(&samples, name, &ways), notes))
    }

    /// The link in the mode of `spec`, and one warmed sender per way.
    fn senders(&mut self, spec: Spec) -> Result<Vec<Sender>, String> {
        if self.link != Some(spec.link) {
            let mode = match spec.link {
                Link::UdpDrop => LinkMode::Drop,
                Link::TcpDeliver => LinkMode::Deliver,
            };
            self.hosts.set_mode(mode).map_err(|e| e.to_string())?;
            self.link = Some(spec.link);
        }
        if spec.link == Link::TcpDeliver && self.drain.is_none() {
            self.drain = Some(Drain::start(self.hosts)?);
        }
        let shape = spec.shape();
        let payload = match self.payloads.get(&shape.len) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(Payload::new(shape.len, self.ring_bytes)?);
                self.payloads.insert(shape.len, p.clone());
                p
            }
        };
        let to = match (spec.link, &self.drain) {
            (Link::TcpDeliver, Some(d)) => d.addr,
            _ => SocketAddr::new(hosts::receiver(false), 9),
        };
        let mut open = || open(spec.link, to);
        let mut senders = Vec::new();
        for &w in &self.ways {
            let mut s = Sender::new(w, shape, &mut open, &payload, self.ring_bytes)?;
            s.warm(WARM_ROUNDS)?;
            senders.push(s);
        }
        Ok(senders)
    }
}

/// A socket of `link` connected to `to`.
pub fn open(link: Link, to: SocketAddr) -> Result<OwnedFd, String> {
    match link {
        Link::UdpDrop => {
            let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("UDP bind: {e}"))?;
            s.connect(to)
                .map_err(|e| format!("UDP connect {to}: {e}"))?;
            Ok(s.into())
        }
        Link::TcpDeliver => TcpStream::connect(to)
            .map(OwnedFd::from)
            .map_err(|e| format!("TCP connect {to}: {e}")),
    }
}

/// The sending side's CPU time: the process's (every thread, io_uring's
/// workers included), less the TCP receiver thread's.
fn sender_cpu(drain: Option<&Drain>) -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    let all = Duration::new(t.tv_sec as u64, t.tv_nsec as u32);
    all.saturating_sub(drain.map_or(Duration::ZERO, Drain::cpu))
}

/// One turn as a row's values: GB/s, then the columns of [`group`].
fn values(s: &Sample) -> section::Turn {
    vec![
        Some(s.gbps()),
        Some(s.cpu_per_gib()),
        Some(s.msgs_per_cpu()),
        Some(s.syscalls_per_msg()),
        Some(s.notifications_per_msg()),
    ]
}

/// The group: one row per way, the `MSG_ZEROCOPY` row the baseline, with
/// the per-run ratios of CPU per GiB and messages per CPU second against
/// it.
fn group(s: &GroupSamples, name: String, ways: &[Way]) -> Group {
    let per_run = |row: usize, col: usize| -> Vec<f64> {
        s.column(row, col)
            .iter()
            .zip(s.column(Way::BASELINE, col))
            .filter(|(_, &b)| b > 0.0)
            .map(|(x, b)| x / b)
            .collect()
    };
    let mut g = Group::new(name);
    for (i, w) in ways.iter().enumerate() {
        let Some(r) = Row::new(w.name(), i == Way::BASELINE, s.column(i, 0)) else {
            continue;
        };
        g.rows.push(
            r.with_extra(CPU, s.column(i, 1))
                .with_extra(MPC, s.column(i, 2))
                .with_extra(CALLS, s.column(i, 3))
                .with_extra(NOTIFS, s.column(i, 4))
                .with_extra(CPU_VS, &per_run(i, 1))
                .with_extra(MPC_VS, &per_run(i, 2)),
        );
    }
    g
}

/// The target lines of one group, from its medians: at 64 KiB the
/// registered row uses at most 0.7x the CPU per GiB of `MSG_ZEROCOPY`; at
/// 4 KiB it sends at least 1.3x the messages per CPU second of
/// `MSG_ZEROCOPY` and no fewer than the plain copy; with 64 sockets the
/// io_uring rows make at most 0.1 system calls per message.
fn verdicts(spec: Spec, g: &Group) -> Vec<String> {
    let row = |w: Way| g.rows.iter().find(|r| r.name == w.name());
    let med = |r: &Row, col: &str| r.extras.get(col).map_or(f64::NAN, |s| s.median);
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    let mut out = Vec::new();
    if let (Some(f), Some(copy)) = (row(Way::RingFixed), row(Way::Copy)) {
        if spec.big {
            let x = med(f, CPU_VS);
            out.push(format!(
                "{}: registered SENDMSG_ZC uses {x:.2}x the CPU per GiB of MSG_ZEROCOPY \
                 (target <= 0.7x): {}",
                g.name,
                met(x <= 0.7)
            ));
        } else {
            let x = med(f, MPC_VS);
            let y = med(f, MPC) / med(copy, MPC);
            out.push(format!(
                "{}: registered SENDMSG_ZC sends {x:.2}x the messages per CPU second of \
                 MSG_ZEROCOPY (target >= 1.3x) and {y:.2}x the plain copy's (target >= 1x): {}",
                g.name,
                met(x >= 1.3 && y >= 1.0)
            ));
        }
    }
    if spec.sockets > 1 {
        let calls: Vec<f64> = [Way::Ring, Way::RingFixed]
            .into_iter()
            .filter_map(row)
            .map(|r| med(r, CALLS))
            .collect();
        if !calls.is_empty() {
            let list: Vec<String> = calls.iter().map(|c| format!("{c:.3}")).collect();
            out.push(format!(
                "{}: the io_uring rows make {} system calls per message (target <= 0.1): {}",
                g.name,
                list.join(" and "),
                met(calls.iter().all(|&c| c <= 0.1))
            ));
        }
    }
    out
}

/// The empty table: its columns and how its numbers are taken.
fn table(opts: &Options, ways: &[Way]) -> Table {
    let dur = opts.run_duration(RUN);
    let mut t = Table::new("GB/s", true, "vs ZC");
    t.about = vec![
        format!(
            "rows: {}",
            ways.iter().map(|w| w.name()).collect::<Vec<_>>().join("; ")
        ),
        format!(
            "messages of one payload fragment, cycled from rings of {} MiB (2 MiB folios; the \
             registered row's ring carved from a cache bound to its io_uring); zero-copy from \
             {ZC_THRESHOLD} B, kept whatever the completions say",
            (if opts.quick {
                QUICK_RING_BYTES
            } else {
                RING_BYTES
            }) >> 20
        ),
        format!(
            "UDP: \"64 KiB\" = {UDP_BIG} B ({} GSO segments of {SEGMENT} B), 4 KiB = 3 segments; \
             every row sets the segment with Builder::gso_segment (the UringSplicer as \
             setsockopt(SOL_UDP, UDP_SEGMENT) on each socket, the Splicer likewise), so every \
             send is GSO'd alike",
            UDP_BIG / usize::from(SEGMENT)
        ),
        format!(
            "TCP: {} and 4 KiB messages over the veth link to a thread in the other namespace \
             that reads and discards (the kernel copies zero-copy pages on that delivery)",
            fmt_size(64 << 10)
        ),
        "64 sockets: the Splicer rows loop over the sockets, the io_uring rows send one \
         message on each with one send_many (one io_uring_enter per round)"
            .into(),
        format!(
            "{CPU}: CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID: io_uring workers \
             included) less the TCP receiver thread's, first send to last completion; {MPC}: \
             messages per second of that CPU time; {CALLS}: Splicer system calls, or \
             io_uring_enter calls as the ring counts them (UringStats::enters); {NOTIFS}: zero-copy notifications read; {CPU_VS} and \
             {MPC_VS}: per-run ratio to the MSG_ZEROCOPY row, median"
        ),
        section::about_runs("GB/s of message bytes", runs(opts), dur, "MSG_ZEROCOPY")
            + "; the ways take turns within each run, each on its own sockets for the group",
    ];
    t.extra_columns = [CPU, MPC, CALLS, NOTIFS, CPU_VS, MPC_VS]
        .map(String::from)
        .to_vec();
    t
}
