//! Ways to put one message on a socket, and the lists the send sections
//! measure.
//!
//! A message is a protocol header, a payload and a trailer ([`Message`]).
//! A [`SendStrategy`] sends one whole message and says how many system
//! calls it made; the harness around it counts heap allocations and checks
//! what arrives. Adding a strategy is one entry in [`memory_strategies`] or
//! [`file_strategies`]; the first entry of each list is the baseline of its
//! section.
//!
//! The baselines call `write(2)`, `writev(2)` and `pread(2)` through rustix,
//! one system call per call, and count each call (retries after `EINTR` and
//! short writes included). `write` rather than `send` keeps the calls in the
//! kernel's per-thread `syscw` count, which the tests use to check ours.

use std::fs::File;
use std::io::{self, IoSlice};
use std::net::{Shutdown, TcpStream};
use std::ops::AddAssign;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use msgsplice::frag::Frag;
use rustix::io::Errno;

use super::harness::Transport;
use super::splicer::{Mode as SplicerMode, SplicerRow};

/// A connected stream socket a strategy writes to.
pub trait Sock: AsFd + Send {
    /// Which kind of socket it is (a send engine may treat them apart:
    /// `SO_ZEROCOPY` exists for TCP only).
    fn transport(&self) -> Transport;
    /// Shuts down the sending direction, so the peer reads end-of-file.
    fn shutdown_write(&self) -> io::Result<()>;
}

impl Sock for TcpStream {
    fn transport(&self) -> Transport {
        Transport::Tcp
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Sock for UnixStream {
    fn transport(&self) -> Transport {
        Transport::Unix
    }

    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// One message: the shape of an RPC reply or a storage protocol PDU.
#[derive(Clone, Copy)]
pub struct Message<'a> {
    /// Protocol header (128 bytes in the benchmark).
    pub header: &'a [u8],
    /// The bulk data.
    pub payload: Payload<'a>,
    /// Trailer (8 bytes in the benchmark: a checksum, a record end).
    pub trailer: &'a [u8],
}

/// Where a message's bulk data lives.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    /// In memory, held in a refcounted fragment, so that a strategy that
    /// splices can keep a reference ([`Frag`] derefs to the bytes).
    Memory(&'a Frag),
    /// A range of a file.
    File {
        /// The file (kept open by the harness).
        file: &'a File,
        /// Where the range starts.
        offset: u64,
        /// Its length in bytes.
        len: usize,
    },
}

impl Message<'_> {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        let p = match &self.payload {
            Payload::Memory(f) => f.len(),
            Payload::File { len, .. } => *len,
        };
        self.header.len() + p + self.trailer.len()
    }

    /// True if the message has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload bytes, for strategies that only handle memory payloads.
    fn memory(&self) -> io::Result<&[u8]> {
        match &self.payload {
            Payload::Memory(f) => Ok(f),
            Payload::File { .. } => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this strategy sends memory payloads only",
            )),
        }
    }
}

fn file_only() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "this strategy sends file payloads only",
    )
}

/// System calls made (each attempt counts, failed or short).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyscallCount(pub u64);

impl AddAssign for SyscallCount {
    fn add_assign(&mut self, rhs: SyscallCount) {
        self.0 += rhs.0;
    }
}

/// A way to send whole messages.
///
/// One instance serves a whole section: state such as a reused buffer is
/// kept across messages and runs, as a server would keep it.
pub trait SendStrategy: Send {
    /// Row name in the table.
    fn name(&self) -> &str;

    /// Called once per connection before the first message (for example to
    /// set socket options or set up completion handling).
    fn connected(&mut self, _sock: &dyn Sock) -> io::Result<()> {
        Ok(())
    }

    /// Sends all of `msg`, blocking until the kernel took every byte.
    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount>;

    /// Called after the last message of a connection, before shutdown
    /// (for example to wait for zero-copy completions).
    fn finish(&mut self, _sock: &dyn Sock) -> io::Result<SyscallCount> {
        Ok(SyscallCount(0))
    }
}

/// The strategies for in-memory payloads; the first is the baseline.
pub fn memory_strategies() -> Vec<Box<dyn SendStrategy>> {
    vec![
        Box::new(ThreeWrites),
        Box::new(VecCopy::new(false)),
        Box::new(VecCopy::new(true)),
        Box::new(Writev),
        Box::new(SplicerRow::new(SplicerMode::Off, false)),
        Box::new(SplicerRow::new(SplicerMode::On, false)),
        Box::new(SplicerRow::new(SplicerMode::OnKeep, false)),
    ]
}

/// The strategies for file-backed payloads; the first is the baseline.
pub fn file_strategies() -> Vec<Box<dyn SendStrategy>> {
    vec![
        Box::new(ReadWrite::new()),
        Box::new(ReadWritev::new()),
        Box::new(SplicerRow::new(SplicerMode::On, true)),
        Box::new(SplicerRow::new(SplicerMode::SpliceAlways, true)),
    ]
}

/// `write(2)` until all of `buf` is taken.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8], calls: &mut SyscallCount) -> io::Result<()> {
    while !buf.is_empty() {
        calls.0 += 1;
        match rustix::io::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `writev(2)` until every slice is taken, resuming a short write at the
/// exact byte (across slice boundaries).
pub fn writev_all(
    fd: BorrowedFd<'_>,
    mut bufs: &mut [IoSlice<'_>],
    calls: &mut SyscallCount,
) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        calls.0 += 1;
        match rustix::io::writev(fd, bufs) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `pread(2)` until `buf` is full.
pub fn pread_exact(
    file: &File,
    mut buf: &mut [u8],
    mut offset: u64,
    calls: &mut SyscallCount,
) -> io::Result<()> {
    while !buf.is_empty() {
        calls.0 += 1;
        match rustix::io::pread(file, &mut *buf, offset) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Header, payload and trailer in three `write` calls: the code most
/// servers start with (and what `MSG_SENDPAGE_NOTLAST` corked in the
/// kernel).
pub struct ThreeWrites;

impl SendStrategy for ThreeWrites {
    fn name(&self) -> &str {
        "three write() calls"
    }

    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        let mut n = SyscallCount(0);
        let fd = sock.as_fd();
        write_all(fd, msg.header, &mut n)?;
        write_all(fd, msg.memory()?, &mut n)?;
        write_all(fd, msg.trailer, &mut n)?;
        Ok(n)
    }
}

/// Copy the three parts into one contiguous buffer, then one `write`.
/// Either a fresh `Vec` per message (one heap allocation each) or one
/// `Vec` kept and reused (none in steady state).
pub struct VecCopy {
    reuse: bool,
    buf: Vec<u8>,
}

impl VecCopy {
    /// `reuse`: keep one buffer across messages instead of a new one each.
    pub fn new(reuse: bool) -> VecCopy {
        VecCopy {
            reuse,
            buf: Vec::new(),
        }
    }
}

impl SendStrategy for VecCopy {
    fn name(&self) -> &str {
        if self.reuse {
            "copy into a reused Vec + write"
        } else {
            "copy into a new Vec + write"
        }
    }

    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        let payload = msg.memory()?;
        let mut fresh;
        let buf = if self.reuse {
            self.buf.clear();
            &mut self.buf
        } else {
            fresh = Vec::new();
            &mut fresh
        };
        buf.reserve_exact(msg.len());
        buf.extend_from_slice(msg.header);
        buf.extend_from_slice(payload);
        buf.extend_from_slice(msg.trailer);
        let mut n = SyscallCount(0);
        write_all(sock.as_fd(), buf, &mut n)?;
        Ok(n)
    }
}

/// One `writev` of three `iovec`s: no copy in user space, one call.
pub struct Writev;

impl SendStrategy for Writev {
    fn name(&self) -> &str {
        "writev"
    }

    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        let mut iov = [
            IoSlice::new(msg.header),
            IoSlice::new(msg.memory()?),
            IoSlice::new(msg.trailer),
        ];
        let mut n = SyscallCount(0);
        writev_all(sock.as_fd(), &mut iov, &mut n)?;
        Ok(n)
    }
}

/// The classic file server loop: write the header, then `pread` the range
/// in 64 KiB chunks and `write` each, then write the trailer.
pub struct ReadWrite {
    chunk: Vec<u8>,
}

impl ReadWrite {
    /// Chunk size of the read/write loop.
    pub const CHUNK: usize = 64 << 10;

    /// With its 64 KiB buffer (allocated here, once).
    pub fn new() -> ReadWrite {
        ReadWrite {
            chunk: vec![0; Self::CHUNK],
        }
    }
}

impl Default for ReadWrite {
    fn default() -> Self {
        Self::new()
    }
}

impl SendStrategy for ReadWrite {
    fn name(&self) -> &str {
        "pread+write, 64 KiB chunks"
    }

    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        let Payload::File { file, offset, len } = msg.payload else {
            return Err(file_only());
        };
        let fd = sock.as_fd();
        let mut n = SyscallCount(0);
        write_all(fd, msg.header, &mut n)?;
        let mut done = 0;
        while done < len {
            let k = (len - done).min(Self::CHUNK);
            pread_exact(file, &mut self.chunk[..k], offset + done as u64, &mut n)?;
            write_all(fd, &self.chunk[..k], &mut n)?;
            done += k;
        }
        write_all(fd, msg.trailer, &mut n)?;
        Ok(n)
    }
}

/// Read the whole range into a reused buffer, then one `writev` of header,
/// buffer and trailer: the fewest calls a copying server can make.
pub struct ReadWritev {
    buf: Vec<u8>,
}

impl ReadWritev {
    /// With an empty buffer (grown on first use, then reused).
    pub fn new() -> ReadWritev {
        ReadWritev { buf: Vec::new() }
    }
}

impl Default for ReadWritev {
    fn default() -> Self {
        Self::new()
    }
}

impl SendStrategy for ReadWritev {
    fn name(&self) -> &str {
        "pread whole range + writev"
    }

    fn send(&mut self, sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        let Payload::File { file, offset, len } = msg.payload else {
            return Err(file_only());
        };
        if self.buf.len() < len {
            self.buf.resize(len, 0);
        }
        let mut n = SyscallCount(0);
        pread_exact(file, &mut self.buf[..len], offset, &mut n)?;
        let mut iov = [
            IoSlice::new(msg.header),
            IoSlice::new(&self.buf[..len]),
            IoSlice::new(msg.trailer),
        ];
        writev_all(sock.as_fd(), &mut iov, &mut n)?;
        Ok(n)
    }
}
