//! [`SplicerTransport`]: one reply, one [`Msg`], one [`Splicer::send`].

use std::io;
use std::os::fd::AsFd;

use msgsplice::send::Builder;
use msgsplice::{Msg, SendError, SendStats, Splicer};
use rustix::io::Errno;

use super::ReplyTransport;
use crate::reply::{FileRange, Reply, ReplyData};

/// Bytes read per `pread` when a file cannot be `sendfile`d.
pub(crate) const COPY_CHUNK: usize = 64 * 1024;

/// A [`ReplyTransport`] that sends each reply as one [`Msg`] through a
/// [`Splicer`] with the SPLICE hint on (unless the [`Builder`] says
/// otherwise).
///
/// The message is the reply's parts in order: the head [`Frag`](msgsplice::Frag)
/// (record marker written in place, spliceable), the data (fragments,
/// spliceable; or a file range, sent with `sendfile`) and the tail
/// (at most 60 bytes, copied). What the Splicer then does:
///
/// - Memory only: one `sendmsg` for the whole reply. Fragments of at least
///   the Splicer's zero-copy threshold go with `MSG_ZEROCOPY` where that
///   pays (see `msgsplice::send`); smaller replies are copied.
/// - With a file range (a READ): one `sendmsg(MSG_MORE)` for the head and
///   one `sendfile` for the data when the socket has room. A non-empty
///   tail (XDR padding: only when the count is not a multiple of 4) makes
///   the data go through the Splicer's pipe instead, by two `splice` calls
///   with `SPLICE_F_MORE` (see
///   [`Builder::file_tail_pipe`](msgsplice::send::Builder::file_tail_pipe)),
///   and the tail follows with one `sendmsg`, so they leave together. The
///   Splicer's own range check (an `fstat` per range) is off in
///   [`super::splicer_settings`]: the range was measured when the reply
///   was built, and a file that shrank since fails the send, as
///   [`FileRange`] says.
///
/// Heap allocations per reply: none. The `Msg` lives on the stack (eight
/// inline segments: head, up to six data fragments, tail) and the
/// Splicer reuses its `iovec` array. A reply with more than six data
/// fragments moves the segment list to the heap once; a file that cannot
/// be `sendfile`d (a file system without splice support) is read through
/// a 64 KiB buffer made once per connection.
pub struct SplicerTransport<S: AsFd> {
    splicer: Splicer<S>,
    bounce: Vec<u8>,
}

impl<S: AsFd> SplicerTransport<S> {
    /// A transport over `socket` with [`super::splicer_settings`] (SPLICE
    /// on). Fails if the socket is not one a Splicer drives (TCP, Unix
    /// stream).
    pub fn new(socket: S) -> Result<SplicerTransport<S>, SendError> {
        SplicerTransport::with_builder(socket, super::splicer_settings())
    }

    /// A transport over `socket` with a Splicer built by `builder` (to turn
    /// SPLICE off, change the zero-copy threshold, ...).
    pub fn with_builder(socket: S, builder: Builder) -> Result<SplicerTransport<S>, SendError> {
        Ok(SplicerTransport {
            splicer: builder.build(socket)?,
            bounce: Vec::new(),
        })
    }

    /// A transport over a Splicer already made (the io_uring factory's
    /// fallback, which gets one from `msgsplice::Engine::best_with`).
    #[cfg(feature = "uring")]
    pub(crate) fn from_splicer(splicer: Splicer<S>) -> SplicerTransport<S> {
        SplicerTransport {
            splicer,
            bounce: Vec::new(),
        }
    }

    /// The Splicer.
    pub fn splicer(&self) -> &Splicer<S> {
        &self.splicer
    }

    /// The Splicer's counters.
    pub fn stats(&self) -> SendStats {
        self.splicer.stats()
    }

    /// Sends `msg` to its end. A send timeout that strikes after some
    /// progress returns early from the Splicer; the send goes on from the
    /// cursor, so a timeout only closes a connection that made no progress
    /// for that long.
    fn send_all(&mut self, msg: &mut Msg<'_>) -> Result<(), SendError> {
        while !msg.is_sent() {
            if self.splicer.send(msg)? == 0 {
                return Err(SendError::Io(io::ErrorKind::WriteZero.into()));
            }
        }
        Ok(())
    }
}

/// True for the errors `sendfile` gives for a file it cannot splice from.
pub(crate) fn sendfile_unsupported(e: &SendError) -> bool {
    let SendError::Io(e) = e else { return false };
    matches!(
        Errno::from_io_error(e),
        Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
    )
}

impl<S: AsFd + Send> ReplyTransport for SplicerTransport<S> {
    fn send_reply(&mut self, reply: Reply) -> io::Result<()> {
        let mut bounce = std::mem::take(&mut self.bounce);
        let res = send_reply_with(reply, &mut bounce, |msg| self.send_all(msg));
        self.bounce = bounce;
        res
    }

    fn syscalls(&self) -> u64 {
        self.splicer.stats().syscalls
    }
}

/// Sends `reply` as one [`Msg`] through `send_all` (which sends a message
/// to its end or fails): the head, the data (fragments or a file range),
/// the tail. A file range that `sendfile` refuses is copied instead,
/// through `bounce`. Shared by the Splicer and io_uring transports, so
/// that both put the same bytes on the wire.
pub(crate) fn send_reply_with(
    reply: Reply,
    bounce: &mut Vec<u8>,
    mut send_all: impl FnMut(&mut Msg<'_>) -> Result<(), SendError>,
) -> io::Result<()> {
    let (head, data, tail) = reply.into_parts();
    let head_len = head.len() as u64;
    let mut msg = crate::reply::reply_msg(head, &data, &tail);
    let err = match send_all(&mut msg) {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    // A file system without splice support fails `sendfile` with the
    // head already sent: go on from the exact byte by copying.
    if let ReplyData::File(r) = &data {
        let done = msg.sent().saturating_sub(head_len);
        if msg.sent() >= head_len && done < r.len && sendfile_unsupported(&err) {
            return copy_file(r, done, tail.as_bytes(), bounce, send_all);
        }
    }
    Err(err.into())
}

/// The rest of a file range that `sendfile` refused, from byte `done` of
/// it, read into `bounce` and sent in chunks; then the tail.
fn copy_file(
    range: &FileRange,
    mut done: u64,
    tail: &[u8],
    bounce: &mut Vec<u8>,
    mut send_all: impl FnMut(&mut Msg<'_>) -> Result<(), SendError>,
) -> io::Result<()> {
    bounce.resize(COPY_CHUNK, 0);
    while done < range.len {
        let n = range.read_chunk(done, bounce)?;
        done += n as u64;
        let mut msg = Msg::new();
        msg.push(&bounce[..n]);
        if done == range.len {
            msg.push(tail);
        }
        send_all(&mut msg)?;
    }
    Ok(())
}

impl<S: AsFd> std::fmt::Debug for SplicerTransport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SplicerTransport")
            .field("splicer", &self.splicer)
            .finish()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::reply::ReplyBuilder;
    use crate::transport::SocketTransport;
    use bytes::BufMut;
    use msgsplice::FragCache;
    use msgsplice_testkit::sockets::tcp_pair;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;

    /// Sends `reply` through `transport` over TCP and returns the bytes that
    /// arrived and the transport's system calls.
    pub(in crate::transport) fn wire(
        reply: Reply,
        make: impl FnOnce(TcpStream) -> Box<dyn ReplyTransport>,
    ) -> Vec<u8> {
        let (a, mut z) = tcp_pair(false).unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            z.read_to_end(&mut out).unwrap();
            out
        });
        let want = reply.wire_len() as usize;
        let mut t = make(a);
        t.send_reply(reply).unwrap();
        drop(t);
        let out = reader.join().unwrap();
        assert_eq!(out.len(), want);
        out
    }

    pub(in crate::transport) fn file(bytes: &[u8]) -> Arc<std::fs::File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        Arc::new(f)
    }

    /// The reply shapes a server sends: memory only, data fragments (more
    /// than the Msg's inline segments too), file ranges with and without
    /// padding, large enough to be zero-copied.
    pub(in crate::transport) fn replies(cache: &FragCache) -> Vec<Reply> {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let f = file(&big);
        let frags = |n: usize, len: usize| -> ReplyData {
            ReplyData::Frags(
                (0..n)
                    .map(|i| cache.memdup(&big[i * len..(i + 1) * len]).unwrap())
                    .collect(),
            )
        };
        let shapes: Vec<(ReplyData, u32)> = vec![
            (ReplyData::None, 0),
            (frags(2, 5), 1),
            (frags(9, 33), 2),
            (frags(3, 20_000), 3),
            (
                ReplyData::File(FileRange {
                    file: f.clone(),
                    offset: 4093,
                    len: 65537,
                }),
                4,
            ),
            (
                ReplyData::File(FileRange {
                    file: f,
                    offset: 1,
                    len: 131_072,
                }),
                5,
            ),
        ];
        shapes
            .into_iter()
            .map(|(data, trailer)| {
                let mut b = ReplyBuilder::new(cache, 64).unwrap();
                b.head().put_u32(0xfeed);
                b.put_opaque_data(data);
                if trailer % 2 == 1 {
                    b.tail().put_u32(trailer);
                }
                b.finish().unwrap()
            })
            .collect()
    }

    #[test]
    fn every_reply_shape_arrives_as_the_socket_transport_sends_it() {
        let cache = FragCache::new();
        let reference: Vec<Vec<u8>> = replies(&cache)
            .into_iter()
            .map(|r| wire(r, |s| Box::new(SocketTransport::new(s))))
            .collect();
        for splice in [true, false] {
            for (i, r) in replies(&cache).into_iter().enumerate() {
                let got = wire(r, |s| {
                    let b = Builder::new().splice(splice).zerocopy_threshold(4096);
                    Box::new(SplicerTransport::with_builder(s, b).unwrap())
                });
                assert!(got == reference[i], "reply {i}, splice {splice}");
            }
        }
    }

    #[test]
    fn a_read_reply_is_one_message() {
        let cache = FragCache::new();
        let f = file(&[9u8; 1 << 20]);
        let (a, mut z) = tcp_pair(false).unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            z.read_to_end(&mut out).unwrap();
            out.len()
        });
        let mut t = SplicerTransport::new(a).unwrap();
        let mut total = 0;
        for (i, len) in [1u64 << 20, 1000, 4096].into_iter().enumerate() {
            let mut b = ReplyBuilder::new(&cache, 128).unwrap();
            b.head().put_slice(&[0; 100]);
            b.put_opaque_data(ReplyData::File(FileRange {
                file: f.clone(),
                offset: 0,
                len,
            }));
            let r = b.finish().unwrap();
            total += r.wire_len();
            let before = t.stats();
            t.send_reply(r).unwrap();
            let after = t.stats();
            assert_eq!(after.messages - before.messages, 1, "reply {i}");
            // 1 MiB: sendmsg(MSG_MORE) of the head, sendfile; no tail to
            // send (the length is a multiple of four). Up to 32 KiB: the
            // Splicer reads the range (pread) and sends head and data in
            // one sendmsg.
            assert_eq!(after.syscalls - before.syscalls, 2, "reply {i}");
            assert_eq!(t.syscalls(), after.syscalls);
        }
        drop(t);
        assert_eq!(reader.join().unwrap() as u64, total);
    }

    #[test]
    fn a_file_that_shrank_fails_the_send() {
        let cache = FragCache::new();
        let mut b = ReplyBuilder::new(&cache, 16).unwrap();
        b.put_opaque_data(ReplyData::File(FileRange {
            file: file(b"0123"),
            offset: 0,
            len: 8,
        }));
        let (a, _z) = tcp_pair(false).unwrap();
        let err = SplicerTransport::new(a)
            .unwrap()
            .send_reply(b.finish().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// A small READ reply whose file shrank after the reply was built puts
    /// nothing on the wire: the head declares a count the file can no
    /// longer fill, so no byte of it may go (the connection is closed by
    /// the server on the error). Both sizes: read into a fragment, spliced.
    #[test]
    fn a_shrunk_file_sends_nothing_of_its_reply() {
        let cache = FragCache::new();
        for len in [4096u64, 256 << 10] {
            let f = file(&vec![5u8; len as usize]);
            let mut b = ReplyBuilder::new(&cache, 16).unwrap();
            b.head().put_u32(len as u32);
            b.put_opaque_data(ReplyData::File(FileRange {
                file: f.clone(),
                offset: 0,
                len,
            }));
            let reply = b.finish().unwrap();
            f.set_len(len / 2).unwrap();
            let (a, mut z) = tcp_pair(false).unwrap();
            let reader = std::thread::spawn(move || {
                let mut out = Vec::new();
                z.read_to_end(&mut out).unwrap();
                out
            });
            let mut t = SplicerTransport::new(a).unwrap();
            assert!(t.send_reply(reply).is_err(), "len {len}");
            drop(t);
            let got = reader.join().unwrap();
            if len <= 32 << 10 {
                assert!(got.is_empty(), "len {len}: {} bytes went", got.len());
            } else {
                // Spliced: the head and what the file still has went, then
                // the error; the server closes the connection, so the
                // client sees a short record, never a wrong one.
                assert!(got.len() < (len + 24) as usize, "len {len}");
            }
        }
    }

    #[test]
    fn only_unsupported_file_errors_fall_back_to_copying() {
        let os = |e: Errno| SendError::Io(io::Error::from(e));
        assert!(sendfile_unsupported(&os(Errno::INVAL)));
        assert!(sendfile_unsupported(&os(Errno::OPNOTSUPP)));
        assert!(!sendfile_unsupported(&os(Errno::IO)));
        assert!(!sendfile_unsupported(&SendError::BrokenPipe));
    }
}
