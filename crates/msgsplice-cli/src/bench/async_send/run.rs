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
//! are counted at the stream
//! ([`CountingWrite`](super::count::CountingWrite)); the `AsyncSplicer` rows
//! report the engine's own count ([`msgsplice::SendStats::syscalls`]).

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use msgsplice::frag::Frag;
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::count::{counted, TaskAllocs};
use super::send::{prepare, send, Sent, Until};
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
    /// [`AsyncSplicer::send`](msgsplice::AsyncSplicer::send) with the default policy.
    Splicer,
    /// [`AsyncSplicer::send`](msgsplice::AsyncSplicer::send) with SPLICE off.
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
    pub(super) header: Arc<[u8]>,
    pub(super) payload: Frag,
    pub(super) trailer: Arc<[u8]>,
    pub(super) expected: Arc<[u8]>,
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
    /// This long after the senders start (every connection set up), and
    /// at least twice the warm-up
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
    /// From the start of the senders (every connection set up) to the last
    /// receiver's end-of-file.
    pub elapsed: Duration,
    /// System calls counted by the senders (see the module documentation).
    pub syscalls: u64,
    /// Allocations while the senders were polled after warm-up, and the
    /// messages they sent in that time; `None` without the counting
    /// allocator.
    pub allocs: Option<(u64, u64)>,
    /// Per connection, the messages it sent.
    pub per_connection: Vec<u64>,
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

    /// The fewest messages one connection sent over the mean per
    /// connection: 1 when every connection sent as many, near 0 when some
    /// got little of the run.
    pub fn fairness(&self) -> f64 {
        let n = self.per_connection.len().max(1) as f64;
        let mean = self.per_connection.iter().sum::<u64>() as f64 / n;
        let min = self.per_connection.iter().copied().min().unwrap_or(0);
        if mean > 0.0 {
            min as f64 / mean
        } else {
            0.0
        }
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
    let fail = Fail(c);
    let pairs = connect(conns).map_err(fail.io("connecting"))?;
    let mut receivers = Vec::with_capacity(conns);
    let mut txs = Vec::with_capacity(conns);
    for (tx, rx) in pairs {
        let rx = {
            let _in = rts.recv.enter();
            tokio::net::TcpStream::from_std(rx).map_err(fail.io("registering a receiver"))?
        };
        receivers.push(rts.recv.spawn(receive(rx, parts.expected.clone(), keep)));
        txs.push(tx);
    }
    let ready = rts.send.block_on(async {
        let setups: Vec<_> = txs
            .into_iter()
            .map(|tx| tokio::spawn(prepare(c, tx)))
            .collect();
        let mut ready = Vec::with_capacity(setups.len());
        for s in setups {
            ready.push(s.await);
        }
        ready
    });
    let mut senders_ready = Vec::with_capacity(conns);
    for r in ready {
        senders_ready.push(
            r.map_err(|e| fail.panicked(e))?
                .map_err(fail.io("setting up"))?,
        );
    }
    let counting = alloc_count::installed();
    let start = Instant::now();
    let until = match stop {
        Stop::After(d) => Until::Deadline(start + d),
        Stop::Messages(n) => Until::Messages(n),
    };
    let senders: Vec<JoinHandle<io::Result<Sent>>> = senders_ready
        .into_iter()
        .map(|sender| {
            let meter = Arc::new(TaskAllocs::default());
            let task = send(
                c,
                sender,
                parts.clone(),
                until,
                warmup(conns),
                meter.clone(),
            );
            rts.send.spawn(counted(task, meter))
        })
        .collect();
    let (sent, got) = join_all(rts, c, senders, receivers)?;
    let mut r = TurnResult {
        messages: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        syscalls: 0,
        allocs: counting.then_some((0, 0)),
        per_connection: Vec::with_capacity(conns),
        received: Vec::with_capacity(conns),
    };
    let len = parts.expected.len() as u64;
    for (conn, (s, g)) in sent.into_iter().zip(got).enumerate() {
        let s = s
            .map_err(|e| fail.panicked(e))?
            .map_err(fail.io("sending"))?;
        let g = g
            .map_err(|e| fail.panicked(e))?
            .map_err(fail.io("receiving"))?;
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
        r.elapsed = r.elapsed.max(g.end.saturating_duration_since(start));
        if let Some((a, m)) = &mut r.allocs {
            *a += s.allocs;
            *m += s.counted;
        }
        r.per_connection.push(s.messages);
        r.received.push(g.kept);
    }
    Ok(r)
}

/// Builds the errors of one contender's turn.
#[derive(Clone, Copy)]
struct Fail(Contender);

impl Fail {
    fn io(self, what: &'static str) -> impl Fn(io::Error) -> TurnError {
        move |source| TurnError::Io {
            contender: self.0.name(),
            what,
            source,
        }
    }

    fn panicked(self, e: tokio::task::JoinError) -> TurnError {
        TurnError::Panicked {
            contender: self.0.name(),
            what: e.to_string(),
        }
    }
}

/// The outcomes of every sender and receiver task, in connection order.
type Joined = (
    Vec<Result<io::Result<Sent>, tokio::task::JoinError>>,
    Vec<Result<io::Result<Received>, tokio::task::JoinError>>,
);

/// Waits for every task, at most [`TURN_LIMIT`]; aborts them all if that
/// passes.
fn join_all(
    rts: &Runtimes,
    c: Contender,
    senders: Vec<JoinHandle<io::Result<Sent>>>,
    receivers: Vec<JoinHandle<io::Result<Received>>>,
) -> Result<Joined, TurnError> {
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
    joined.map_err(|_| {
        aborts.iter().for_each(|a| a.abort());
        TurnError::Stuck {
            contender: c.name(),
            limit: TURN_LIMIT,
        }
    })
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
