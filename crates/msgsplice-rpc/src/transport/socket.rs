//! [`SocketTransport`]: replies with plain `writev`, `send` and `sendfile`,
//! no send engine. Kept as the reference the Splicer is compared with, and
//! for sockets a Splicer does not drive.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;

use rustix::io::Errno;
use rustix::net::SendFlags;

use super::ReplyTransport;
use crate::reply::{FileRange, Reply, ReplyData};

/// A [`ReplyTransport`] over a connected stream socket, with no send engine:
/// `writev` for memory, `sendfile` for file ranges.
///
/// System calls per reply: one `writev` without a file range (more only on
/// partial writes); with a file range, one `send(MSG_MORE)` for the head,
/// `sendfile` until the range is sent, and one `send` for a non-empty tail.
/// Heap allocations: none, except a `Vec` of slices when the data is more
/// than one fragment, and a copy buffer (once per transport) for files that
/// cannot be `sendfile`d.
#[derive(Debug)]
pub struct SocketTransport<S> {
    socket: S,
    bounce: Vec<u8>,
    syscalls: u64,
}

impl<S: AsFd + Send> SocketTransport<S> {
    /// A transport writing to `socket`.
    pub fn new(socket: S) -> SocketTransport<S> {
        SocketTransport {
            socket,
            bounce: Vec::new(),
            syscalls: 0,
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &S {
        &self.socket
    }

    fn writev_all(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            self.syscalls += 1;
            match rustix::io::writev(&self.socket, bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn send_all(&mut self, mut buf: &[u8], more: bool) -> io::Result<()> {
        let flags = if more {
            SendFlags::MORE | SendFlags::NOSIGNAL
        } else {
            SendFlags::NOSIGNAL
        };
        while !buf.is_empty() {
            self.syscalls += 1;
            match rustix::net::send(&self.socket, buf, flags) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn send_file(&mut self, range: &FileRange, more: bool) -> io::Result<()> {
        let mut offset = range.offset;
        let end = range.offset + range.len;
        while offset < end {
            let want = (end - offset).min(1 << 30) as usize;
            self.syscalls += 1;
            match rustix::fs::sendfile(&self.socket, &*range.file, Some(&mut offset), want) {
                Ok(0) => return Err(range.shrank()),
                Ok(_) => {}
                Err(Errno::INTR) => {}
                // Filesystems without splice support: copy through a buffer.
                Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP) => {
                    return self.copy_file(range, offset, more);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn copy_file(&mut self, range: &FileRange, offset: u64, more: bool) -> io::Result<()> {
        let mut done = offset - range.offset;
        let mut bounce = std::mem::take(&mut self.bounce);
        bounce.resize(super::splicer::COPY_CHUNK, 0);
        let res = (|| {
            while done < range.len {
                self.syscalls += 1;
                let n = range.read_chunk(done, &mut bounce)?;
                done += n as u64;
                self.send_all(&bounce[..n], more || done < range.len)?;
            }
            Ok(())
        })();
        self.bounce = bounce;
        res
    }
}

impl<S: AsFd + Send> ReplyTransport for SocketTransport<S> {
    fn syscalls(&self) -> u64 {
        self.syscalls
    }

    fn send_reply(&mut self, reply: Reply) -> io::Result<()> {
        let (head, data, tail) = reply.into_parts();
        match &data {
            ReplyData::None => {
                self.writev_all(&mut [IoSlice::new(&head), IoSlice::new(tail.as_bytes())])
            }
            ReplyData::Frags(frags) => {
                let mut iov = Vec::with_capacity(frags.len() + 2);
                iov.push(IoSlice::new(&head));
                iov.extend(frags.iter().map(|f| IoSlice::new(f)));
                iov.push(IoSlice::new(tail.as_bytes()));
                self.writev_all(&mut iov)
            }
            ReplyData::File(range) => {
                let has_tail = !tail.as_bytes().is_empty();
                self.send_all(&head, range.len > 0 || has_tail)?;
                self.send_file(range, has_tail)?;
                self.send_all(tail.as_bytes(), false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::ReplyBuilder;
    use bytes::BufMut;
    use msgsplice::FragCache;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;

    fn collect(build: impl FnOnce(&mut ReplyBuilder)) -> Vec<u8> {
        let cache = FragCache::new();
        let mut b = ReplyBuilder::new(&cache, 64).unwrap();
        build(&mut b);
        let reply = b.finish().unwrap();
        let want = reply.wire_len() as usize;
        let (a, mut z) = UnixStream::pair().unwrap();
        let mut t = SocketTransport::new(a);
        t.send_reply(reply).unwrap();
        drop(t);
        let mut out = Vec::new();
        z.read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), want);
        out
    }

    #[test]
    fn memory_reply_arrives_whole() {
        let out = collect(|b| {
            b.head().put_u32(9);
            b.tail().put_u32(10);
        });
        assert_eq!(out, [0x80, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 10]);
    }

    #[test]
    fn frag_and_file_replies_arrive_whole() {
        let cache = FragCache::new();
        let f1 = cache.memdup(b"abc").unwrap();
        let f2 = cache.memdup(b"de").unwrap();
        let out = collect(|b| b.put_opaque_data(ReplyData::Frags(vec![f1, f2])));
        assert_eq!(out, b"\x80\0\0\x0c\0\0\0\x05abcde\0\0\0");

        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let file = Arc::new(file);
        let out = collect(|b| {
            b.put_opaque_data(ReplyData::File(FileRange {
                file: file.clone(),
                offset: 1,
                len: 5,
            }));
            b.tail().put_u32(1);
        });
        assert_eq!(out, b"\x80\0\0\x10\0\0\0\x0512345\0\0\0\0\0\0\x01");
    }

    #[test]
    fn a_file_that_shrank_fails_the_send() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123").unwrap();
        let cache = FragCache::new();
        let mut b = ReplyBuilder::new(&cache, 16).unwrap();
        b.put_opaque_data(ReplyData::File(FileRange {
            file: Arc::new(file),
            offset: 0,
            len: 8,
        }));
        let (a, _z) = UnixStream::pair().unwrap();
        let err = SocketTransport::new(a)
            .send_reply(b.finish().unwrap())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
