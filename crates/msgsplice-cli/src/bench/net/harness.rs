//! Running a strategy over a real connection: a sender loop on the calling
//! thread, a receiver thread that reads everything, and the counts.
//!
//! The sender runs on the calling thread so that the counting allocator's
//! per-thread counter sees exactly the sending loop: allocations are counted
//! from the [`WARMUP`]-th message on (steady state) to the last. The time of
//! a run is from the first send to the moment the receiver reads
//! end-of-file, so bytes still queued in socket buffers are not counted as
//! delivered.
//!
//! The receiver compares every byte against the message it expects (the
//! stream is the same message repeated), and its count against what was
//! sent; a mismatch fails the run with the first bad offset.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::strategy::{Message, SendStrategy, Sock, SyscallCount};
use crate::alloc_count;

/// Messages sent before allocations start being counted.
pub const WARMUP: u64 = 8;
/// A timed run sends at least this many messages.
pub const MIN_MESSAGES: u64 = 32;
/// Receive buffer size.
const RECV_BUF: usize = 256 << 10;

/// Which kind of stream socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP over 127.0.0.1, `TCP_NODELAY` set on the sender (as RPC servers
    /// do).
    Tcp,
    /// A Unix stream socket pair.
    Unix,
}

impl Transport {
    /// A fresh connection: the sending end and the receiving end.
    pub fn connect(self) -> io::Result<(Box<dyn Sock>, Box<dyn Read + Send>)> {
        match self {
            Transport::Tcp => {
                let l = TcpListener::bind("127.0.0.1:0")?;
                let tx = TcpStream::connect(l.local_addr()?)?;
                let (rx, _) = l.accept()?;
                tx.set_nodelay(true)?;
                Ok((Box::new(tx), Box::new(rx)))
            }
            Transport::Unix => {
                let (tx, rx) = UnixStream::pair()?;
                Ok((Box::new(tx), Box::new(rx)))
            }
        }
    }
}

/// When the sender stops.
#[derive(Clone, Copy, Debug)]
pub enum Stop {
    /// After this long (and at least [`MIN_MESSAGES`]).
    After(Duration),
    /// After exactly this many messages.
    Messages(u64),
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// Messages sent.
    pub messages: u64,
    /// Bytes the receiver read.
    pub bytes: u64,
    /// First send to the receiver's end-of-file.
    pub elapsed: Duration,
    /// System calls the strategy reported (`send` and `finish`).
    pub syscalls: SyscallCount,
    /// Heap allocations per message on the sending thread in steady state;
    /// `None` if the counting allocator is not installed.
    pub allocs_per_msg: Option<f64>,
}

impl RunResult {
    /// Messages per second.
    pub fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    /// 10^9 bytes per second.
    pub fn gbps(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e9
    }

    /// System calls per message.
    pub fn syscalls_per_msg(&self) -> f64 {
        self.syscalls.0 as f64 / self.messages as f64
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A socket or file call failed.
    #[error("{strategy}: {source}")]
    Io {
        /// The strategy's name.
        strategy: String,
        /// The error.
        source: io::Error,
    },
    /// The receiver read something other than what was sent.
    #[error("{strategy}: {what}")]
    WrongBytes {
        /// The strategy's name.
        strategy: String,
        /// What differed.
        what: String,
    },
}

/// Checks a byte stream that should be `expected` repeated.
pub struct Verifier<'a> {
    expected: &'a [u8],
    pos: usize,
    total: u64,
    first_bad: Option<u64>,
}

impl<'a> Verifier<'a> {
    /// A verifier of repetitions of `expected` (which must not be empty).
    pub fn new(expected: &'a [u8]) -> Verifier<'a> {
        assert!(!expected.is_empty(), "a message has at least one byte");
        Verifier {
            expected,
            pos: 0,
            total: 0,
            first_bad: None,
        }
    }

    /// Checks the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let k = data.len().min(self.expected.len() - self.pos);
            let want = &self.expected[self.pos..self.pos + k];
            if self.first_bad.is_none() && data[..k] != *want {
                let i = data.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
                self.first_bad = Some(self.total + i as u64);
            }
            self.pos = (self.pos + k) % self.expected.len();
            self.total += k as u64;
            data = &data[k..];
        }
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// `Ok` if every byte matched and exactly `messages` whole messages
    /// arrived; otherwise what went wrong.
    pub fn check(&self, messages: u64) -> Result<(), String> {
        if let Some(at) = self.first_bad {
            return Err(format!(
                "the receiver read a wrong byte at stream offset {at}"
            ));
        }
        let want = messages * self.expected.len() as u64;
        if self.total != want {
            return Err(format!(
                "the receiver read {} bytes, {} were sent ({messages} messages)",
                self.total, want
            ));
        }
        Ok(())
    }
}

/// Where the receiver puts what it reads.
pub trait Sink: Send {
    /// The next bytes of the stream.
    fn feed(&mut self, data: &[u8]);
}

impl Sink for Verifier<'_> {
    fn feed(&mut self, data: &[u8]) {
        Verifier::feed(self, data)
    }
}

/// Keeps everything (for tests).
impl Sink for Vec<u8> {
    fn feed(&mut self, data: &[u8]) {
        self.extend_from_slice(data)
    }
}

/// Sends `msg` repeatedly with `strategy` over a fresh connection until
/// `stop`, hands every received chunk to `sink` on a receiver thread, and
/// returns the counts with the sink.
pub fn drive<S: Sink>(
    strategy: &mut dyn SendStrategy,
    transport: Transport,
    msg: &Message<'_>,
    stop: Stop,
    mut sink: S,
) -> Result<(RunResult, S), RunError> {
    let name = strategy.name().to_string();
    let io_err = |source| RunError::Io {
        strategy: name.clone(),
        source,
    };
    let (tx, mut rx) = transport.connect().map_err(io_err)?;
    let counting = alloc_count::installed();
    let warm = match stop {
        Stop::After(_) => WARMUP,
        Stop::Messages(n) => WARMUP.min(n / 2),
    };
    std::thread::scope(|s| {
        let receiver = s.spawn(move || -> io::Result<(S, u64, Instant)> {
            let mut buf = vec![0u8; RECV_BUF];
            let mut total = 0u64;
            loop {
                match rx.read(&mut buf) {
                    Ok(0) => return Ok((sink, total, Instant::now())),
                    Ok(n) => {
                        total += n as u64;
                        sink.feed(&buf[..n]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        });
        let sent = send_loop(strategy, &*tx, msg, stop, warm, counting);
        // Shut down even after an error, and close, so that the receiver
        // reads end-of-file whatever happened.
        let shut = tx.shutdown_write();
        drop(tx);
        let received = receiver.join().expect("the receiver thread does not panic");
        let (syscalls, messages, allocs, start) = sent.map_err(io_err)?;
        shut.map_err(io_err)?;
        let (sink, bytes, end) = received.map_err(io_err)?;
        let allocs_per_msg =
            (counting && messages > warm).then(|| allocs as f64 / (messages - warm) as f64);
        Ok((
            RunResult {
                messages,
                bytes,
                elapsed: end.saturating_duration_since(start),
                syscalls,
                allocs_per_msg,
            },
            sink,
        ))
    })
}

/// The sender's loop. Returns (system calls, messages, allocations counted
/// after warm-up, start time).
fn send_loop(
    strategy: &mut dyn SendStrategy,
    sock: &dyn Sock,
    msg: &Message<'_>,
    stop: Stop,
    warm: u64,
    counting: bool,
) -> io::Result<(SyscallCount, u64, u64, Instant)> {
    strategy.connected(sock)?;
    let start = Instant::now();
    let mut calls = SyscallCount(0);
    let mut messages = 0u64;
    let mut allocs_at_warm = alloc_count::thread_allocs();
    loop {
        let done = match stop {
            Stop::After(d) => messages >= MIN_MESSAGES && start.elapsed() >= d,
            Stop::Messages(n) => messages >= n,
        };
        if done {
            break;
        }
        if messages == warm {
            allocs_at_warm = alloc_count::thread_allocs();
        }
        calls += strategy.send(sock, msg)?;
        messages += 1;
    }
    let allocs = if counting {
        alloc_count::thread_allocs() - allocs_at_warm
    } else {
        0
    };
    calls += strategy.finish(sock)?;
    Ok((calls, messages, allocs, start))
}

/// One timed run that verifies every received byte against `expected`
/// (the message's bytes).
pub fn run_verified(
    strategy: &mut dyn SendStrategy,
    transport: Transport,
    msg: &Message<'_>,
    expected: &[u8],
    stop: Stop,
) -> Result<RunResult, RunError> {
    let (r, v) = drive(strategy, transport, msg, stop, Verifier::new(expected))?;
    v.check(r.messages).map_err(|what| RunError::WrongBytes {
        strategy: strategy.name().to_string(),
        what,
    })?;
    Ok(r)
}
