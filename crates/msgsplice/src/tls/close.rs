//! Ending a connection: close_notify queued once, the peer's last records
//! read and judged.
//!
//! close_notify is the last record this side seals. It is queued the first
//! time it is asked for and the connection is closed for sending from that
//! moment, whether or not the socket took the alert yet: on a non-blocking
//! socket a retry (or [`TlsSplicer::close`]) only flushes what is queued,
//! so the peer receives exactly one close_notify, and a `send` in between
//! is refused with [`TlsError::Closed`].
//!
//! After close_notify the peer may still send (a last reply, its own
//! close_notify, or an alert if it gave up on the connection). Those
//! records are opened and their data dropped; an alert other than
//! close_notify means the peer aborted, and is reported as an error.

use std::os::fd::AsFd;
use std::time::Instant;

use super::{io, Received, TlsError, TlsSplicer, TlsStats, ALERT_CLOSE_NOTIFY, ALERT_WARNING};

impl<S: AsFd> TlsSplicer<S> {
    /// Sends close_notify: no more data from this side. The peer may still
    /// send, and [`read`](Self::read) still works.
    ///
    /// From the first call on the connection is closed for sending
    /// ([`send`](Self::send) and [`key_update`](Self::key_update) return
    /// [`TlsError::Closed`]), even if the socket is full: on a non-blocking
    /// socket this may return [`TlsError::WouldBlock`] with the alert
    /// queued; calling it again (or [`flush`](Self::flush)) sends what is
    /// queued and never queues a second alert. Costs one record sealed, and
    /// the `sendmsg` of [`flush`](Self::flush).
    pub fn send_close_notify(&mut self) -> Result<(), TlsError> {
        if !self.sent_close {
            self.queue_final_alert(ALERT_WARNING, ALERT_CLOSE_NOTIFY)?;
        }
        self.flush()
    }

    /// True once close_notify (or a fatal alert) is queued: nothing more
    /// can be sent.
    pub fn is_closed_for_sending(&self) -> bool {
        self.sent_close
    }

    /// Closes the connection cleanly: sends close_notify and everything
    /// still queued, shuts down the socket's sending side, then reads what
    /// the peer still sends until it closes too, for at most
    /// [`Builder::linger`](super::Builder::linger) (1 s by default; most
    /// peers close as soon as they see close_notify). Without that wait,
    /// unread bytes from the peer (a session ticket, its own close_notify)
    /// would make the kernel reset the connection and drop the end of the
    /// stream. Then waits for zero-copy sends in flight
    /// ([`Splicer::close`](crate::Splicer::close)) and returns the final
    /// counters.
    ///
    /// The peer's records read here are opened and their data dropped. An
    /// alert other than close_notify (the peer aborted the connection) is
    /// returned as [`TlsError::AlertReceived`], a record that fails to open
    /// as the error [`read`](Self::read) would give. A peer that closes (or
    /// resets) without close_notify is not an error here: this side was
    /// done anyway.
    ///
    /// On a non-blocking socket, flush until [`pending`](Self::pending)
    /// is 0 first, or this fails with [`TlsError::WouldBlock`].
    pub fn close(mut self) -> Result<TlsStats, TlsError> {
        self.send_close_notify()?;
        let fd = self.splicer.get_ref().as_fd();
        let _ = rustix::net::shutdown(fd, rustix::net::Shutdown::Write);
        let judged = if self.linger.is_zero() {
            self.absorb().map(drop)
        } else {
            self.linger_blocking(Instant::now() + self.linger)
        };
        let mut stats = self.stats();
        stats.send = self.splicer.close();
        judged.map(|()| stats)
    }

    /// Reads the peer's records until its end of stream or `deadline`,
    /// waiting with `poll`.
    fn linger_blocking(&mut self, deadline: Instant) -> Result<(), TlsError> {
        loop {
            self.absorb()?;
            let fd = self.splicer.get_ref().as_fd();
            match io::read_now(fd, self.inbound.spare()) {
                Ok(0) => return Ok(()),
                Ok(n) => self.inbound.filled(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if !io::wait_readable(fd, deadline) {
                        return Ok(());
                    }
                }
                // Reset, or another error: the peer is gone.
                Err(_) => return Ok(()),
            }
        }
    }

    /// After close_notify: opens the records received so far and drops
    /// their data. True once the peer's close_notify has come (what
    /// follows it is dropped unread). An alert other than close_notify, or
    /// a record that fails to open, is an error.
    pub(crate) fn absorb(&mut self) -> Result<bool, TlsError> {
        loop {
            self.inbound.discard_plaintext();
            match self.receive_step(&mut [0u8; 1])? {
                Received::Data(_) => {}
                Received::End => {
                    self.inbound.discard_received();
                    return Ok(true);
                }
                Received::NeedBytes => return Ok(false),
            }
        }
    }
}
