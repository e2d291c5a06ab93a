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
/// are read every `completion_batch` = 32 sends, so a few batches fit).
const TYPICAL_IN_FLIGHT: usize = 128;

impl ZeroCopy {
    /// `capable`: the socket kind supports `MSG_ZEROCOPY` at all (TCP).
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

    /// Whether the next run may go zero-copy: turns `SO_ZEROCOPY` on the
    /// first time; every `completion_batch` zero-copy runs, reads *one*
    /// error-queue message (the kernel merges consecutive completions into
    /// one range while they wait there, so one read usually releases all
    /// that is done, and the cost stays at one system call per batch);
    /// refuses while `max_in_flight` sends are outstanding even after
    /// reading everything queued.
    pub(crate) fn ready(&mut self, fd: BorrowedFd<'_>, p: &Policy, st: &mut SendStats) -> bool {
        if self.state == State::Untried {
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
            let a = self.tracker.complete(lo, hi);
            st.notifications += 1;
            st.completions += a.completed;
            st.unexpected_completions += a.unknown;
            completed += a.completed;
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
        }
        st.completions_pending = self.tracker.pending() as u64;
        Ok(completed)
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
