//! Creating a [`Splicer`]: the socket kind, found from the socket itself,
//! and the [`Builder`] with the policy knobs.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use rustix::net::{sockopt, AddressFamily, SocketType};

use super::policy::{OnCopied, Policy};
use super::udp::Udp;
use super::{SendError, Splicer};
use crate::frag::FragCache;

/// The kinds of socket a [`Splicer`] drives. Found from the socket
/// itself (`SO_DOMAIN`, `SO_TYPE`, `SO_PROTOCOL`) when the Splicer is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketKind {
    /// TCP over IPv4 or IPv6: zero-copy for memory, `sendfile` for files.
    Tcp,
    /// UDP over IPv4 or IPv6, connected or not: one message is one datagram
    /// (or, with GSO, one send that leaves as segments of a set size);
    /// zero-copy for memory; no file ranges.
    Udp,
    /// `AF_UNIX` stream: memory is copied (no `SO_ZEROCOPY` for Unix
    /// sockets), file ranges go by `sendfile`.
    UnixStream,
    /// `AF_UNIX` datagram (connected): one message is one datagram.
    UnixDatagram,
    /// `AF_UNIX` seqpacket: one message is one record.
    UnixSeqpacket,
}

impl SocketKind {
    /// Finds the kind of `fd`. Costs two or three `getsockopt` calls.
    pub fn of(fd: BorrowedFd<'_>) -> Result<SocketKind, SendError> {
        let ty = sockopt::socket_type(fd).map_err(|e| SendError::from_os(e.into(), 0))?;
        let family = sockopt::socket_domain(fd).map_err(|e| SendError::Io(e.into()))?;
        let unsupported = SendError::UnsupportedSocket {
            family: family.as_raw(),
            ty: ty.as_raw(),
        };
        Ok(match (family, ty) {
            (AddressFamily::INET | AddressFamily::INET6, SocketType::STREAM) => {
                let proto = sockopt::socket_protocol(fd).map_err(io::Error::from)?;
                if proto != Some(rustix::net::ipproto::TCP) {
                    return Err(unsupported);
                }
                SocketKind::Tcp
            }
            (AddressFamily::INET | AddressFamily::INET6, SocketType::DGRAM) => {
                let proto = sockopt::socket_protocol(fd).map_err(io::Error::from)?;
                if proto != Some(rustix::net::ipproto::UDP) {
                    return Err(unsupported);
                }
                SocketKind::Udp
            }
            (AddressFamily::UNIX, SocketType::STREAM) => SocketKind::UnixStream,
            (AddressFamily::UNIX, SocketType::DGRAM) => SocketKind::UnixDatagram,
            (AddressFamily::UNIX, SocketType::SEQPACKET) => SocketKind::UnixSeqpacket,
            _ => return Err(unsupported),
        })
    }

    /// True for kinds where one message is one record (datagram,
    /// seqpacket): never split, never partly sent.
    pub fn is_record(self) -> bool {
        matches!(
            self,
            SocketKind::Udp | SocketKind::UnixDatagram | SocketKind::UnixSeqpacket
        )
    }

    /// True for kinds that can send memory with `MSG_ZEROCOPY`.
    pub fn supports_zerocopy(self) -> bool {
        matches!(self, SocketKind::Tcp | SocketKind::Udp)
    }
}

/// Settings of a [`Splicer`]. Every setting has a measured default; see the
/// [`send`](super) module documentation for the policy.
#[derive(Clone, Debug, Default)]
pub struct Builder {
    pub(crate) policy: Policy,
    pub(crate) cache: Option<FragCache>,
    pub(crate) gso_segment: Option<u16>,
}

impl Builder {
    /// The default settings: SPLICE on, 10 KiB threshold, zero-copy
    /// stopped after 64 consecutive COPIED completions, 1 s drain timeout.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The SPLICE hint (default on): splice what can be spliced. Off: copy
    /// everything (file ranges still go by `sendfile`, which copies inside
    /// the kernel only). Either way the same bytes arrive.
    pub fn splice(mut self, on: bool) -> Builder {
        self.policy.splice = on;
        self
    }

    /// Runs with fewer spliceable bytes than this are copied (default
    /// 10 KiB: below it a completion costs more than the copy it saves).
    pub fn zerocopy_threshold(mut self, bytes: usize) -> Builder {
        self.policy.zerocopy_threshold = bytes;
        self
    }

    /// A zero-copy run first copies its copy segments (`&[u8]`)
    /// into fragments, so the message still goes in one call; above this
    /// many such bytes (default 16 KiB) the run is sent by a plain copy.
    pub fn max_copy_into_frags(mut self, bytes: usize) -> Builder {
        self.policy.max_copy_into_frags = bytes;
        self
    }

    /// Completions are read during sends once this many zero-copy sends are
    /// in flight (default 32). Ranges coalesce, so one read usually covers
    /// them all: this is what keeps zero-copy near one system call per
    /// message.
    pub fn completion_batch(mut self, sends: usize) -> Builder {
        self.policy.completion_batch = sends.max(1);
        self
    }

    /// At most this many zero-copy sends in flight (default 1024); beyond,
    /// messages are copied until completions arrive. Bounds the memory held.
    pub fn max_in_flight(mut self, sends: usize) -> Builder {
        self.policy.max_in_flight = sends.max(1);
        self
    }

    /// What to do when completions report COPIED (default
    /// [`OnCopied::StopAfter`]`(64)`: where the kernel copies anyway, as on
    /// loopback, zero-copy measured slower than a plain copy, over TCP and
    /// over UDP).
    pub fn on_copied(mut self, what: OnCopied) -> Builder {
        self.policy.on_copied = what;
        self
    }

    /// How long dropping or closing a Splicer waits for sends in flight
    /// (default 1 s). Fragments still in flight after that are retired:
    /// their folios are unmapped, never reused.
    pub fn drain_timeout(mut self, timeout: Duration) -> Builder {
        self.policy.drain_timeout = timeout;
        self
    }

    /// Check every file range against its file's size (one `fstat` per
    /// range) before the first byte of a message goes (default on), so that
    /// a range past the end fails with
    /// [`SendError::PastEof`] and sends nothing.
    /// Off saves that system call for callers that have just measured the
    /// file themselves (an NFS READ reply carries the `fstat` it was built
    /// from); a range past the end then still fails with `PastEof`, but
    /// only when `sendfile` reaches it, after the bytes before it went.
    pub fn check_file_ranges(mut self, on: bool) -> Builder {
        self.policy.check_file_ranges = on;
        self
    }

    /// TCP: send the part of a file range that more of the message follows
    /// through a pipe with `splice(SPLICE_F_MORE)` (default on), so the
    /// range waits for the trailer and they leave together; off:
    /// `sendfile` only, which pushes the range before the trailer is sent.
    /// Costs a pipe (two file descriptors) per Splicer that sends such a
    /// message, and one system call more per range; see the `file` section
    /// of `msgsplice bench` for what it gains.
    pub fn file_tail_pipe(mut self, on: bool) -> Builder {
        self.policy.file_tail_pipe = on;
        self
    }

    /// With [`OnCopied::StopAfter`] (the default), do not start zero-copy
    /// at all when the peer is this host: a loopback address, or the
    /// socket's own address (default on). Local delivery copies every page,
    /// so each completion would say COPIED and the policy would stop after
    /// its first sends anyway, which measured slower than copying; a short
    /// connection would spend its life on them. Costs one `getpeername`
    /// (two calls for a non-loopback peer) on the first message big enough
    /// for zero-copy. Off: start zero-copy and let the COPIED reports
    /// decide. [`OnCopied::Keep`] never skips.
    pub fn skip_zerocopy_to_local_peers(mut self, on: bool) -> Builder {
        self.policy.skip_local_peers = on;
        self
    }

    /// Stream sockets: a file range of at most this many bytes (default
    /// 32 KiB) is read into a fragment with one `pread` when its message
    /// starts, and leaves with the message's memory in the same `sendmsg`;
    /// longer ranges go by `sendfile` or `splice`, as does every range
    /// with 0. For a small range, the read and one gathered send cost less
    /// than a `sendmsg` and a `sendfile` (or two `splice` calls) around it;
    /// for a large one, the kernel moving page-cache pages costs less than
    /// the copy. The `file` section of `msgsplice bench` measures both
    /// sides of the default.
    ///
    /// The fragment takes the range's place in the [`Msg`](crate::Msg): a
    /// message sent again after [`Msg::rewind`](crate::Msg::rewind) sends
    /// the bytes read the first time. A file shorter than such a range
    /// fails with [`SendError::PastEof`](super::SendError::PastEof) before
    /// any byte of the message goes, whether or not
    /// [`check_file_ranges`](Builder::check_file_ranges) is on. Fragments
    /// come from [`frag_cache`](Builder::frag_cache).
    pub fn read_file_ranges_up_to(mut self, bytes: u64) -> Builder {
        self.policy.read_files_up_to = bytes;
        self
    }

    /// Unix stream sockets: a run of memory that is copied (no zero-copy
    /// there) and made of several parts of at most this many bytes in all
    /// (default 4 KiB) is first gathered into one buffer the Splicer
    /// reuses, and sent by one `send(2)` instead of a `sendmsg(2)` of the
    /// parts; 0 never gathers. For small messages on a Unix stream the
    /// kernel's fixed cost per call decides, and `send` of one buffer costs
    /// less than `sendmsg` of several: the `unix` section of `msgsplice
    /// bench` measures the Splicer against `writev` and against one `write`
    /// of a joined buffer.
    /// The same bytes arrive either way; no allocation once the buffer has
    /// grown to the largest such run.
    pub fn gather_small_runs_up_to(mut self, bytes: usize) -> Builder {
        self.policy.gather_up_to = bytes;
        self
    }

    /// The cache that copy segments of zero-copy runs are copied into
    /// (default: [`FragCache::global`]).
    pub fn frag_cache(mut self, cache: FragCache) -> Builder {
        self.cache = Some(cache);
        self
    }

    /// UDP only: the GSO segment size (`UDP_SEGMENT`, Linux 4.18) for every
    /// message; 0 for none. A message longer than this leaves as segments
    /// of this size (the last one shorter), all made from one send. Default:
    /// whatever the socket has (`setsockopt(UDP_SEGMENT)`, usually none).
    /// [`build`](Builder::build) sets it on the socket itself (one
    /// `setsockopt`, which stays with the socket), so that sends carry no
    /// control message. Change it per message with
    /// [`Splicer::set_gso_segment`].
    pub fn gso_segment(mut self, bytes: u16) -> Builder {
        self.gso_segment = Some(bytes);
        self
    }

    /// Creates the Splicer over a socket, finding its kind. Stream sockets
    /// must be connected; a UDP socket may be unconnected and given a
    /// destination per message ([`Splicer::send_to`]).
    ///
    /// Costs two or three `getsockopt` calls (two more for UDP: its family
    /// and its GSO segment size, and a `setsockopt` if
    /// [`gso_segment`](Builder::gso_segment) changes it). `SO_ZEROCOPY` is
    /// turned on lazily, by the first message that wants it. Fails with
    /// [`SendError::UdpOnly`] if a GSO segment size is set for a socket
    /// that is not UDP.
    pub fn build<S: AsFd>(self, sock: S) -> Result<Splicer<S>, SendError> {
        let kind = SocketKind::of(sock.as_fd())?;
        let udp = match kind {
            SocketKind::Udp => Some(Udp::of(sock.as_fd(), self.gso_segment)?),
            _ if self.gso_segment.is_some() => return Err(SendError::UdpOnly { what: "GSO" }),
            _ => None,
        };
        let mut sp = Splicer::from_parts(sock, kind, self);
        sp.udp = udp;
        Ok(sp)
    }
}
