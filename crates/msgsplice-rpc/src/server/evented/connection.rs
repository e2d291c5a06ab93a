//! One connection's task: reads into its [`Session`], sends each reply
//! with its [`AsyncSplicer`] before handling the next record, and waits
//! for input where eviction, shutdown, timeouts and zero-copy completions
//! can reach it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use msgsplice::{AsyncSplicer, Msg};
use tokio::net::TcpStream;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use super::registry::{ConnState, Phase, Stop};
use super::Shared;
use crate::reply::{FileRange, Reply, ReplyData};
use crate::server::{CloseReason, Handled, ReplySize, ServerEvent, Session};
use crate::transport::{sendfile_unsupported, COPY_CHUNK};

/// How long an idle connection keeps its read buffer: a client between
/// two requests of a transfer keeps it, one that has gone quiet gives it
/// back.
const KEEP_WARM: Duration = Duration::from_secs(1);

/// The engine a connection sends with, over its tokio stream (read by
/// tokio, written only through the engine).
type Sender<'s> = AsyncSplicer<&'s TcpStream>;

/// Serves one accepted connection until the client leaves, misbehaves,
/// or is evicted or shut down; reports how it ended. Leaves the registry
/// when done, or when the task is aborted.
pub(super) async fn serve(
    shared: Arc<Shared>,
    id: u64,
    state: Arc<ConnState>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _leave = Leave {
        shared: &shared,
        id,
    };
    let session = Session::new(
        shared.dispatcher.clone(),
        shared.stats.clone(),
        shared.config.max_record,
        peer,
    );
    let mut conn = Connection {
        shared: &shared,
        state: &state,
        peer,
        session,
        buf: Vec::new(),
    };
    let mut sender = None;
    let result = conn.run(&stream, &mut sender).await;
    if let Some(sender) = sender {
        // Zero-copy sends still held by the kernel, for at most the
        // engine's drain timeout.
        sender.close().await;
    }
    let events = &shared.config.events;
    match result {
        Ok(()) => events(&ServerEvent::Ended { peer }),
        Err(reason) => events(&ServerEvent::Closed {
            peer,
            reason: &reason,
        }),
    }
}

/// Removes the connection from the registry when its task ends, however.
struct Leave<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id);
    }
}

/// What a wait for input decided.
enum Next {
    /// Input is ready: read.
    Read,
    /// Close the connection cleanly (shutdown).
    Close,
}

struct Connection<'a> {
    shared: &'a Shared,
    state: &'a ConnState,
    peer: SocketAddr,
    session: Session,
    /// Empty while the connection is cold (see [`KEEP_WARM`]).
    buf: Vec<u8>,
}

impl Connection<'_> {
    /// Reads, handles and replies until the stream ends between records
    /// (`Ok`), a shutdown closes it (`Ok`), or it must be closed.
    async fn run<'s>(
        &mut self,
        stream: &'s TcpStream,
        sender: &mut Option<Sender<'s>>,
    ) -> Result<(), CloseReason> {
        loop {
            if self.buf.is_empty() {
                match self.wait(stream, sender.as_mut()).await? {
                    Next::Read if input_waiting(stream)? => {
                        self.buf = vec![0; self.shared.config.read_buffer.max(1)];
                    }
                    Next::Read => continue,
                    Next::Close => return Ok(()),
                }
            }
            let n = stream.try_read(&mut self.buf);
            self.session.stats().count_read();
            let n = match n {
                Ok(0) => return self.session.end_of_stream(),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    match self.wait(stream, sender.as_mut()).await? {
                        Next::Read => continue,
                        Next::Close => return Ok(()),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Clients (libnfs among them) often reset rather than close.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.session.is_idle() => {
                    return Ok(())
                }
                Err(e) => return Err(CloseReason::Io(e)),
            };
            // Busy from here: never its own eviction victim.
            self.state
                .progress(self.shared.registry.now_ms(), Phase::Busy);
            let sender = match sender {
                Some(s) => s,
                None => sender.insert(self.new_sender(stream).await?),
            };
            self.handle(n, sender).await?;
        }
    }

    /// The connection's send engine, made on its first request (an idle
    /// connection does without its epoll descriptor). Out of descriptors,
    /// it evicts another connection to get one, as `accept` does.
    async fn new_sender<'s>(&self, stream: &'s TcpStream) -> io::Result<Sender<'s>> {
        const TRIES: usize = 8;
        for _ in 1..TRIES {
            match AsyncSplicer::with_builder(self.shared.config.splicer.clone(), stream) {
                Ok(s) => return Ok(s),
                Err(e) => {
                    let e = io::Error::from(e);
                    if !super::out_of_descriptors(&e) || !self.shared.registry.evict_one() {
                        return Err(e);
                    }
                    // The victim's task closes its socket when it runs.
                    sleep(Duration::from_millis(1)).await;
                }
            }
        }
        AsyncSplicer::with_builder(self.shared.config.splicer.clone(), stream)
            .map_err(io::Error::from)
    }

    /// Handles every record completed by the first `n` bytes of the read
    /// buffer, sending each reply before dispatching the next call.
    async fn handle(&mut self, n: usize, sender: &mut Sender<'_>) -> Result<(), CloseReason> {
        let buf = std::mem::take(&mut self.buf);
        let result = self.handle_records(&buf[..n], sender).await;
        self.buf = buf;
        let phase = if self.session.is_idle() {
            Phase::Idle
        } else {
            Phase::InRecord
        };
        self.state.set_phase(phase);
        result
    }

    async fn handle_records(
        &mut self,
        mut input: &[u8],
        sender: &mut Sender<'_>,
    ) -> Result<(), CloseReason> {
        while let Some(handled) = self.session.receive(&mut input)? {
            match handled {
                Handled::Reply(reply) => self.send(sender, reply).await?,
                Handled::Dropped(error) => (self.shared.config.events)(&ServerEvent::Dropped {
                    peer: self.peer,
                    error: &error,
                }),
            }
            self.state
                .progress(self.shared.registry.now_ms(), Phase::Busy);
        }
        Ok(())
    }

    /// Sends one reply as one message, within the send timeout, and
    /// counts it with the system calls it took.
    async fn send(&self, sender: &mut Sender<'_>, reply: Reply) -> Result<(), CloseReason> {
        let size = ReplySize::of(&reply);
        let before = sender.stats().syscalls;
        let (head, data, tail) = reply.into_parts();
        let head_len = head.len() as u64;
        let mut msg = crate::reply::reply_msg(head, &data, &tail);
        let limit = self.shared.config.send_timeout;
        let sent = match timeout(limit, sender.send(&mut msg)).await {
            // A file system without splice support fails `sendfile` with
            // the head already sent: go on from the exact byte by copying,
            // as the blocking transport does.
            Ok(Err(e)) => match &data {
                ReplyData::File(r)
                    if msg.sent() >= head_len
                        && msg.sent() - head_len < r.len
                        && sendfile_unsupported(&e) =>
                {
                    let done = msg.sent() - head_len;
                    timeout(limit, copy_file(sender, r, done, tail.as_bytes())).await
                }
                _ => Ok(Err(io::Error::from(e))),
            },
            other => other.map(|r| r.map(|_| ()).map_err(io::Error::from)),
        };
        let syscalls = sender.stats().syscalls.wrapping_sub(before);
        self.session.stats().count_reply(size, syscalls);
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(CloseReason::Io(e)),
            Err(_) => Err(CloseReason::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no reply within the send timeout",
            ))),
        }
    }

    /// Waits until input is ready, reaping zero-copy completions and
    /// giving the read buffer back meanwhile. Ends the connection when it
    /// is evicted, shut down, or idle past the idle timeout.
    async fn wait(
        &mut self,
        stream: &TcpStream,
        mut sender: Option<&mut Sender<'_>>,
    ) -> Result<Next, CloseReason> {
        let warm_until = Instant::now() + KEEP_WARM;
        loop {
            match self.state.stop() {
                Stop::No => {}
                // Requests that have arrived are answered first. The socket
                // is asked directly: tokio may not have seen them yet.
                Stop::Shutdown if bytes_queued(stream) => {
                    stream.readable().await?;
                    return Ok(Next::Read);
                }
                Stop::Shutdown => return Ok(Next::Close),
                Stop::Evicted => {
                    return Err(CloseReason::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "evicted to make room for a new connection",
                    )))
                }
            }
            let idle_for = self
                .shared
                .registry
                .now_ms()
                .saturating_sub(self.state.progress_ms());
            let idle_left = self
                .shared
                .config
                .idle_timeout
                .saturating_sub(Duration::from_millis(idle_for));
            let in_flight = sender.as_ref().is_some_and(|s| s.in_flight() > 0);
            let warm = !self.buf.is_empty();
            tokio::select! {
                biased;
                () = self.state.wake.notified() => {}
                ready = stream.readable() => {
                    ready?;
                    return Ok(Next::Read);
                }
                reaped = reap(&mut sender), if in_flight => {
                    reaped?;
                }
                () = sleep_until(warm_until), if warm => self.buf = Vec::new(),
                () = sleep(idle_left) => {
                    return Err(CloseReason::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle past the idle timeout",
                    )));
                }
            }
        }
    }
}

/// True if the stream has bytes (or its end, or an error) to read: the
/// read buffer is allocated only then. tokio reports a new stream readable
/// before anything arrives, so a cold connection asks the socket (one
/// `recv(MSG_PEEK)` of a byte), and a false alarm clears tokio's
/// readiness.
fn input_waiting(stream: &TcpStream) -> io::Result<bool> {
    use rustix::net::{recv, RecvFlags};
    let mut probe = [0u8; 1];
    let peeked = stream.try_io(tokio::io::Interest::READABLE, || {
        recv(stream, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT).map_err(io::Error::from)
    });
    match peeked {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(false),
        // The read reports it.
        Err(_) => Ok(true),
    }
}

/// The rest of a file range that `sendfile` refused, from byte `done` of
/// it, read and sent in chunks; then the tail. Allocates a 64 KiB buffer
/// per reply: only for files on a file system that cannot splice.
async fn copy_file(
    sender: &mut Sender<'_>,
    range: &FileRange,
    mut done: u64,
    tail: &[u8],
) -> io::Result<()> {
    let mut bounce = vec![0u8; COPY_CHUNK];
    while done < range.len {
        let n = range.read_chunk(done, &mut bounce)?;
        done += n as u64;
        let mut msg = Msg::new();
        msg.push(&bounce[..n]);
        if done == range.len {
            msg.push(tail);
        }
        sender.send(&mut msg).await.map_err(io::Error::from)?;
    }
    Ok(())
}

/// True if the socket's receive queue holds bytes (or the stream's end),
/// whatever tokio's readiness says. One `recv(MSG_PEEK)` of a byte.
fn bytes_queued(stream: &TcpStream) -> bool {
    use rustix::net::{recv, RecvFlags};
    let mut probe = [0u8; 1];
    recv(stream, &mut probe, RecvFlags::PEEK | RecvFlags::DONTWAIT).is_ok()
}

/// Reaps the sender's zero-copy completions (the `select!` branch is only
/// enabled when it has some in flight).
async fn reap(sender: &mut Option<&mut Sender<'_>>) -> io::Result<()> {
    match sender {
        Some(s) => s.reap().await.map(|_| ()).map_err(io::Error::from),
        None => Ok(()),
    }
}
