//! [`UringTransport`] (feature `uring`): one reply, one [`Msg`], one
//! [`UringSplicer::send`], with the meaning of a
//! [`SplicerTransport`](super::SplicerTransport); and the factory that
//! probes io_uring once when a server starts and falls back to the
//! Splicer, saying why.

use std::io;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::uring::{ConnId, Engine, UringBuilder, UringSplicer, UringStats};
use msgsplice::{Msg, SendError, SendStats};
use rustix::event::{PollFd, PollFlags};
use rustix::net::sockopt::Timeout;

use super::splicer::send_reply_with;
use super::{ReplyTransport, SplicerTransport};
use crate::reply::Reply;
use crate::server::{EventSink, ServerEvent, TransportFactory};

/// The io_uring settings of the server's io_uring transport: msgsplice's
/// defaults with the Splicer transport's policy
/// ([`super::splicer_settings`]), and no bound cache (see
/// [`UringTransport`] for why).
pub fn uring_settings() -> UringBuilder {
    UringBuilder::new().policy(super::splicer_settings())
}

/// A [`ReplyTransport`] that sends each reply as one [`Msg`] through a
/// [`UringSplicer`] of its own: the same message, and so the same bytes on
/// the wire and the same [`SendStats`], as
/// [`SplicerTransport`](super::SplicerTransport).
///
/// What the engine does with a reply: the head and any data fragments go
/// by `IORING_OP_SENDMSG` (or `SENDMSG_ZC` over the zero-copy threshold,
/// with the completion read from the ring instead of the error queue); a
/// READ's file range goes by `sendfile`, synchronously, in its place in
/// the message, and the tail (XDR padding) by one more entry after it.
///
/// One ring per connection: the blocking driver serves each connection on
/// its own thread, and a [`UringSplicer`] is driven by one thread, so
/// sharing a ring would put a lock around every reply. Each costs an
/// `io_uring_setup` and an opcode probe when the connection is accepted
/// (the registered-buffer trial is made once per process), and a few
/// pages of locked memory while it lives.
///
/// No frag cache is bound to the ring ([`UringBuilder::bind_cache`]): the
/// replies' heads and data fragments come from the dispatcher's cache,
/// which every connection shares, and a cache registers its folios with
/// one ring only. Fixed-buffer sends would pay only for large fragment
/// data; READ data is a file range, sent by `sendfile` either way.
///
/// A send timeout on the socket (`SO_SNDTIMEO`, which the server sets from
/// [`ServerConfig::send_timeout`](crate::server::ServerConfig::send_timeout))
/// holds as with the Splicer: io_uring does not apply it to its entries,
/// so they are made with `MSG_DONTWAIT` and a full socket is waited for
/// with `poll` up to that long since the last progress.
pub struct UringTransport<S: AsFd> {
    splicer: UringSplicer<S>,
    send_timeout: Option<Duration>,
    bounce: Vec<u8>,
}

impl<S: AsFd> UringTransport<S> {
    /// A transport over `socket` with [`uring_settings`]. Probes the kernel
    /// (see [`UringBuilder::build`]); fails with what is missing when the
    /// engine cannot be used here.
    pub fn new(socket: S) -> Result<UringTransport<S>, msgsplice::uring::UringError> {
        UringTransport::with_builder(socket, uring_settings())
    }

    /// A transport over `socket` with a splicer built by `builder`. Reads
    /// the socket's send timeout (one `getsockopt`).
    pub fn with_builder(
        socket: S,
        builder: UringBuilder,
    ) -> Result<UringTransport<S>, msgsplice::uring::UringError> {
        Ok(UringTransport::from_splicer(builder.build(socket)?))
    }

    fn from_splicer(mut splicer: UringSplicer<S>) -> UringTransport<S> {
        let send_timeout = splicer
            .get_ref(ConnId::FIRST)
            .and_then(|s| rustix::net::sockopt::socket_timeout(s, Timeout::Send).ok())
            .flatten();
        if send_timeout.is_some() {
            splicer.set_nonblocking(ConnId::FIRST, true);
        }
        UringTransport {
            splicer,
            send_timeout,
            bounce: Vec::new(),
        }
    }

    /// The splicer.
    pub fn splicer(&self) -> &UringSplicer<S> {
        &self.splicer
    }

    /// The connection's counters, as a Splicer keeps them.
    pub fn stats(&self) -> SendStats {
        self.splicer.stats(ConnId::FIRST)
    }

    /// The ring's own counters (`io_uring_enter` calls, fixed-buffer sends).
    pub fn uring_stats(&self) -> UringStats {
        self.splicer.uring_stats()
    }

    /// Sends `msg` to its end. A full socket (the entries' `MSG_DONTWAIT`,
    /// or `sendfile` stopped by `SO_SNDTIMEO`) is waited for until the
    /// send timeout has passed with no progress.
    fn send_all(&mut self, msg: &mut Msg<'_>) -> Result<(), SendError> {
        let mut progress_at = Instant::now();
        while !msg.is_sent() {
            match self.splicer.send(msg) {
                Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
                Ok(_) => progress_at = Instant::now(),
                Err(SendError::WouldBlock) => self.wait_for_room(progress_at)?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Waits until the socket has room, or fails with
    /// [`SendError::WouldBlock`] once the send timeout since `progress_at`
    /// has passed (what a Splicer's blocking send gives then).
    fn wait_for_room(&self, progress_at: Instant) -> Result<(), SendError> {
        let Some(sock) = self.splicer.get_ref(ConnId::FIRST) else {
            return Err(SendError::NotConnected);
        };
        let Some(limit) = self.send_timeout else {
            // Without a timeout the entries wait by themselves; a
            // WouldBlock then came from elsewhere and is final.
            return Err(SendError::WouldBlock);
        };
        loop {
            let left = limit.saturating_sub(progress_at.elapsed());
            if left.is_zero() {
                return Err(SendError::WouldBlock);
            }
            let mut fds = [PollFd::new(sock, PollFlags::OUT)];
            let ts = rustix::event::Timespec::try_from(left).ok();
            match rustix::event::poll(&mut fds, ts.as_ref()) {
                // Room, or an error the next send reports.
                Ok(n) if n > 0 => return Ok(()),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(SendError::Io(e.into())),
            }
        }
    }
}

impl<S: AsFd + Send> ReplyTransport for UringTransport<S> {
    fn send_reply(&mut self, reply: Reply) -> io::Result<()> {
        let mut bounce = std::mem::take(&mut self.bounce);
        let res = send_reply_with(reply, &mut bounce, |msg| self.send_all(msg));
        self.bounce = bounce;
        res
    }

    fn syscalls(&self) -> u64 {
        self.stats().syscalls
    }
}

impl<S: AsFd> std::fmt::Debug for UringTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringTransport")
            .field("splicer", &self.splicer)
            .field("send_timeout", &self.send_timeout)
            .finish()
    }
}

/// Probes io_uring once with `builder`'s settings (no socket, no
/// traffic). Where it can be used, returns a factory
/// making a [`UringTransport`] per connection; else reports why through
/// `events`, once, as a [`ServerEvent::Warning`], and returns `fallback`.
pub(crate) fn start(
    builder: UringBuilder,
    fallback: TransportFactory,
    events: &EventSink,
) -> TransportFactory {
    match probe(&builder) {
        Ok(()) => factory(builder, events.clone()),
        Err(why) => {
            events(&ServerEvent::Warning {
                message: &format!(
                    "the io_uring send engine cannot be used here, replies go by sendmsg \
                     (the Splicer): {why}"
                ),
            });
            fallback
        }
    }
}

/// Whether a [`UringSplicer`] can be built with `builder`'s settings.
fn probe(builder: &UringBuilder) -> Result<(), String> {
    builder.probe().map(drop).map_err(|e| e.to_string())
}

/// A factory making a [`UringTransport`] per connection; a connection
/// whose ring cannot be made (out of memory, too many rings) gets a
/// [`SplicerTransport`] instead, and `events` hears why.
pub(crate) fn factory(builder: UringBuilder, events: EventSink) -> TransportFactory {
    Arc::new(move |s: TcpStream| {
        let peer = s.peer_addr();
        let t: Box<dyn ReplyTransport> = match Engine::best_with(builder.clone(), s)? {
            Engine::Uring(u) => Box::new(UringTransport::from_splicer(u)),
            Engine::Splicer { splicer, why } => {
                let who = peer.map_or_else(|_| "a connection".to_owned(), |p| p.to_string());
                events(&ServerEvent::Warning {
                    message: &format!("{who}: replies go by sendmsg: {why}"),
                });
                Box::new(SplicerTransport::from_splicer(splicer))
            }
        };
        Ok(t)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::{ReplyBuilder, ReplyData};
    use crate::transport::splicer::tests::{file, replies, wire};
    use crate::transport::SocketTransport;
    use bytes::BufMut;
    use msgsplice::uring::Capability;
    use msgsplice::FragCache;
    use msgsplice_testkit::sockets::tcp_pair;
    use std::sync::Mutex;

    /// True if io_uring can run here; else records the skip of `test`.
    fn uring_here(test: &str) -> bool {
        match probe(&uring_settings()) {
            Ok(()) => true,
            Err(why) => {
                msgsplice_testkit::skip::skip_unsupported(test, why);
                false
            }
        }
    }

    #[test]
    fn every_reply_shape_arrives_as_the_socket_transport_sends_it() {
        if !uring_here("every_reply_shape_arrives_as_the_socket_transport_sends_it") {
            return;
        }
        let cache = FragCache::new();
        let reference: Vec<Vec<u8>> = replies(&cache)
            .into_iter()
            .map(|r| wire(r, |s| Box::new(SocketTransport::new(s))))
            .collect();
        // With and without a send timeout: MSG_DONTWAIT entries and poll,
        // or entries that wait by themselves.
        for timeout in [None, Some(Duration::from_secs(30))] {
            for (i, r) in replies(&cache).into_iter().enumerate() {
                let got = wire(r, |s| {
                    s.set_write_timeout(timeout).unwrap();
                    let b = uring_settings().policy(
                        msgsplice::send::Builder::new()
                            .check_file_ranges(false)
                            .zerocopy_threshold(4096),
                    );
                    Box::new(UringTransport::with_builder(s, b).unwrap())
                });
                assert!(got == reference[i], "reply {i}, timeout {timeout:?}");
            }
        }
    }

    /// A READ-shaped reply goes through the ring (an `io_uring_enter`) and
    /// is counted as one message, as the Splicer counts it.
    #[test]
    fn a_reply_goes_through_the_ring() {
        if !uring_here("a_reply_goes_through_the_ring") {
            return;
        }
        let cache = FragCache::new();
        let (a, mut z) = tcp_pair(false).unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut z, &mut out).unwrap();
            out.len()
        });
        let mut t = UringTransport::new(a).unwrap();
        let mut b = ReplyBuilder::new(&cache, 128).unwrap();
        b.head().put_slice(&[1; 100]);
        b.put_opaque_data(ReplyData::File(crate::reply::FileRange {
            file: file(&[3u8; 1 << 20]),
            offset: 0,
            len: (1 << 20) - 3,
        }));
        let r = b.finish().unwrap();
        let len = r.wire_len();
        t.send_reply(r).unwrap();
        assert_eq!(t.stats().messages, 1);
        assert!(t.uring_stats().enters >= 1, "{:?}", t.uring_stats());
        assert_eq!(t.syscalls(), t.stats().syscalls);
        drop(t);
        assert_eq!(reader.join().unwrap() as u64, len);
    }

    /// A peer that never reads fails the send once the socket's send
    /// timeout has passed with no progress, as with the Splicer, instead
    /// of holding the connection's thread for good.
    #[test]
    fn a_peer_that_never_reads_times_the_send_out() {
        if !uring_here("a_peer_that_never_reads_times_the_send_out") {
            return;
        }
        let cache = FragCache::new();
        let (a, _z) = tcp_pair(false).unwrap();
        a.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut t = UringTransport::new(a).unwrap();
        let big = vec![7u8; 1 << 20];
        let mut b = ReplyBuilder::new(&cache, 16).unwrap();
        let frags = (0..64).map(|_| cache.memdup(&big).unwrap()).collect();
        b.put_opaque_data(ReplyData::Frags(frags));
        let err = t.send_reply(b.finish().unwrap()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    }

    /// The start-up probe: where io_uring cannot be used, the fallback
    /// factory is returned and the reason is reported, once.
    #[test]
    fn a_failed_probe_falls_back_and_says_why() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        let events: EventSink = Arc::new(move |ev: &ServerEvent<'_>| {
            if let ServerEvent::Warning { message } = ev {
                sink.lock().unwrap().push(message.to_string());
            }
        });
        let fallback = super::super::socket_factory();
        let b = uring_settings().pretend_missing(Capability::SendMsgZc);
        let chosen = start(b, fallback.clone(), &events);
        assert!(Arc::ptr_eq(&chosen, &fallback));
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert!(heard[0].contains("IORING_OP_SENDMSG_ZC"), "{heard:?}");
        // Where the kernel has it, the probe picks the ring.
        if probe(&uring_settings()).is_ok() {
            let chosen = start(uring_settings(), fallback.clone(), &events);
            assert!(!Arc::ptr_eq(&chosen, &fallback));
        }
    }
}
