//! The sending side of a turn: each connection's sender made ready before
//! the clock starts ([`prepare`]), then its loop of messages until the
//! turn's deadline or count ([`send`]).
//!
//! One deadline for every connection of a turn, not one per connection
//! from its own start: a task that keeps its worker (because its socket
//! never fills) would otherwise hold it for a whole run per connection,
//! one connection after another.

use std::io::{self, IoSlice};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::send::Builder;
use msgsplice::{AsyncSplicer, Msg};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::count::{CountingWrite, TaskAllocs};
use super::run::{Contender, Parts};

/// When a sender stops.
#[derive(Clone, Copy, Debug)]
pub enum Until {
    /// At this instant, once it has sent twice its warm-up.
    Deadline(Instant),
    /// After exactly this many messages.
    Messages(u64),
}

/// A connection's sender, set up and ready for its first message.
pub enum Sender {
    /// A tokio stream that has seen its first write readiness.
    Tokio(CountingWrite<tokio::net::TcpStream>),
    /// An `AsyncSplicer` owning the socket, and its system calls so far
    /// (building sets socket options once; not counted per message).
    Splicer(Box<AsyncSplicer<TcpStream>>, u64),
}

/// Sets up `c`'s sender over `sock` (inside the sender runtime).
pub async fn prepare(c: Contender, sock: TcpStream) -> io::Result<Sender> {
    if c.is_tokio() {
        let w = CountingWrite {
            inner: tokio::net::TcpStream::from_std(sock)?,
            writes: 0,
        };
        // Tokio learns the socket is writable from its first event;
        // waiting for it here keeps the first write's poll from counting
        // as an attempt.
        w.inner.writable().await?;
        return Ok(Sender::Tokio(w));
    }
    let b = Builder::default()
        .splice(c == Contender::Splicer)
        .drain_timeout(Duration::from_secs(5));
    let sp = AsyncSplicer::with_builder(b, sock)?;
    let base = sp.stats().syscalls;
    Ok(Sender::Splicer(Box::new(sp), base))
}

/// What a sender counted.
pub struct Sent {
    /// Messages sent.
    pub messages: u64,
    /// System calls (see [`CountingWrite`] and the `AsyncSplicer`'s count).
    pub syscalls: u64,
    /// Allocations while polled after warm-up.
    pub allocs: u64,
    /// Messages sent after warm-up.
    pub counted: u64,
}

/// A sender's count of messages and its stop rule.
struct Pace {
    until: Until,
    warm: u64,
    sent: u64,
    allocs_at_warm: u64,
    meter: Arc<TaskAllocs>,
}

impl Pace {
    fn new(until: Until, warm: u64, meter: Arc<TaskAllocs>) -> Pace {
        let warm = match until {
            Until::Deadline(_) => warm,
            Until::Messages(n) => warm.min(n / 2),
        };
        Pace {
            until,
            warm,
            sent: 0,
            allocs_at_warm: meter.now(),
            meter,
        }
    }

    /// True if another message is due (and marks the end of warm-up).
    fn more(&mut self) -> bool {
        let done = match self.until {
            Until::Deadline(t) => self.sent >= 2 * self.warm && Instant::now() >= t,
            Until::Messages(n) => self.sent >= n,
        };
        if !done && self.sent == self.warm {
            self.allocs_at_warm = self.meter.now();
        }
        !done
    }

    /// What the sender counted, with `syscalls`.
    fn counts(&self, syscalls: u64) -> Sent {
        Sent {
            messages: self.sent,
            syscalls,
            allocs: self.meter.now() - self.allocs_at_warm,
            counted: self.sent.saturating_sub(self.warm),
        }
    }
}

/// Sends messages with `sender` until `until`, counting allocations
/// after `warm` messages into `meter` (the task runs under
/// [`counted`](super::count::counted)). Dropping the socket on an error
/// closes it, so the receiver always reads end-of-file.
pub async fn send(
    c: Contender,
    sender: Sender,
    parts: Parts,
    until: Until,
    warm: u64,
    meter: Arc<TaskAllocs>,
) -> io::Result<Sent> {
    let pace = Pace::new(until, warm, meter);
    match sender {
        Sender::Tokio(w) => send_tokio(c, w, &parts, pace).await,
        Sender::Splicer(sp, base) => send_splicer(*sp, base, &parts, pace).await,
    }
}

/// The tokio rows, on a `tokio::net::TcpStream`; ends with a shutdown of
/// the sending direction.
async fn send_tokio(
    c: Contender,
    mut w: CountingWrite<tokio::net::TcpStream>,
    parts: &Parts,
    mut pace: Pace,
) -> io::Result<Sent> {
    let (h, p, t) = (&parts.header[..], &parts.payload[..], &parts.trailer[..]);
    let mut joined = Vec::new();
    while pace.more() {
        match c {
            Contender::JoinedWriteAll => {
                joined.clear();
                joined.reserve_exact(parts.expected.len());
                joined.extend_from_slice(h);
                joined.extend_from_slice(p);
                joined.extend_from_slice(t);
                w.write_all(&joined).await?;
            }
            Contender::WriteVectored => write_vectored_all(&mut w, [h, p, t]).await?,
            _ => {
                w.write_all(h).await?;
                w.write_all(p).await?;
                w.write_all(t).await?;
            }
        }
        pace.sent += 1;
    }
    let sent = pace.counts(w.writes);
    w.inner.shutdown().await?;
    Ok(sent)
}

/// `write_vectored` until every slice is taken, resuming a short write at
/// the exact byte (across slice boundaries).
async fn write_vectored_all<W: AsyncWrite + Unpin>(w: &mut W, parts: [&[u8]; 3]) -> io::Result<()> {
    let mut iov = parts.map(IoSlice::new);
    let mut bufs = &mut iov[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut bufs, n),
        }
    }
    Ok(())
}

/// The `AsyncSplicer` rows, owning the socket; ends with
/// [`AsyncSplicer::close`], which waits for zero-copy completions (a send
/// never completed fails the run, as it would leak).
async fn send_splicer(
    mut sp: AsyncSplicer<TcpStream>,
    base: u64,
    parts: &Parts,
    mut pace: Pace,
) -> io::Result<Sent> {
    while pace.more() {
        let mut m = Msg::new();
        m.push(&parts.header[..]);
        m.push(parts.payload.clone());
        m.push(&parts.trailer[..]);
        sp.send(&mut m).await?;
        pace.sent += 1;
    }
    let mut sent = pace.counts(0);
    let last = sp.close().await;
    if last.retired_on_close > 0 {
        return Err(io::Error::other(format!(
            "{} zero-copy sends never completed",
            last.retired_on_close
        )));
    }
    sent.syscalls = last.syscalls - base;
    Ok(sent)
}
