//! One socket of a [`UringSplicer`](super::UringSplicer): its kind, its
//! policy and zero-copy state (the same types the
//! [`Splicer`](crate::Splicer) uses), and its counters.

use std::os::fd::BorrowedFd;

use crate::send::policy::{Policy, RunShape};
use crate::send::udp::Udp;
use crate::send::zerocopy::ZeroCopy;
use crate::send::{SendStats, SocketKind};

/// Per-socket state.
pub(crate) struct Conn {
    pub(crate) kind: SocketKind,
    pub(crate) policy: Policy,
    pub(crate) zc: ZeroCopy,
    pub(crate) stats: SendStats,
    /// Zero-copy entries sent from registered folios.
    pub(crate) fixed_sends: u64,
    /// UDP: the family and GSO segment size its datagrams are checked
    /// against (the segment size is always the socket's own: the ring's
    /// sends carry no control message).
    pub(crate) udp: Option<Udp>,
    /// The socket was non-blocking when added: sends carry
    /// `MSG_DONTWAIT`, since io_uring would otherwise wait for room
    /// whatever the socket's `O_NONBLOCK` says.
    pub(crate) dontwait: bool,
}

impl Conn {
    pub(crate) fn new(kind: SocketKind, policy: Policy, udp: Option<Udp>, dontwait: bool) -> Conn {
        Conn {
            kind,
            policy,
            zc: ZeroCopy::new(kind.supports_zerocopy()),
            stats: SendStats::default(),
            fixed_sends: 0,
            udp,
            dontwait,
        }
    }

    /// Whether a run of this shape goes zero-copy: the policy's rule, and
    /// the socket's zero-copy state (never to a peer on this host with the
    /// default policy; at most `max_in_flight` sends held).
    pub(crate) fn wants_zerocopy(&mut self, fd: BorrowedFd<'_>, shape: RunShape) -> bool {
        self.policy.zerocopy(shape, self.zc.usable())
            && self.zc.ring_ready(fd, &self.policy, &mut self.stats)
    }

    /// Applies a notification for send `id`.
    pub(crate) fn notified(&mut self, id: u32, copied: bool) {
        self.zc
            .completed(id, id, copied, &self.policy, &mut self.stats);
    }

    /// The counters, with the sends still held.
    pub(crate) fn stats(&self) -> SendStats {
        let mut s = self.stats;
        s.completions_pending = self.zc.tracker.pending() as u64;
        s
    }
}
