//! Counters of a running server, shared by all its connections.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::reply::Reply;

/// Counters of one server, summed over its connections. The driver and
/// each connection's [`Session`](super::Session) add to them.
///
/// Costs: a few relaxed atomic adds per record and per reply, on a cache
/// line shared by the connections; no system call. The system calls
/// counted are those the server makes on connection sockets: the reads of
/// requests, and the sends of the [`ReplyTransport`](crate::ReplyTransport)
/// (if it counts them, as both of this crate's do).
#[derive(Debug, Default)]
pub struct ServerStats {
    connections: AtomicU64,
    records: AtomicU64,
    recv_syscalls: AtomicU64,
    replies: AtomicU64,
    reply_bytes: AtomicU64,
    send_syscalls: AtomicU64,
    bulk_replies: AtomicU64,
    bulk_bytes: AtomicU64,
    bulk_syscalls: AtomicU64,
}

/// A snapshot of [`ServerStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Connections accepted and served.
    pub connections: u64,
    /// Complete records received.
    pub records: u64,
    /// `read` calls on connection sockets.
    pub recv_syscalls: u64,
    /// Replies sent, of every kind.
    pub replies: u64,
    /// Bytes of all replies, record markers included.
    pub reply_bytes: u64,
    /// System calls the transports made to send all replies.
    pub send_syscalls: u64,
    /// Replies that carried bulk data (a file range or data fragments):
    /// in an NFS export, the READ replies with at least one byte.
    pub bulk_replies: u64,
    /// Bytes of those replies, record markers included.
    pub bulk_bytes: u64,
    /// System calls made to send those replies.
    pub bulk_syscalls: u64,
}

impl StatsSnapshot {
    /// System calls per reply carrying bulk data (a READ reply), or `None`
    /// before the first.
    pub fn syscalls_per_bulk_reply(&self) -> Option<f64> {
        (self.bulk_replies > 0).then(|| self.bulk_syscalls as f64 / self.bulk_replies as f64)
    }
}

impl ServerStats {
    /// The counters now. Each is read on its own, so a snapshot taken while
    /// replies are being sent may be off by the replies in progress.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            connections: self.connections.load(Relaxed),
            records: self.records.load(Relaxed),
            recv_syscalls: self.recv_syscalls.load(Relaxed),
            replies: self.replies.load(Relaxed),
            reply_bytes: self.reply_bytes.load(Relaxed),
            send_syscalls: self.send_syscalls.load(Relaxed),
            bulk_replies: self.bulk_replies.load(Relaxed),
            bulk_bytes: self.bulk_bytes.load(Relaxed),
            bulk_syscalls: self.bulk_syscalls.load(Relaxed),
        }
    }

    /// Counts a connection accepted and served ([`Session::new`](super::Session::new)
    /// does it).
    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Relaxed);
    }

    /// Counts one `read` on a connection socket, whatever it returned.
    pub fn count_read(&self) {
        self.recv_syscalls.fetch_add(1, Relaxed);
    }

    /// Counts a complete record received ([`Session::receive`](super::Session::receive)
    /// does it).
    pub fn count_record(&self) {
        self.records.fetch_add(1, Relaxed);
    }

    /// Counts a reply the driver sent, or tried to send, with the system
    /// calls that took.
    pub fn count_reply(&self, size: ReplySize, syscalls: u64) {
        self.replies.fetch_add(1, Relaxed);
        self.reply_bytes.fetch_add(size.bytes, Relaxed);
        self.send_syscalls.fetch_add(syscalls, Relaxed);
        if size.bulk {
            self.bulk_replies.fetch_add(1, Relaxed);
            self.bulk_bytes.fetch_add(size.bytes, Relaxed);
            self.bulk_syscalls.fetch_add(syscalls, Relaxed);
        }
    }
}

/// What the counters need to know of a reply, taken before sending
/// consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplySize {
    /// Bytes on the wire, record marker included.
    bytes: u64,
    /// True if the reply carries bulk data (a file range or data fragments).
    bulk: bool,
}

impl ReplySize {
    /// The size and kind of `reply`.
    pub fn of(reply: &Reply) -> ReplySize {
        ReplySize {
            bytes: reply.wire_len(),
            bulk: !reply.data().is_empty(),
        }
    }
}
