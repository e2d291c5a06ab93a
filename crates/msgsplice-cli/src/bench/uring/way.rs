//! The four ways of the `uring` section ([`Way`]) and one way's
//! [`Sender`]: its sockets, its engine, the payload it sends, and one
//! timed turn of sending.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{ConnId, UringBuilder};
use msgsplice::{Frag, FragCache, Msg, Splicer, UringSplicer};

/// Zero-copy from this many bytes on (below the Splicer's default, so
/// that the 4 KiB messages go zero-copy too).
pub const ZC_THRESHOLD: usize = 4096;
/// Folio size of the payload caches: 2 MiB, so transparent huge pages
/// where the kernel grants them, and few folios to register.
const FOLIO: usize = 2 << 20;
/// How long the last completions may take before a turn fails.
const SETTLE: Duration = Duration::from_secs(5);

/// One way to send the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// `sendmsg`, the kernel copies (a Splicer with SPLICE off).
    Copy,
    /// `sendmsg` with `MSG_ZEROCOPY` (a Splicer, zero-copy kept).
    ZeroCopy,
    /// io_uring `SENDMSG_ZC` from ordinary (unregistered) memory.
    Ring,
    /// io_uring `SENDMSG_ZC` from folios registered with the ring.
    RingFixed,
}

impl Way {
    /// The four, in the table's order.
    pub const ALL: [Way; 4] = [Way::Copy, Way::ZeroCopy, Way::Ring, Way::RingFixed];
    /// The row the others are compared with: [`Way::ZeroCopy`].
    pub const BASELINE: usize = 1;

    /// The row name.
    pub fn name(self) -> &'static str {
        match self {
            Way::Copy => "sendmsg, copy",
            Way::ZeroCopy => "sendmsg MSG_ZEROCOPY",
            Way::Ring => "io_uring SENDMSG_ZC",
            Way::RingFixed => "io_uring SENDMSG_ZC, registered",
        }
    }

    /// Whether the way goes through the UringSplicer.
    pub fn is_ring(self) -> bool {
        matches!(self, Way::Ring | Way::RingFixed)
    }

    /// The policy: zero-copy kept whatever the completions say (the TCP
    /// receiver is on this machine, so the kernel copies on delivery and
    /// says so) and tried to a peer in another namespace.
    fn policy(self) -> Builder {
        let b = match self {
            Way::Copy => Builder::new().splice(false),
            _ => Builder::new()
                .on_copied(OnCopied::Keep)
                .skip_zerocopy_to_local_peers(false)
                .zerocopy_threshold(ZC_THRESHOLD),
        };
        b.drain_timeout(SETTLE)
    }
}

/// What a group sends: message length, sockets, and for UDP the GSO
/// segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Bytes per message.
    pub len: usize,
    /// Sockets, one message on each per round.
    pub sockets: usize,
    /// UDP: every send is cut into segments of this size by GSO.
    pub gso: Option<u16>,
}

/// Payload fragments of one length, page-aligned, filled once, sent in
/// turn so that copying them reads memory rather than cache.
pub struct Payload {
    frags: Vec<Frag>,
}

impl Payload {
    /// At least `bytes` of fragments of `len` bytes, carved from `cache`.
    pub fn carve(cache: &FragCache, len: usize, bytes: usize) -> Result<Payload, String> {
        let frags = (0..bytes.div_ceil(len).max(1))
            .map(|i| {
                let mut f = cache.alloc(len, 4096)?;
                f.fill(i as u8);
                Ok(f.freeze())
            })
            .collect::<Result<_, msgsplice::FragError>>()
            .map_err(|e| format!("payload: {e}"))?;
        Ok(Payload { frags })
    }

    /// [`carve`](Payload::carve) from a cache of its own (2 MiB folios),
    /// bound to no ring.
    pub fn new(len: usize, bytes: usize) -> Result<Payload, String> {
        Payload::carve(&payload_cache()?, len, bytes)
    }

    /// Message `i`: one fragment.
    pub(super) fn msg(&self, i: u64) -> Msg<'static> {
        let mut m = Msg::new();
        m.push(self.frags[(i % self.frags.len() as u64) as usize].clone());
        m
    }
}

fn payload_cache() -> Result<FragCache, String> {
    FragCache::builder()
        .folio_size(FOLIO)
        .build()
        .map_err(|e| format!("frag cache: {e}"))
}

/// The engine of a way.
enum Engine {
    /// One Splicer per socket, looped over.
    Splicers(Vec<Splicer<OwnedFd>>),
    /// One ring for every socket.
    Ring(Box<UringSplicer<OwnedFd>>, Vec<ConnId>),
}

/// Counters summed over a sender's sockets, at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    messages: u64,
    syscalls: u64,
    notifications: u64,
    zerocopy_sends: u64,
    fixed_sends: u64,
}

/// One turn of one way.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Message bytes sent.
    pub bytes: u64,
    /// Messages sent.
    pub messages: u64,
    /// From the first send to the last completion.
    pub wall: Duration,
    /// The sending side's CPU time over the same span.
    pub cpu: Duration,
    /// System calls: the Splicers' (sends, error-queue reads,
    /// `setsockopt`), or the ring's `io_uring_enter` calls.
    pub syscalls: u64,
    /// Zero-copy completion notifications read (error-queue messages, or
    /// notification CQEs).
    pub notifications: u64,
    /// Zero-copy sends.
    pub zerocopy_sends: u64,
    /// Zero-copy sends from registered folios.
    pub fixed_sends: u64,
}

impl Sample {
    /// 10^9 message bytes per second.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.wall.as_secs_f64() / 1e9
    }

    /// CPU seconds per GiB sent.
    pub fn cpu_per_gib(&self) -> f64 {
        self.cpu.as_secs_f64() / (self.bytes as f64 / (1u64 << 30) as f64)
    }

    /// Messages per CPU second.
    pub fn msgs_per_cpu(&self) -> f64 {
        self.messages as f64 / self.cpu.as_secs_f64()
    }

    /// System calls per message.
    pub fn syscalls_per_msg(&self) -> f64 {
        self.syscalls as f64 / self.messages.max(1) as f64
    }

    /// Notifications per message.
    pub fn notifications_per_msg(&self) -> f64 {
        self.notifications as f64 / self.messages.max(1) as f64
    }
}

/// One way over its own sockets, kept for a whole group (so that the
/// sockets' zero-copy state and the ring's registrations last).
pub struct Sender {
    way: Way,
    shape: Shape,
    engine: Engine,
    payload: Arc<Payload>,
    next: u64,
}

impl Sender {
    /// `shape.sockets` sockets from `open`, driven the way `way` says.
    /// Sends `shared` as the payload, except [`Way::RingFixed`], which
    /// carves `ring_bytes` of its own from a cache bound to its ring.
    pub fn new(
        way: Way,
        shape: Shape,
        open: &mut dyn FnMut() -> Result<OwnedFd, String>,
        shared: &Arc<Payload>,
        ring_bytes: usize,
    ) -> Result<Sender, String> {
        let socks = (0..shape.sockets.max(1))
            .map(|_| open())
            .collect::<Result<Vec<_>, _>>()?;
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", way.name());
        let mut payload = shared.clone();
        let engine = if way.is_ring() {
            let policy = match shape.gso {
                Some(g) => way.policy().gso_segment(g),
                None => way.policy(),
            };
            let mut b = UringBuilder::new()
                .policy(policy)
                .entries((2 * shape.sockets).next_power_of_two().max(64) as u32);
            let cache = payload_cache()?;
            if way == Way::RingFixed {
                b = b.bind_cache(cache.clone());
            }
            let mut socks = socks.into_iter();
            let first = socks.next().ok_or("no socket")?;
            let mut sp = b.build(first).map_err(|e| fail(&e))?;
            let mut ids = vec![ConnId::FIRST];
            for s in socks {
                ids.push(sp.add(s).map_err(|e| fail(&e))?);
            }
            if way == Way::RingFixed {
                // Carved after binding: every folio is registered as it
                // is mapped.
                payload = Arc::new(Payload::carve(&cache, shape.len, ring_bytes)?);
            }
            Engine::Ring(Box::new(sp), ids)
        } else {
            let b = match shape.gso {
                Some(g) => way.policy().gso_segment(g),
                None => way.policy(),
            };
            let sps = socks
                .into_iter()
                .map(|s| b.clone().build(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(&e))?;
            Engine::Splicers(sps)
        };
        Ok(Sender {
            way,
            shape,
            engine,
            payload,
            next: 0,
        })
    }

    /// `rounds` rounds, untimed, and their completions: turns zero-copy
    /// on, fills the sockets' and the ring's first state.
    pub fn warm(&mut self, rounds: usize) -> Result<(), String> {
        for _ in 0..rounds {
            self.round()?;
        }
        self.settle()
    }

    /// Sends rounds for about `dur` (at least one), waits for the last
    /// completions, and returns what it took; `cpu` reads the sending
    /// side's CPU time.
    pub fn turn(&mut self, dur: Duration, cpu: &dyn Fn() -> Duration) -> Result<Sample, String> {
        let (k0, t0, c0) = (self.counters(), Instant::now(), cpu());
        loop {
            self.round()?;
            if t0.elapsed() >= dur {
                break;
            }
        }
        self.settle()?;
        let (wall, spent, k1) = (t0.elapsed(), cpu().saturating_sub(c0), self.counters());
        let messages = k1.messages - k0.messages;
        Ok(Sample {
            bytes: messages * self.shape.len as u64,
            messages,
            wall,
            cpu: spent,
            syscalls: k1.syscalls - k0.syscalls,
            notifications: k1.notifications - k0.notifications,
            zerocopy_sends: k1.zerocopy_sends - k0.zerocopy_sends,
            fixed_sends: k1.fixed_sends - k0.fixed_sends,
        })
    }

    /// One message on every socket: a loop of sends, or one `send_many`.
    fn round(&mut self) -> Result<(), String> {
        let name = self.way.name();
        match &mut self.engine {
            Engine::Splicers(sps) => {
                for sp in sps {
                    let mut m = self.payload.msg(self.next);
                    self.next += 1;
                    sp.send(&mut m).map_err(|e| format!("{name}: send: {e}"))?;
                }
            }
            Engine::Ring(sp, ids) => {
                let mut msgs: Vec<Msg<'static>> = (0..ids.len() as u64)
                    .map(|k| self.payload.msg(self.next + k))
                    .collect();
                self.next += ids.len() as u64;
                let mut jobs: Vec<(ConnId, &mut Msg<'static>)> =
                    ids.iter().copied().zip(msgs.iter_mut()).collect();
                for r in sp.send_many(&mut jobs) {
                    r.map_err(|e| format!("{name}: send_many: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// Waits for every zero-copy send in flight.
    fn settle(&mut self) -> Result<(), String> {
        let name = self.way.name();
        let done = match &mut self.engine {
            Engine::Splicers(sps) => sps.iter_mut().try_fold(true, |all, sp| {
                Ok::<_, String>(all && sp.wait_completions(SETTLE).map_err(|e| e.to_string())?)
            })?,
            Engine::Ring(sp, _) => sp.wait(SETTLE).map_err(|e| e.to_string())?,
        };
        if done {
            Ok(())
        } else {
            Err(format!("{name}: completions missing after {SETTLE:?}"))
        }
    }

    /// Message bytes sent so far, warm-up included.
    pub fn bytes_sent(&self) -> u64 {
        self.counters().messages * self.shape.len as u64
    }

    fn counters(&self) -> Counters {
        let mut k = Counters::default();
        let mut add = |s: msgsplice::SendStats| {
            k.messages += s.messages;
            k.syscalls += s.syscalls;
            k.notifications += s.notifications;
            k.zerocopy_sends += s.zerocopy_sends;
        };
        match &self.engine {
            Engine::Splicers(sps) => sps.iter().for_each(|sp| add(sp.stats())),
            Engine::Ring(sp, ids) => {
                ids.iter().for_each(|&id| add(sp.stats(id)));
                // Each socket counts the enters its messages took part in;
                // a round's enter is shared by every socket, so count the
                // enters themselves.
                let u = sp.uring_stats();
                k.syscalls = u.enters;
                k.fixed_sends = u.fixed_sends;
            }
        }
        k
    }
}
