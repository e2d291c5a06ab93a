//! UDP and UDP6: one message is one datagram, sent by one `sendmsg`,
//! optionally cut by the kernel into GSO segments (`UDP_SEGMENT`).
//!
//! # Limits, checked before anything is sent
//!
//! A datagram carries at most [`MAX_UDP_PAYLOAD_V4`] bytes to an IPv4
//! destination and [`MAX_UDP_PAYLOAD_V6`] to an IPv6 one; GSO does not raise
//! this (the kernel builds one IP packet of at most 64 KiB, then cuts it).
//! With a segment size `s`, a message may not need more than
//! [`MAX_GSO_SEGMENTS`] segments. Both are checked here, so that a message
//! the kernel would refuse costs no system call and no completion id.
//!
//! # Zero-copy and completion ids
//!
//! The kernel numbers a zero-copy UDP send when it builds the packet, and a
//! few checks come *after* that (`udp_send_skb` in `net/ipv4/udp.c`: the GSO
//! segment against the path MTU, the segment count; and on a socket with
//! `IP_RECVERR`, a packet dropped by a full queue): such a send fails but
//! its id is used, and its completion arrives with no data. Measured on
//! Linux 6.18: a refused GSO send between two good ones gives completions
//! `0..=2`. If the tracker did not count that id, every later completion
//! would release the buffers of the send *before* it, which may still be in
//! flight. So the Splicer:
//!
//! - checks the segment count itself (the kernel is never asked);
//! - on `EMSGSIZE` retries the datagram by plain copy: if that goes, the
//!   zero-copy attempt failed while building the packet (too many page
//!   fragments), before any id was taken; if it fails the same way with GSO
//!   on, the segment does not fit the MTU, the id was taken, and an empty
//!   slot is committed for it ([`SendStats::zerocopy_failed`]);
//! - on `ENOBUFS` asks whether the socket has `IP_RECVERR`: if not, the
//!   error can only mean the socket's option memory is full (no id), so it
//!   reads completions and retries as for TCP;
//! - on any other failure that might come after the numbering, stops
//!   zero-copy on the socket ([`SendStats::zerocopy_desynced`]): copying is
//!   always safe, and the sends in flight keep their correct ids.
//!
//! One socket buffer pins at most `MAX_SKB_FRAGS` pages (17 unless the
//! kernel was built otherwise); a datagram whose buffers span more is
//! refused with `EMSGSIZE`, so the Splicer copies such a datagram instead of
//! asking.

use std::io;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::net::{sockopt, AddressFamily};

use super::policy::{Policy, RunShape};
use super::run::{copy_into_frags, fill_record, is_errno, must_gather};
use super::zerocopy::ZeroCopy;
use super::{SendError, SendStats, Splicer};
use crate::frag::Frag;
use crate::msg::{Msg, Segment};
use crate::sys::sendmsg::{Cmsg, IovBatch, RawAddr, MSG_NOSIGNAL, MSG_ZEROCOPY};

/// The largest UDP payload to an IPv4 destination: 65535 minus the IPv4
/// (20) and UDP (8) headers.
pub const MAX_UDP_PAYLOAD_V4: u64 = 65_507;
/// The largest UDP payload to an IPv6 destination: 65535 minus the UDP
/// header (the IPv6 payload length excludes the IPv6 header); no jumbograms.
pub const MAX_UDP_PAYLOAD_V6: u64 = 65_527;
/// The most GSO segments one send may produce (`UDP_MAX_SEGMENTS`, 128
/// since Linux 6.9; 64 before, where a send needing 65 to 128 segments
/// fails with `EINVAL` and the Splicer stops zero-copy on that socket).
pub const MAX_GSO_SEGMENTS: u64 = 128;
/// Pages one socket buffer can pin (`MAX_SKB_FRAGS`, 17 by default).
const ZEROCOPY_MAX_PAGES: usize = 17;
/// IPv4 + UDP headers, and IPv6 + UDP.
const HEADERS_V4: u32 = 28;
const HEADERS_V6: u32 = 48;

/// What a Splicer knows about its UDP socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Udp {
    /// `AF_INET6` socket.
    v6: bool,
    /// The segment size for this Splicer's sends (0: no GSO).
    gso: u16,
    /// The segment size set on the socket itself: when `gso` equals it,
    /// no control message is needed.
    sock_gso: u16,
}

impl Udp {
    /// Reads the family and the socket's own segment size (two
    /// `getsockopt`). `gso`: the segment size asked for, if any; if it
    /// differs from the socket's, it is set on the socket (one
    /// `setsockopt`), so that sends need no control message: the kernel
    /// parses one on every send that carries it, a cost that showed in the
    /// sender's CPU time of zero-copy sends.
    pub(crate) fn of(fd: BorrowedFd<'_>, gso: Option<u16>) -> Result<Udp, SendError> {
        let family = sockopt::socket_domain(fd).map_err(io::Error::from)?;
        let mut sock_gso = crate::sys::udp::udp_segment(fd)?;
        if let Some(g) = gso.filter(|&g| g != sock_gso) {
            // If the kernel refuses, every send carries the size instead.
            if crate::sys::udp::set_udp_segment(fd, g).is_ok() {
                sock_gso = g;
            }
        }
        Ok(Udp {
            v6: family == AddressFamily::INET6,
            gso: gso.unwrap_or(sock_gso),
            sock_gso,
        })
    }

    /// Checks a datagram of `len` bytes sent to the connected peer
    /// against the size limits (see [`check_len`]).
    #[cfg(feature = "uring")]
    pub(crate) fn check_connected(&self, len: u64) -> Result<(), SendError> {
        check_len(len, self.gso, !self.v6)
    }

    /// The `UDP_SEGMENT` control message to send, if the socket's own
    /// setting is not the one wanted.
    pub(crate) fn cmsg(&self) -> Option<u16> {
        (self.gso != self.sock_gso).then_some(self.gso)
    }

    /// The kernel's form of a destination, IPv4 addresses mapped into IPv6
    /// for an IPv6 socket.
    fn dest(&self, a: SocketAddr) -> Result<RawAddr, SendError> {
        match (a, self.v6) {
            (SocketAddr::V4(v4), true) => Ok(RawAddr::new(SocketAddr::V6(SocketAddrV6::new(
                v4.ip().to_ipv6_mapped(),
                v4.port(),
                0,
                0,
            )))),
            (SocketAddr::V6(v6), false) => match v6.ip().to_ipv4_mapped() {
                Some(ip) => Ok(RawAddr::new(SocketAddr::new(IpAddr::V4(ip), v6.port()))),
                None => Err(SendError::WrongAddressFamily { addr: a }),
            },
            _ => Ok(RawAddr::new(a)),
        }
    }
}

/// True if a datagram to `dest` (or to the connected peer) travels as IPv4.
/// For an IPv6 socket connected to an IPv4-mapped peer this says false: the
/// kernel then refuses 65508 to 65527 bytes by itself, before numbering.
fn goes_as_v4(udp: &Udp, dest: Option<&RawAddr>) -> bool {
    match dest {
        Some(RawAddr::V4(_)) => true,
        Some(RawAddr::V6(a)) => std::net::Ipv6Addr::from(a.sin6_addr.s6_addr)
            .to_ipv4_mapped()
            .is_some(),
        None => !udp.v6,
    }
}

/// The size and segment-count checks.
pub(crate) fn check_len(len: u64, gso: u16, v4: bool) -> Result<(), SendError> {
    let max = if v4 {
        MAX_UDP_PAYLOAD_V4
    } else {
        MAX_UDP_PAYLOAD_V6
    };
    if len > max {
        return Err(SendError::MessageTooLarge { len });
    }
    if gso > 0 && len.div_ceil(u64::from(gso)) > MAX_GSO_SEGMENTS {
        return Err(SendError::TooManySegments {
            len,
            segment: gso,
            max: MAX_GSO_SEGMENTS,
        });
    }
    Ok(())
}

/// One datagram ready to go: its buffers, and where and how it is sent.
struct Datagram<'b, 'f> {
    batch: IovBatch<'b>,
    fd: BorrowedFd<'f>,
    dest: Option<RawAddr>,
    /// The `UDP_SEGMENT` control message, when the socket's own segment
    /// size is not the one wanted.
    cmsg: Option<Cmsg>,
}

impl Datagram<'_, '_> {
    /// One `sendmsg`, with `MSG_ZEROCOPY` or not, retried on `EINTR`,
    /// counting the calls.
    fn send(&self, zerocopy: bool, calls: &mut u64) -> io::Result<usize> {
        let flags = MSG_NOSIGNAL | if zerocopy { MSG_ZEROCOPY } else { 0 };
        loop {
            *calls += 1;
            match self
                .batch
                .sendmsg_to(self.fd, flags, self.dest.as_ref(), self.cmsg.as_ref())
            {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                r => return r,
            }
        }
    }
}

/// After a zero-copy datagram failed with `err`: tells from the errno
/// whether the kernel may have numbered it (see the module documentation),
/// keeps the tracker in step with the kernel's counter, and retries where
/// that is safe (by copy, or zero-copy once more after reading
/// completions). Returns the final result and whether the datagram went
/// zero-copy.
fn recover_zerocopy_failure(
    out: &Datagram<'_, '_>,
    err: io::Error,
    udp: Udp,
    len: u64,
    zc: &mut ZeroCopy,
    policy: &Policy,
    st: &mut SendStats,
) -> (io::Result<usize>, bool) {
    match err.raw_os_error() {
        // Refused before the packet was built (no peer, no route, a
        // broadcast without SO_BROADCAST, a pending ICMP error) or while
        // it was being built (no room): no id is used.
        Some(
            libc::EAGAIN
            | libc::ECONNREFUSED
            | libc::EDESTADDRREQ
            | libc::ENOTCONN
            | libc::EACCES
            | libc::ENETUNREACH
            | libc::EHOSTUNREACH,
        ) => (Err(err), true),
        Some(libc::ENOBUFS) => {
            st.syscalls += 1;
            let mut r = Err(err);
            if crate::sys::udp::recverr(out.fd, udp.v6).unwrap_or(true) {
                zc.desync(st);
            } else {
                // The socket's option memory is full: read the
                // completions and retry once.
                st.enobufs += 1;
                let _ = zc.drain(out.fd, policy, st, usize::MAX);
                r = out.send(true, &mut st.syscalls);
            }
            if is_errno(&r, libc::ENOBUFS) {
                return (out.send(false, &mut st.syscalls), false);
            }
            (r, true)
        }
        Some(libc::EMSGSIZE) => {
            let r = out.send(false, &mut st.syscalls);
            if is_errno(&r, libc::EMSGSIZE) {
                if udp.gso > 0 && len <= MAX_UDP_PAYLOAD_V4 {
                    // Refused by the segment-vs-MTU check, which comes
                    // after the numbering: its id is used.
                    zc.tracker.commit();
                    st.zerocopy_failed += 1;
                } else {
                    zc.desync(st);
                }
            }
            (r, false)
        }
        _ => {
            zc.desync(st);
            (Err(err), true)
        }
    }
}

impl<S: AsFd> Splicer<S> {
    /// UDP only: sends `msg` as one datagram to `addr`, whether or not the
    /// socket is connected (a connected socket's peer is overridden for
    /// this datagram). An IPv4 address on an IPv6 socket goes as an
    /// IPv4-mapped one. Otherwise as [`send`](Splicer::send): one
    /// `sendmsg`, all of the message or none of it.
    ///
    /// Errors before anything is sent: [`SendError::UdpOnly`] on other
    /// sockets, [`SendError::WrongAddressFamily`], and the size checks of
    /// [`send`](Splicer::send).
    ///
    /// ```
    /// use std::net::UdpSocket;
    /// use msgsplice::{FragCache, Msg, Splicer};
    ///
    /// let rx = UdpSocket::bind("127.0.0.1:0")?;
    /// let mut sp = Splicer::new(UdpSocket::bind("127.0.0.1:0")?)?;
    /// sp.set_gso_segment(1000)?; // no system call
    /// let body = FragCache::global().memdup(&[7u8; 2500])?;
    /// let mut msg = Msg::new();
    /// msg.push(b"HEAD").push(body);
    /// sp.send_to(&mut msg, rx.local_addr()?)?; // one sendmsg
    ///
    /// // 2504 bytes leave as segments of 1000, 1000 and 504.
    /// let mut buf = [0u8; 2048];
    /// let sizes: Vec<usize> = (0..3).map(|_| rx.recv(&mut buf)).collect::<Result<_, _>>()?;
    /// assert_eq!(sizes, [1000, 1000, 504]);
    /// assert_eq!(sp.stats().syscalls, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_to(&mut self, msg: &mut Msg<'_>, addr: SocketAddr) -> Result<u64, SendError> {
        if self.udp.is_none() {
            return Err(SendError::UdpOnly { what: "send_to" });
        }
        if msg.is_sent() && msg.sent() > 0 {
            return Ok(0);
        }
        self.send_datagram(msg, Some(addr))
    }

    /// UDP only: the GSO segment size for the following sends (0: none).
    /// No system call: a size other than the socket's own (the one given
    /// to [`Builder::gso_segment`](super::Builder::gso_segment)) travels
    /// with each send as a `UDP_SEGMENT` control message, so it may change
    /// from one message to the next. Fails with [`SendError::UdpOnly`] on
    /// other sockets.
    pub fn set_gso_segment(&mut self, bytes: u16) -> Result<(), SendError> {
        match &mut self.udp {
            Some(u) => {
                u.gso = bytes;
                Ok(())
            }
            None => Err(SendError::UdpOnly { what: "GSO" }),
        }
    }

    /// The GSO segment size in force (0: none, and always 0 for sockets
    /// that are not UDP).
    pub fn gso_segment(&self) -> u16 {
        self.udp.map_or(0, |u| u.gso)
    }

    /// One datagram: checks, then one `sendmsg` (zero-copy or not), then
    /// the bookkeeping. See the module documentation for the failures.
    pub(super) fn send_datagram(
        &mut self,
        msg: &mut Msg<'_>,
        to: Option<SocketAddr>,
    ) -> Result<u64, SendError> {
        let (udp, dest) = self.datagram_target(msg, to)?;
        let len = msg.len();
        let segs = msg.segments();
        let gather = must_gather(segs);
        let mut zc = self.datagram_zerocopy(segs, gather);

        let fd = self.sock.as_fd();
        let mut batch = self.iov.batch();
        let copies: &[Frag] = if zc { &self.copies } else { &[] };
        fill_record(&mut batch, segs, copies, &mut self.bounce, gather);
        if zc && batch.pages(rustix::param::page_size()) > ZEROCOPY_MAX_PAGES {
            zc = false;
        }
        let out = Datagram {
            batch,
            fd,
            dest,
            cmsg: udp.cmsg().map(Cmsg::udp_segment),
        };
        let (r, zc) = match out.send(zc, &mut self.stats.syscalls) {
            Err(e) if zc => {
                let st = &mut self.stats;
                recover_zerocopy_failure(&out, e, udp, len, &mut self.zc, &self.policy, st)
            }
            r => (r, zc),
        };
        drop(out);

        match r {
            Ok(n) => self.finish_datagram(msg, n as u64, zc),
            Err(e) => {
                self.copies.clear();
                Err(self.datagram_error(e, len, udp, dest.as_ref()))
            }
        }
    }

    /// The checks made before anything is sent: a UDP socket, no file
    /// ranges, a destination of a family this socket reaches, a length and
    /// a segment count the kernel takes. Returns the socket's UDP state and
    /// the destination in the kernel's form.
    fn datagram_target(
        &self,
        msg: &Msg<'_>,
        to: Option<SocketAddr>,
    ) -> Result<(Udp, Option<RawAddr>), SendError> {
        let Some(udp) = self.udp else {
            return Err(SendError::UdpOnly { what: "a datagram" });
        };
        if msg.has_file() {
            return Err(SendError::FileOnRecordSocket);
        }
        let dest = to.map(|a| udp.dest(a)).transpose()?;
        check_len(msg.len(), udp.gso, goes_as_v4(&udp, dest.as_ref()))?;
        Ok((udp, dest))
    }

    /// Whether a datagram of `segs` goes zero-copy: not `gather`ed, the
    /// policy and the socket agree, and its copy segments could be copied
    /// into fragments. When it does not, completions of earlier sends are
    /// reaped as after any copied send.
    fn datagram_zerocopy(&mut self, segs: &[Segment<'_>], gather: bool) -> bool {
        let mut shape = RunShape::default();
        for s in segs {
            shape.add(s, s.len());
        }
        let fd = self.sock.as_fd();
        let zc = !gather
            && self.policy.zerocopy(shape, self.zc.usable())
            && self.zc.ready(fd, &self.policy, &mut self.stats);
        if zc {
            copy_into_frags(&self.cache, &mut self.copies, segs, 0)
        } else {
            self.zc.reap(fd, &self.policy, &mut self.stats);
            false
        }
    }

    /// After the kernel took `n` bytes of the datagram: holds its buffers
    /// until completion if it went zero-copy, counts it, and moves the
    /// cursor.
    fn finish_datagram(&mut self, msg: &mut Msg<'_>, n: u64, zc: bool) -> Result<u64, SendError> {
        if zc {
            self.hold_sent(msg.segments(), 0, n);
        } else {
            self.copies.clear();
            self.stats.bytes_copied += n;
        }
        self.finish_record(msg, n)
    }

    /// Types a failed datagram send. `EMSGSIZE` with GSO on and a length
    /// that passed the size check can only be the segment against the MTU.
    fn datagram_error(
        &mut self,
        e: io::Error,
        len: u64,
        udp: Udp,
        dest: Option<&RawAddr>,
    ) -> SendError {
        if e.raw_os_error() != Some(libc::EMSGSIZE) || udp.gso == 0 {
            return SendError::from_os(e, len);
        }
        // The path MTU, when the socket is connected (and sending there).
        let mtu = if dest.is_none() {
            self.stats.syscalls += 1;
            let fd = self.sock.as_fd();
            if udp.v6 {
                sockopt::ipv6_mtu(fd).ok()
            } else {
                sockopt::ip_mtu(fd).ok()
            }
        } else {
            None
        };
        let headers = if goes_as_v4(&udp, dest) {
            HEADERS_V4
        } else {
            HEADERS_V6
        };
        let too_big = match mtu {
            Some(m) => u32::from(udp.gso) + headers > m,
            None => len <= MAX_UDP_PAYLOAD_V4,
        };
        if too_big {
            SendError::SegmentTooLarge {
                segment: udp.gso,
                mtu,
            }
        } else {
            SendError::MessageTooLarge { len }
        }
    }
}

#[cfg(test)]
mod tests;
