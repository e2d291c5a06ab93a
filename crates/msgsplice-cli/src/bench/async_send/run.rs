//! One turn of the `async` section: `conns` TCP loopback connections, each
//! with a sending task on the sender runtime and a receiving task on the
//! receiver runtime, and what they counted.
//!
//! The receivers run on a runtime of their own (one worker thread), so
//! that the two workers of the sender runtime serve the senders alone, as
//! a server's runtime would, with its clients elsewhere. Every receiver
//! checks every byte against the message ([`Verifier`]), and the turn
//! checks each connection's byte count against the messages its sender
//! says it sent: a sender that loses or invents bytes fails the turn.
//!
//! Allocations are those made while the sending task is polled, on
//! whichever worker polls it ([`TaskAllocs`]): per-thread counters alone
//! would miss a task that moves between workers. Writes of the tokio rows
//! are counted at the stream ([`CountingWrite`]); the `AsyncSplicer` rows
//! report the engine's own count ([`msgsplice::SendStats::syscalls`]).

use std::io::{self, IoSlice};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::frag::Frag;
use msgsplice::send::Builder;
use msgsplice::{AsyncSplicer, Msg};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::count::{counted, CountingWrite, TaskAllocs};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use crate::alloc_count;
use crate::bench::net::harness::Verifier;

/// Messages per connection before allocations start being counted, with
/// one connection; a timed turn sends at least twice as many.
pub const WARMUP: u64 = 8;
/// The same with more than one connection: their messages add up, and 64
/// connections of 256 KiB messages would spend a whole run warming up.
pub const WARMUP_MANY: u64 = 4;
/// Worker threads of the sender runtime.
pub const SEND_WORKERS: usize = 2;
/// Each receiver's read buffer.
const RECV_BUF: usize = 64 << 10;
/// A turn that has not ended by then is stuck (a sender or receiver that
/// never finishes), and fails instead of hanging the benchmark.
const TURN_LIMIT: Duration = Duration::from_secs(60);

/// A way to send the message from a tokio task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    /// `write_all` of the header, the payload and the trailer.
    ThreeWriteAll,
    /// The three copied into one reused `Vec`, then one `write_all`.
    JoinedWriteAll,
    /// `write_vectored` of the three slices until all are taken.
    WriteVectored,
    /// [`AsyncSplicer::send`] with the default policy.
    Splicer,
    /// [`AsyncSplicer::send`] with SPLICE off.
    SplicerOff,
}

/// Every contender, in table order; the first is the baseline.
pub const CONTENDERS: [Contender; 5] = [
    Contender::ThreeWriteAll,
    Contender::JoinedWriteAll,
    Contender::WriteVectored,
    Contender::Splicer,
    Contender::SplicerOff,
];

impl Contender {
    /// Row name in the table.
    pub fn name(self) -> &'static str {
        match self {
            Contender::ThreeWriteAll => "tokio: three write_all",
            Contender::JoinedWriteAll => "tokio: copy into a reused Vec + write_all",
            Contender::WriteVectored => "tokio: write_vectored loop",
            Contender::Splicer => "AsyncSplicer",
            Contender::SplicerOff => "AsyncSplicer, SPLICE off",
        }
    }

    /// True for the rows that are tokio's own ways to send.
    pub fn is_tokio(self) -> bool {
        !matches!(self, Contender::Splicer | Contender::SplicerOff)
    }
}

/// The message every connection of a turn sends, and what it looks like
/// on the wire. Cloning shares the bytes.
#[derive(Clone)]
pub struct Parts {
    header: Arc<[u8]>,
    payload: Frag,
    trailer: Arc<[u8]>,
    expected: Arc<[u8]>,
}

impl Parts {
    /// A message of these three parts.
    pub fn new(header: &[u8], payload: Frag, trailer: &[u8]) -> Parts {
        let expected = [header, &payload[..], trailer].concat().into();
        Parts {
            header: header.into(),
            payload,
            trailer: trailer.into(),
            expected,
        }
    }

    /// The message's bytes.
    pub fn expected(&self) -> &[u8] {
        &self.expected
    }
}

/// When the senders stop.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// This long after the connection's first message, and at least
    /// twice the warm-up
    /// ([`warmup`]) per connection.
    After(Duration),
    /// After exactly this many messages per connection.
    Messages(u64),
}

/// The sender runtime and the receiver runtime, kept for a whole section.
pub struct Runtimes {
    send: Runtime,
    recv: Runtime,
}

impl Runtimes {
    /// A multi-thread runtime of [`SEND_WORKERS`] workers for the senders,
    /// and one of a single worker for the receivers.
    pub fn new() -> io::Result<Runtimes> {
        let build = |workers, name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name(name)
                .enable_all()
                .build()
        };
        Ok(Runtimes {
            send: build(SEND_WORKERS, "bench-async-send")?,
            recv: build(1, "bench-async-recv")?,
        })
    }
}

/// What one turn measured, summed over its connections.
#[derive(Clone, Debug)]
pub struct TurnResult {
    /// Messages sent.
    pub messages: u64,
    /// Bytes the receivers read (and checked).
    pub bytes: u64,
    /// From the first sender's first message (each starts once its
    /// connection is set up) to the last receiver's end-of-file.
    pub elapsed: Duration,
    /// System calls counted by the senders (see the module documentation).
    pub syscalls: u64,
    /// Allocations while the senders were polled after warm-up, and the
    /// messages they sent in that time; `None` without the counting
    /// allocator.
    pub allocs: Option<(u64, u64)>,
    /// Per connection, every byte received (only when asked to keep them).
    pub received: Vec<Vec<u8>>,
}

impl TurnResult {
    /// 10^9 message bytes per second.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }

    /// Messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// System calls per message.
    pub fn syscalls_per_msg(&self) -> f64 {
        self.syscalls as f64 / self.messages.max(1) as f64
    }

    /// Heap allocations per message in steady state.
    pub fn allocs_per_msg(&self) -> Option<f64> {
        self.allocs
            .filter(|&(_, msgs)| msgs > 0)
            .map(|(a, msgs)| a as f64 / msgs as f64)
    }
}

/// Why a turn failed.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// A socket call failed.
    #[error("{contender}: {what}: {source}")]
    Io {
        /// The row's name.
        contender: &'static str,
        /// What was being done.
        what: &'static str,
        /// The error.
        source: io::Error,
    },
    /// A receiver read something other than what its sender sent.
    #[error("{contender}, connection {conn}: {what}")]
    WrongBytes {
        /// The row's name.
        contender: &'static str,
        /// Which connection.
        conn: usize,
        /// What differed.
        what: String,
    },
    /// The turn did not end in time.
    #[error("{contender}: not done after {limit:?}; a sender or a receiver is stuck")]
    Stuck {
        /// The row's name.
        contender: &'static str,
        /// How long it was given.
        limit: Duration,
    },
    /// A task panicked.
    #[error("{contender}: a task panicked: {what}")]
    Panicked {
        /// The row's name.
        contender: &'static str,
        /// The join error.
        what: String,
    },
}

/// One turn: `conns` fresh connections, each sending the message with `c`
/// until `stop`; with `keep`, every received byte is returned too.
pub fn run_turn(
    rts: &Runtimes,
    c: Contender,
    conns: usize,
    parts: &Parts,
    stop: Stop,
    keep: bool,
) -> Result<TurnResult, TurnError> {
    let io_err = |what| {
        move |source| TurnError::Io {
            contender: c.name(),
            what,
            source,
        }
    };
    let pairs = connect(conns).map_err(io_err("connecting"))?;
    let mut receivers = Vec::with_capacity(conns);
    let mut txs = Vec::with_capacity(conns);
    for (tx, rx) in pairs {
        let rx = {
            let _in = rts.recv.enter();
            tokio::net::TcpStream::from_std(rx).map_err(io_err("registering a receiver"))?
        };
        receivers.push(rts.recv.spawn(receive(rx, parts.expected.clone(), keep)));
        txs.push(tx);
    }
    let counting = alloc_count::installed();
    let senders: Vec<JoinHandle<io::Result<Sent>>> = txs
        .into_iter()
        .map(|tx| {
            let meter = Arc::new(TaskAllocs::default());
            let task = send_conn(c, tx, parts.clone(), stop, warmup(conns), meter.clone());
            rts.send.spawn(counted(task, meter))
        })
        .collect();
    let aborts: Vec<_> = senders
        .iter()
        .map(JoinHandle::abort_handle)
        .chain(receivers.iter().map(JoinHandle::abort_handle))
        .collect();
    let all_done = async {
        let mut sent = Vec::with_capacity(senders.len());
        for h in senders {
            sent.push(h.await);
        }
        let mut got = Vec::with_capacity(receivers.len());
        for h in receivers {
            got.push(h.await);
        }
        (sent, got)
    };
    // The timer is made inside the runtime, which owns it.
    let joined = rts
        .send
        .block_on(async { tokio::time::timeout(TURN_LIMIT, all_done).await });
    let Ok((sent, got)) = joined else {
        aborts.iter().for_each(|a| a.abort());
        return Err(TurnError::Stuck {
            contender: c.name(),
            limit: TURN_LIMIT,
        });
    };
    let panicked = |e: tokio::task::JoinError| TurnError::Panicked {
        contender: c.name(),
        what: e.to_string(),
    };
    let mut r = TurnResult {
        messages: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        syscalls: 0,
        allocs: counting.then_some((0, 0)),
        received: Vec::new(),
    };
    let len = parts.expected.len() as u64;
    let mut first_start: Option<Instant> = None;
    let mut last_end: Option<Instant> = None;
    for (conn, (s, g)) in sent.into_iter().zip(got).enumerate() {
        let s = s.map_err(panicked)?.map_err(io_err("sending"))?;
        let g = g.map_err(panicked)?.map_err(io_err("receiving"))?;
        let wrong = |what| TurnError::WrongBytes {
            contender: c.name(),
            conn,
            what,
        };
        g.check.map_err(wrong)?;
        byte_count(g.bytes, s.messages, len).map_err(wrong)?;
        r.messages += s.messages;
        r.bytes += g.bytes;
        r.syscalls += s.syscalls;
        first_start = Some(first_start.map_or(s.start, |a| a.min(s.start)));
        last_end = Some(last_end.map_or(g.end, |b| b.max(g.end)));
        if let Some((a, m)) = &mut r.allocs {
            *a += s.allocs;
            *m += s.counted;
        }
        r.received.push(g.kept);
    }
    if let (Some(a), Some(b)) = (first_start, last_end) {
        r.elapsed = b.saturating_duration_since(a);
    }
    Ok(r)
}

/// `Ok` if a receiver that read `bytes` got exactly `messages` messages
/// of `len` bytes.
pub fn byte_count(bytes: u64, messages: u64, len: u64) -> Result<(), String> {
    if bytes == messages * len {
        return Ok(());
    }
    Err(format!(
        "the receiver read {bytes} bytes, {} were sent ({messages} messages)",
        messages * len
    ))
}

/// Messages per connection before allocations are counted, in a turn of
/// `conns` connections.
pub fn warmup(conns: usize) -> u64 {
    if conns > 1 {
        WARMUP_MANY
    } else {
        WARMUP
    }
}

/// `n` TCP loopback connections (sender, receiver), both non-blocking,
/// `TCP_NODELAY` on the sender (as RPC servers set it).
fn connect(n: usize) -> io::Result<Vec<(TcpStream, TcpStream)>> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let tx = TcpStream::connect(addr)?;
        let (rx, _) = l.accept()?;
        tx.set_nodelay(true)?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        out.push((tx, rx));
    }
    Ok(out)
}

/// What a receiver saw.
struct Received {
    bytes: u64,
    end: Instant,
    /// Every byte matched and whole messages arrived, or what went wrong.
    check: Result<(), String>,
    kept: Vec<u8>,
}

/// Reads until end-of-file, checking every byte.
async fn receive(
    mut sock: tokio::net::TcpStream,
    expected: Arc<[u8]>,
    keep: bool,
) -> io::Result<Received> {
    let mut v = Verifier::new(&expected);
    let mut buf = vec![0u8; RECV_BUF];
    let mut kept = Vec::new();
    loop {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        v.feed(&buf[..n]);
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    let end = Instant::now();
    let whole = v.total() / expected.len() as u64;
    Ok(Received {
        bytes: v.total(),
        end,
        check: v.check(whole),
        kept,
    })
}

/// What a sender counted.
struct Sent {
    /// When the first message went, after the connection's setup.
    start: Instant,
    messages: u64,
    syscalls: u64,
    /// Allocations after warm-up, and the messages sent in that time.
    allocs: u64,
    counted: u64,
}

/// A sender's count of messages and its stop rule.
struct Pace {
    stop: Stop,
    start: Instant,
    warm: u64,
    sent: u64,
    allocs_at_warm: u64,
    meter: Arc<TaskAllocs>,
}

impl Pace {
    /// Call [`begin`](Pace::begin) when the first message is due.
    fn new(stop: Stop, warm: u64, meter: Arc<TaskAllocs>) -> Pace {
        let warm = match stop {
            Stop::After(_) => warm,
            Stop::Messages(n) => warm.min(n / 2),
        };
        Pace {
            stop,
            start: Instant::now(),
            warm,
            sent: 0,
            allocs_at_warm: meter.now(),
            meter,
        }
    }

    /// Starts the clock: the connection is set up.
    fn begin(&mut self) {
        self.start = Instant::now();
    }

    /// True if another message is due (and marks the end of warm-up).
    fn more(&mut self) -> bool {
        let done = match self.stop {
            Stop::After(d) => self.sent >= 2 * self.warm && self.start.elapsed() >= d,
            Stop::Messages(n) => self.sent >= n,
        };
        if !done && self.sent == self.warm {
            self.allocs_at_warm = self.meter.now();
        }
        !done
    }

    /// What the sender counted, with `syscalls`.
    fn counts(&self, syscalls: u64) -> Sent {
        Sent {
            start: self.start,
            messages: self.sent,
            syscalls,
            allocs: self.meter.now() - self.allocs_at_warm,
            counted: self.sent.saturating_sub(self.warm),
        }
    }
}

/// One connection's sender. Dropping the socket on an error closes it, so
/// the receiver always reads end-of-file.
async fn send_conn(
    c: Contender,
    sock: TcpStream,
    parts: Parts,
    stop: Stop,
    warm: u64,
    meter: Arc<TaskAllocs>,
) -> io::Result<Sent> {
    let pace = Pace::new(stop, warm, meter);
    if c.is_tokio() {
        send_tokio(c, tokio::net::TcpStream::from_std(sock)?, &parts, pace).await
    } else {
        send_splicer(c == Contender::Splicer, sock, &parts, pace).await
    }
}

/// The tokio rows, on a `tokio::net::TcpStream`; ends with a shutdown of
/// the sending direction.
async fn send_tokio(
    c: Contender,
    stream: tokio::net::TcpStream,
    parts: &Parts,
    mut pace: Pace,
) -> io::Result<Sent> {
    let mut w = CountingWrite {
        inner: stream,
        writes: 0,
    };
    // Tokio learns the socket is writable from its first event; waiting
    // for it here keeps the first write's poll from counting as an attempt.
    w.inner.writable().await?;
    pace.begin();
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
    splice: bool,
    sock: TcpStream,
    parts: &Parts,
    mut pace: Pace,
) -> io::Result<Sent> {
    let b = Builder::default()
        .splice(splice)
        .drain_timeout(Duration::from_secs(5));
    let mut sp = AsyncSplicer::with_builder(b, sock)?;
    // Counted from here: building sets socket options once.
    let base = sp.stats().syscalls;
    pace.begin();
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
