//! The sending side of the `udp` section: the three ways to configure the
//! Splicer ([`Mode`]), the ring of payload fragments they send, and one run
//! in which the three take turns, each on its own socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use msgsplice::send::{Builder, OnCopied};
use msgsplice::{Frag, FragCache, Msg, SendStats, Splicer};

use super::{MESSAGE, SEGMENT};

const GIB: f64 = (1u64 << 30) as f64;

/// How the Splicer is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SPLICE off: the kernel copies every byte.
    Off,
    /// SPLICE on, zero-copy kept even when every completion says COPIED.
    On,
    /// SPLICE on with the default policy.
    Default,
}

impl Mode {
    /// The three, the baseline first.
    pub const ALL: [Mode; 3] = [Mode::Off, Mode::On, Mode::Default];

    /// The row name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "SPLICE off",
            Mode::On => "SPLICE on, zero-copy kept",
            Mode::Default => "default policy",
        }
    }

    fn builder(self) -> Builder {
        match self {
            Mode::Off => Builder::new().splice(false),
            Mode::On => Builder::new().on_copied(OnCopied::Keep),
            Mode::Default => Builder::new(),
        }
    }
}

/// Payload fragments of [`MESSAGE`] bytes, page-aligned, from 2 MiB folios,
/// filled once.
pub struct PayloadRing {
    frags: Vec<Frag>,
}

impl PayloadRing {
    /// At least `bytes` of payload. Maps and writes all of it, once, before
    /// any run is timed.
    pub fn new(bytes: usize) -> Result<PayloadRing, String> {
        let len = MESSAGE;
        let cache = FragCache::builder()
            .folio_size(2 << 20)
            .build()
            .map_err(|e| e.to_string())?;
        let frags = (0..bytes.div_ceil(len))
            .map(|i| {
                let mut f = cache.alloc(len, 4096)?;
                f.fill(i as u8);
                Ok(f.freeze())
            })
            .collect::<Result<_, msgsplice::frag::FragError>>()
            .map_err(|e| format!("payload ring: {e}"))?;
        Ok(PayloadRing { frags })
    }

    /// Payload bytes in the ring.
    pub fn bytes(&self) -> usize {
        self.frags.iter().map(|f| f.len()).sum()
    }
}

/// One run of one mode.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Message bytes sent.
    pub bytes: u64,
    /// From the first send to the last completion.
    pub wall: Duration,
    /// The sending thread's CPU time over the same span.
    pub cpu: Duration,
    /// The Splicer's counters at the end.
    pub stats: SendStats,
}

impl Sample {
    /// 10^9 message bytes per second.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64() / 1e9
    }

    /// CPU seconds of the sender per GiB sent.
    pub fn cpu_per_gib(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / GIB)
    }

    /// Share of the bytes handed over by reference, in percent.
    pub fn zerocopy_percent(&self) -> f64 {
        100.0 * self.stats.bytes_spliced as f64 / self.bytes.max(1) as f64
    }

    /// Share of zero-copy completions the kernel reported COPIED, in
    /// percent (0 when there were none).
    pub fn copied_percent(&self) -> f64 {
        100.0 * self.stats.completions_copied as f64 / self.stats.completions.max(1) as f64
    }

    /// System calls per message (sends, completion reads, setsockopt).
    pub fn syscalls_per_msg(&self) -> f64 {
        self.stats.syscalls as f64 / self.stats.messages.max(1) as f64
    }
}

/// The sending thread's CPU time so far.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Slices each run is cut into, the modes taking turns.
pub const SLICES: u32 = 6;

/// One mode's Splicer, over its own connected UDP socket, measured over
/// several slices of sending.
pub struct Sender {
    mode: Mode,
    to: SocketAddr,
    sp: Splicer<UdpSocket>,
    sent: u64,
    wall: Duration,
    cpu: Duration,
}

impl Sender {
    /// A fresh socket connected to `to`, in the calling thread's network
    /// namespace, with the Splicer of `mode` and the GSO segment size.
    pub fn new(mode: Mode, to: SocketAddr) -> Result<Sender, String> {
        let any: IpAddr = if to.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let sock = UdpSocket::bind((any, 0)).map_err(|e| format!("bind: {e}"))?;
        sock.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
        let sp = mode
            .builder()
            .gso_segment(SEGMENT)
            .drain_timeout(Duration::from_secs(5))
            .build(sock)
            .map_err(|e| e.to_string())?;
        Ok(Sender {
            mode,
            to,
            sp,
            sent: 0,
            wall: Duration::ZERO,
            cpu: Duration::ZERO,
        })
    }

    /// Sends messages (at least 16) for about `dur`, the payloads taken
    /// from `ring` in turn, and adds the time and the calling thread's CPU
    /// time to the totals.
    pub fn send_for(&mut self, ring: &PayloadRing, dur: Duration) -> Result<(), String> {
        let (t0, c0) = (Instant::now(), thread_cpu());
        loop {
            for _ in 0..16 {
                let mut m = Msg::new();
                m.push(ring.frags[self.sent as usize % ring.frags.len()].clone());
                self.sp
                    .send(&mut m)
                    .map_err(|e| format!("{}: send to {}: {e}", self.mode.name(), self.to))?;
                self.sent += 1;
            }
            if t0.elapsed() >= dur {
                break;
            }
        }
        self.wall += t0.elapsed();
        self.cpu += thread_cpu().saturating_sub(c0);
        Ok(())
    }

    /// Waits for the last completions (counted as sending time) and
    /// returns the totals.
    pub fn finish(mut self) -> Result<Sample, String> {
        let (t0, c0) = (Instant::now(), thread_cpu());
        let drained = self
            .sp
            .wait_completions(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        if !drained {
            return Err(format!(
                "{}: completions missing after 5 s",
                self.mode.name()
            ));
        }
        Ok(Sample {
            bytes: self.sent * MESSAGE as u64,
            wall: self.wall + t0.elapsed(),
            cpu: self.cpu + thread_cpu().saturating_sub(c0),
            stats: self.sp.stats(),
        })
    }
}

/// One run: each mode over its own socket to `to`, about `dur` each, in
/// six turns of `dur / 6` (the order rotated by `rotate` and reversed
/// every other turn), so
/// that a disturbance of the machine hits the three alike and each
/// socket's policy state lasts the whole run. Returns one sample per mode,
/// in the order of [`Mode::ALL`]. Runs on the calling thread.
pub fn measure_run(
    to: SocketAddr,
    ring: &PayloadRing,
    dur: Duration,
    rotate: usize,
) -> Result<Vec<Sample>, String> {
    let mut senders = Mode::ALL
        .iter()
        .map(|&m| Sender::new(m, to))
        .collect::<Result<Vec<_>, _>>()?;
    let n = senders.len();
    for slice in 0..SLICES as usize {
        for k in 0..n {
            // Rotated, and backwards every other slice, so that each mode
            // follows each of the others as often.
            let k = if slice % 2 == 0 { k } else { n - 1 - k };
            senders[(k + slice / 2 + rotate) % n].send_for(ring, dur / SLICES)?;
        }
    }
    senders.into_iter().map(Sender::finish).collect()
}
