//! `MSG_ZEROCOPY` on one socket: turning it on, reading completions from
//! the error queue, waiting for them, and deciding when to stop.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::completion::Tracker;
use super::policy::{OnCopied, Policy};
use super::SendStats;
use crate::sys::errqueue::{recv_errqueue, set_zerocopy, ErrQueueMsg};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// `SO_ZEROCOPY` not asked for yet (asked on the first run that wants it).
    Untried,
    On,
    /// The socket or kernel refused `SO_ZEROCOPY`.
    Unsupported,
    /// Stopped by [`OnCopied::StopAfter`].
    Stopped,
    /// A send failed in a way that leaves it unknown whether the kernel
    /// numbered it: later ids could no longer be matched to their buffers,
    /// so no more zero-copy on this socket (sends in flight still complete
    /// normally: their ids came before).
    Desynced,
}

/// Zero-copy state of one socket.
pub(crate) struct ZeroCopy {
    state: State,
    pub(crate) tracker: Tracker,
    /// Consecutive ids reported COPIED.
    copied_streak: u64,
    /// Zero-copy runs since completions were last read during a send.
    since_drain: usize,
}

/// Sends in flight that the tracker has room for from the start, so the
/// first zero-copy sends of a connection do not grow its queues (completions
/// are read every `completion_batch` sends, 32 by default, so a few batches
/// fit).
const TYPICAL_IN_FLIGHT: usize = 128;

impl ZeroCopy {
    /// `capable`: the socket kind supports `MSG_ZEROCOPY` at all (TCP and
    /// UDP; see [`SocketKind::supports_zerocopy`](super::SocketKind::supports_zerocopy)).
    pub(crate) fn new(capable: bool) -> ZeroCopy {
        ZeroCopy {
            state: if capable {
                State::Untried
            } else {
                State::Unsupported
            },
            tracker: if capable {
                Tracker::with_capacity(TYPICAL_IN_FLIGHT)
            } else {
                Tracker::default()
            },
            copied_streak: 0,
            since_drain: 0,
        }
    }

    /// True while zero-copy can still be used on this socket.
    pub(crate) fn usable(&self) -> bool {
        matches!(self.state, State::Untried | State::On)
    }

    /// Gives up zero-copy on this socket for good, because the kernel's
    /// send counter may now be one ahead of the tracker's (see
    /// [`SendStats::zerocopy_desynced`]). Copying is always safe.
    pub(crate) fn desync(&mut self, st: &mut SendStats) {
        self.state = State::Desynced;
        st.zerocopy_desynced = true;
    }

    /// Whether the next run may go zero-copy: turns `SO_ZEROCOPY` on the
    /// first time; every `completion_batch` zero-copy runs, reads *one*
    /// error-queue message (the kernel merges consecutive completions into
    /// one range while they wait there, so one read usually releases all
    /// that is done, and the cost stays at one system call per batch);
    /// refuses while `max_in_flight` sends are outstanding even after
    /// reading everything queued.
    pub(crate) fn ready(&mut self, fd: BorrowedFd<'_>, p: &Policy, st: &mut SendStats) -> bool {
        if self.state == State::Untried {
            if self.skip_local(fd, p, st) {
                return false;
            }
            st.syscalls += 1;
            self.state = match set_zerocopy(fd) {
                Ok(()) => State::On,
                Err(_) => State::Unsupported,
            };
        }
        if self.state != State::On {
            return false;
        }
        // Errors here (none is expected from the error queue) only mean
        // completions stay queued; the in-flight bound still holds.
        if self.since_drain >= p.completion_batch && self.tracker.pending() > 0 {
            self.since_drain = 0;
            let _ = self.drain(fd, p, st, 1);
        }
        if self.tracker.pending() >= p.max_in_flight {
            let _ = self.drain(fd, p, st, usize::MAX);
            if self.tracker.pending() >= p.max_in_flight {
                st.zerocopy_deferred += 1;
                return false;
            }
        }
        // A zero-copy run follows (unless the policy falls back to a copy,
        // which only makes the next read come a little early).
        self.since_drain += 1;
        self.state == State::On
    }

    /// For a message sent without zero-copy while earlier zero-copy sends
    /// are still held (zero-copy stopped, or the message below the
    /// threshold): every `completion_batch` such messages, reads one
    /// error-queue message, so those buffers are released during the
    /// socket's life rather than at close. No system call once nothing is
    /// held.
    pub(crate) fn reap(&mut self, fd: BorrowedFd<'_>, p: &Policy, st: &mut SendStats) {
        if self.tracker.pending() == 0 {
            return;
        }
        self.since_drain += 1;
        if self.since_drain >= p.completion_batch {
            self.since_drain = 0;
            // An error only means the completions stay queued for now.
            let _ = self.drain(fd, p, st, 1);
        }
    }

    /// Reads up to `max_reads` error-queue messages (all that are queued
    /// with `usize::MAX`), without blocking. Returns the number of send ids
    /// completed.
    pub(crate) fn drain(
        &mut self,
        fd: BorrowedFd<'_>,
        p: &Policy,
        st: &mut SendStats,
        max_reads: usize,
    ) -> io::Result<u64> {
        let mut completed = 0;
        let mut reads = 0;
        while self.tracker.pending() > 0 && reads < max_reads {
            reads += 1;
            st.syscalls += 1;
            let Some(m) = recv_errqueue(fd)? else { break };
            let ErrQueueMsg::Zerocopy { lo, hi, copied } = m else {
                continue;
            };
            completed += self.completed(lo, hi, copied, p, st);
        }
        st.completions_pending = self.tracker.pending() as u64;
        Ok(completed)
    }

    /// Applies one completion report, from the error queue or from an
    /// io_uring notification: releases the buffers of sends `lo..=hi` and
    /// feeds the COPIED streak of [`OnCopied::StopAfter`]. Returns the send
    /// ids newly completed.
    pub(crate) fn completed(
        &mut self,
        lo: u32,
        hi: u32,
        copied: bool,
        p: &Policy,
        st: &mut SendStats,
    ) -> u64 {
        let a = self.tracker.complete(lo, hi);
        st.notifications += 1;
        st.completions += a.completed;
        st.unexpected_completions += a.unknown;
        if copied {
            st.completions_copied += a.completed;
            self.copied_streak += a.completed;
            if let OnCopied::StopAfter(n) = p.on_copied {
                if self.copied_streak >= u64::from(n) && self.state == State::On {
                    self.state = State::Stopped;
                    st.zerocopy_stopped = true;
                }
            }
        } else {
            self.copied_streak = 0;
        }
        a.completed
    }

    /// Whether the next run may go zero-copy on an io_uring engine, where
    /// `SEND_ZC` needs no `SO_ZEROCOPY` and completions arrive on the ring
    /// (the caller reaps them): the same local-peer rule as
    /// [`ready`](ZeroCopy::ready), and the same bound on sends in flight.
    #[cfg(feature = "uring")]
    pub(crate) fn ring_ready(
        &mut self,
        fd: BorrowedFd<'_>,
        p: &Policy,
        st: &mut SendStats,
    ) -> bool {
        if self.state == State::Untried {
            if self.skip_local(fd, p, st) {
                return false;
            }
            self.state = State::On;
        }
        if self.state != State::On {
            return false;
        }
        if self.tracker.pending() >= p.max_in_flight {
            st.zerocopy_deferred += 1;
            return false;
        }
        true
    }

    /// With [`OnCopied::StopAfter`] and a peer on this host, stops
    /// zero-copy before it starts (see [`Policy`]). Returns true if it did.
    fn skip_local(&mut self, fd: BorrowedFd<'_>, p: &Policy, st: &mut SendStats) -> bool {
        if p.skip_local_peers
            && matches!(p.on_copied, OnCopied::StopAfter(_))
            && peer_is_local(fd, st)
        {
            // Local delivery copies every zero-copy page (COPIED), so
            // StopAfter would stop after its first n sends anyway; a
            // short connection would spend its life on them.
            self.state = State::Stopped;
            st.zerocopy_stopped = true;
            st.zerocopy_local_peer = true;
            return true;
        }
        false
    }

    /// Waits up to `timeout` until no send is in flight. Returns true if
    /// none is left.
    pub(crate) fn wait(
        &mut self,
        fd: BorrowedFd<'_>,
        timeout: Duration,
        p: &Policy,
        st: &mut SendStats,
    ) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain(fd, p, st, usize::MAX)?;
            if self.tracker.pending() == 0 {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // A non-empty error queue makes the socket report POLLERR. So do
            // a pending socket error and a hang-up, which no read here
            // clears, so sleep a little rather than spin on them.
            let mut fds = [PollFd::from_borrowed_fd(fd, PollFlags::empty())];
            let ts = Timespec::try_from(left).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            });
            st.syscalls += 1;
            match poll(&mut fds, Some(&ts)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            if fds[0].revents().intersects(PollFlags::HUP)
                || self.drain(fd, p, st, usize::MAX)? == 0
            {
                std::thread::sleep(left.min(Duration::from_millis(1)));
            }
        }
    }
}

/// True if the socket's peer is this host: a loopback address, or the
/// socket's own address (a connection to one of this host's interfaces goes
/// over `lo` too). Packets to it are delivered locally, and local delivery
/// copies zero-copy pages. False when unknown (no peer: an unconnected UDP
/// socket, whose destinations come per message). Two system calls, once per
/// socket.
fn peer_is_local(fd: BorrowedFd<'_>, st: &mut SendStats) -> bool {
    use std::net::IpAddr;
    let ip = |a: Option<rustix::net::SocketAddrAny>| -> Option<IpAddr> {
        let a = std::net::SocketAddr::try_from(a?).ok()?;
        Some(match a.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        })
    };
    st.syscalls += 1;
    let Some(peer) = ip(rustix::net::getpeername(fd).ok().flatten()) else {
        return false;
    };
    if peer.is_loopback() {
        return true;
    }
    st.syscalls += 1;
    ip(rustix::net::getsockname(fd).ok()) == Some(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::send::{Builder, OnCopied};
    use crate::{FragCache, Msg};
    use std::net::UdpSocket;

    /// Sends still held when zero-copy stops are reaped by the following
    /// copied sends: one error-queue read per `completion_batch` of them,
    /// until nothing is held, then none.
    #[test]
    fn copied_sends_reap_what_zero_copy_left_behind() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mut sp = Builder::new()
            .on_copied(OnCopied::Keep)
            .completion_batch(1000) // no reads while zero-copy is on
            .build(tx)
            .unwrap();
        let page = FragCache::new().memdup(&[5u8; 16 << 10]).unwrap();
        let mut buf = [0u8; 20 << 10];
        let mut send = |sp: &mut crate::Splicer<UdpSocket>| {
            let mut m = Msg::new();
            m.push(page.clone());
            sp.send(&mut m).unwrap();
            rx.recv(&mut buf).unwrap();
        };
        for _ in 0..10 {
            send(&mut sp);
        }
        assert_eq!(sp.in_flight(), 10);
        // What OnCopied::StopAfter does, with a small batch for the test.
        sp.zc.state = State::Stopped;
        sp.policy.completion_batch = 4;
        let calls = sp.stats().syscalls;
        send(&mut sp);
        assert_eq!(sp.in_flight(), 0, "reaped by the first copied send");
        assert_eq!(sp.stats().syscalls, calls + 2, "the send and one read");
        for _ in 0..8 {
            send(&mut sp);
        }
        assert_eq!(
            sp.stats().syscalls,
            calls + 10,
            "no reads once nothing is held"
        );
        assert_eq!(sp.stats().completions, 10);
    }
}
