//! The RPC server: a sans-IO [`Dispatcher`] and a blocking TCP driver.
//!
//! [`Dispatcher::handle`] takes one complete record and returns the reply
//! to send (or says why the record was dropped). It knows the RPC rules:
//! unknown program, version outside the served range, denied credentials.
//! Each [`Program`] handles its own procedures.
//!
//! [`RpcServer`] is the thin I/O around it: listeners on one or more
//! addresses, one thread per connection (so a slow or hostile client stalls
//! only its own thread), a [`RecordAssembler`] per connection, and a
//! [`ReplyTransport`] per connection for the replies (by default a
//! [`SplicerTransport`](crate::transport::SplicerTransport): one reply, one
//! message, one send). Replies on a connection are sent in the order the
//! calls arrived. [`ServerStats`] counts records, replies and the system
//! calls spent on them.

mod stats;

pub use stats::{ServerStats, StatsSnapshot};

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::BufMut;
use msgsplice::FragCache;
use rustix::event::{PollFd, PollFlags};

use crate::record::{RecordAssembler, RecordError, DEFAULT_MAX_RECORD};
use crate::reply::{Reply, ReplyBuilder, ReplyError};
use crate::rpc::{
    decode_call, put_accepted, put_rejected, AcceptStat, CallError, CallHeader,
    MAX_ACCEPTED_HEADER, MAX_DENIED_REPLY,
};
use crate::transport::{splicer_factory, ReplyTransport};
use stats::ReplyKind;

/// One RPC program (NFS, MOUNT, ...): runs its procedures.
pub trait Program: Send + Sync {
    /// The program number.
    fn program(&self) -> u32;
    /// Lowest and highest version served.
    fn versions(&self) -> (u32, u32);
    /// Runs procedure `call.proc_num` (of a served version) on `args` and
    /// returns the complete reply: success, `PROC_UNAVAIL` or
    /// `GARBAGE_ARGS` (see [`accepted`]).
    fn call(
        &self,
        call: &CallHeader<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError>;
}

/// A builder holding an accepted reply header for `xid` with `stat`, and room
/// for `capacity` more bytes of results. Finish it for error statuses as is.
pub fn accepted(
    cache: &FragCache,
    xid: u32,
    stat: AcceptStat,
    capacity: usize,
) -> Result<ReplyBuilder, ReplyError> {
    let mut b = ReplyBuilder::new(cache, MAX_ACCEPTED_HEADER + capacity)?;
    put_accepted(b.head(), xid, stat);
    Ok(b)
}

/// The complete accepted reply for an error status (no results).
pub fn accepted_error(cache: &FragCache, xid: u32, stat: AcceptStat) -> Result<Reply, ReplyError> {
    accepted(cache, xid, stat, 0)?.finish()
}

/// What became of a record.
#[derive(Debug)]
pub enum Handled {
    /// Send this reply.
    Reply(Reply),
    /// The record was dropped without a reply (it names no call to answer).
    Dropped(CallError),
}

/// Routes calls to programs. Sans-IO: records in, replies out.
pub struct Dispatcher {
    programs: Vec<Arc<dyn Program>>,
    cache: FragCache,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let progs: Vec<u32> = self.programs.iter().map(|p| p.program()).collect();
        f.debug_struct("Dispatcher")
            .field("programs", &progs)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher for `programs`, building replies from `cache`.
    pub fn new(programs: Vec<Arc<dyn Program>>, cache: FragCache) -> Dispatcher {
        Dispatcher { programs, cache }
    }

    /// The fragment cache replies are built from.
    pub fn cache(&self) -> &FragCache {
        &self.cache
    }

    /// Decodes one record and runs it.
    ///
    /// Costs: no heap allocation on this path; the reply head is a bump
    /// allocation from the cache; what the program does is its own.
    pub fn handle(&self, record: &[u8]) -> Result<Handled, ReplyError> {
        let call = match decode_call(record) {
            Ok(c) => c,
            Err(e) => {
                return match e.rejection() {
                    Some((xid, why)) => {
                        let mut b = ReplyBuilder::new(&self.cache, MAX_DENIED_REPLY)?;
                        put_rejected(b.head(), xid, why);
                        Ok(Handled::Reply(b.finish()?))
                    }
                    None => Ok(Handled::Dropped(e)),
                };
            }
        };
        let h = &call.header;
        let Some(prog) = self.programs.iter().find(|p| p.program() == h.prog) else {
            return Ok(Handled::Reply(accepted_error(
                &self.cache,
                h.xid,
                AcceptStat::ProgUnavail,
            )?));
        };
        let (low, high) = prog.versions();
        if h.vers < low || h.vers > high {
            return Ok(Handled::Reply(accepted_error(
                &self.cache,
                h.xid,
                AcceptStat::ProgMismatch { low, high },
            )?));
        }
        Ok(Handled::Reply(prog.call(h, call.args, &self.cache)?))
    }
}

/// Something worth knowing that happened on a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerEvent<'a> {
    /// A connection was accepted.
    Accepted {
        /// The client.
        peer: SocketAddr,
    },
    /// A connection was refused: too many are open.
    Refused {
        /// The client.
        peer: SocketAddr,
    },
    /// A record was dropped without a reply.
    Dropped {
        /// The client.
        peer: SocketAddr,
        /// Why.
        error: &'a CallError,
    },
    /// The server closed a connection because of what the client sent, or
    /// because sending failed.
    Closed {
        /// The client.
        peer: SocketAddr,
        /// Why.
        reason: &'a CloseReason,
    },
    /// The client closed its connection between records.
    Ended {
        /// The client.
        peer: SocketAddr,
    },
}

/// Why the server closed a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The byte stream is not valid record marking (oversize record, ...).
    #[error("bad record marking: {0}")]
    Record(#[from] RecordError),
    /// The client closed the connection inside a record.
    #[error("connection ended inside a record")]
    Truncated,
    /// Reading or sending failed (includes read and send timeouts).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A reply could not be built.
    #[error("reply failed: {0}")]
    Reply(#[from] ReplyError),
}

/// Receives [`ServerEvent`]s.
pub type EventSink = Arc<dyn Fn(&ServerEvent<'_>) + Send + Sync>;

/// Makes the [`ReplyTransport`] for a new connection from (a clone of) its
/// socket. The default is [`splicer_factory`] with
/// [`splicer_settings`](crate::transport::splicer_settings) (SPLICE on);
/// [`crate::transport::socket_factory`] gives plain `writev`/`sendfile`.
pub type TransportFactory =
    Arc<dyn Fn(TcpStream) -> io::Result<Box<dyn ReplyTransport>> + Send + Sync>;

/// Limits and hooks of an [`RpcServer`].
#[derive(Clone)]
pub struct ServerConfig {
    /// Largest record accepted; a larger one closes the connection.
    pub max_record: usize,
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// A connection with nothing to read for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// A reply that cannot be sent for this long closes the connection.
    pub send_timeout: Option<Duration>,
    /// Where events go. The default writes closes and drops to stderr.
    pub events: EventSink,
    /// Makes each connection's reply transport.
    pub transport: TransportFactory,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_record: DEFAULT_MAX_RECORD,
            max_connections: 256,
            idle_timeout: Some(Duration::from_secs(600)),
            send_timeout: Some(Duration::from_secs(60)),
            events: Arc::new(log_to_stderr),
            transport: splicer_factory(crate::transport::splicer_settings()),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("max_record", &self.max_record)
            .field("max_connections", &self.max_connections)
            .field("idle_timeout", &self.idle_timeout)
            .field("send_timeout", &self.send_timeout)
            .finish_non_exhaustive()
    }
}

/// The default event sink: abnormal events to stderr, one line each.
pub fn log_to_stderr(ev: &ServerEvent<'_>) {
    match ev {
        ServerEvent::Refused { peer } => {
            eprintln!("msgsplice-rpc: {peer}: refused, too many connections")
        }
        ServerEvent::Dropped { peer, error } => {
            eprintln!("msgsplice-rpc: {peer}: dropped a record: {error}")
        }
        ServerEvent::Closed { peer, reason } => {
            eprintln!("msgsplice-rpc: {peer}: closed: {reason}")
        }
        _ => {}
    }
}

/// A bound RPC server, not yet serving.
pub struct RpcServer {
    listeners: Vec<TcpListener>,
    dispatcher: Arc<Dispatcher>,
    config: ServerConfig,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("addrs", &self.local_addrs())
            .field("config", &self.config)
            .finish()
    }
}

impl RpcServer {
    /// Binds one listener per address (port 0 picks a free port). Every
    /// listener serves every program of `dispatcher`.
    pub fn bind(
        addrs: &[SocketAddr],
        dispatcher: Dispatcher,
        config: ServerConfig,
    ) -> io::Result<RpcServer> {
        let listeners = addrs
            .iter()
            .map(TcpListener::bind)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(RpcServer {
            listeners,
            dispatcher: Arc::new(dispatcher),
            config,
            stats: Arc::default(),
        })
    }

    /// The server's counters (shared: they keep counting after
    /// [`spawn`](Self::spawn) or during [`serve`](Self::serve)).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The addresses actually bound, in the order given to `bind`.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves on a background thread until the handle is shut down (or
    /// dropped).
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let (wake_rx, wake_tx) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let addrs = self.local_addrs();
        let stats = self.stats.clone();
        let thread = std::thread::Builder::new()
            .name("rpc-accept".into())
            .spawn(move || self.accept_loop(Some(wake_rx)))?;
        Ok(ServerHandle {
            wake: Some(wake_tx),
            thread: Some(thread),
            addrs,
            stats,
        })
    }

    /// Serves on this thread, forever (or until accepting fails).
    pub fn serve(self) -> io::Result<()> {
        self.accept_loop(None)
    }

    fn accept_loop(self, wake: Option<OwnedFd>) -> io::Result<()> {
        for l in &self.listeners {
            l.set_nonblocking(true)?;
        }
        let conns = Arc::new(Connections::default());
        let result = loop {
            let mut fds: Vec<PollFd<'_>> = self
                .listeners
                .iter()
                .map(|l| PollFd::new(l, PollFlags::IN))
                .collect();
            if let Some(w) = &wake {
                fds.push(PollFd::new(w, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => break Err(e.into()),
            }
            if wake.is_some() && !fds[self.listeners.len()].revents().is_empty() {
                break Ok(());
            }
            drop(fds);
            for l in &self.listeners {
                match l.accept() {
                    Ok((stream, peer)) => self.start_connection(stream, peer, &conns),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Out of descriptors and the like: back off, keep serving.
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        };
        conns.close_all();
        result
    }

    fn start_connection(&self, stream: TcpStream, peer: SocketAddr, conns: &Arc<Connections>) {
        let events = &self.config.events;
        if conns.count() >= self.config.max_connections {
            events(&ServerEvent::Refused { peer });
            return;
        }
        let setup = || -> io::Result<(TcpStream, Box<dyn ReplyTransport>)> {
            stream.set_nonblocking(false)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(self.config.idle_timeout)?;
            stream.set_write_timeout(self.config.send_timeout)?;
            let transport = (self.config.transport)(stream.try_clone()?)?;
            Ok((stream.try_clone()?, transport))
        };
        let (control, transport) = match setup() {
            Ok(x) => x,
            Err(e) => {
                events(&ServerEvent::Closed {
                    peer,
                    reason: &CloseReason::Io(e),
                });
                return;
            }
        };
        events(&ServerEvent::Accepted { peer });
        let id = conns.next_id.fetch_add(1, Ordering::Relaxed);
        let dispatcher = self.dispatcher.clone();
        let config = self.config.clone();
        let stats = self.stats.clone();
        let registry = conns.clone();
        // Registered before the thread starts, so its own removal cannot
        // come first.
        let mut map = conns.lock();
        let spawned = std::thread::Builder::new()
            .name(format!("rpc-conn-{id}"))
            .spawn(move || {
                stats.connection();
                let conn = Connection {
                    peer,
                    dispatcher: &dispatcher,
                    config: &config,
                    stats: &stats,
                };
                conn.serve(stream, transport);
                registry.lock().remove(&id);
            });
        match spawned {
            Ok(thread) => {
                map.insert(id, (control, thread));
            }
            Err(e) => events(&ServerEvent::Closed {
                peer,
                reason: &CloseReason::Io(e),
            }),
        }
    }
}

#[derive(Default)]
struct Connections {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, (TcpStream, JoinHandle<()>)>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (TcpStream, JoinHandle<()>)>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().collect();
        for (_, (stream, _)) in &all {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, thread)) in all {
            let _ = thread.join();
        }
    }
}

/// What a connection's thread needs besides its socket and transport.
struct Connection<'a> {
    peer: SocketAddr,
    dispatcher: &'a Dispatcher,
    config: &'a ServerConfig,
    stats: &'a ServerStats,
}

impl Connection<'_> {
    /// Serves one connection until the client leaves or misbehaves.
    fn serve(&self, mut stream: TcpStream, mut transport: Box<dyn ReplyTransport>) {
        let (peer, events) = (self.peer, &self.config.events);
        let mut asm = RecordAssembler::new(self.config.max_record);
        let mut buf = vec![0u8; 64 * 1024];
        let reason = 'conn: loop {
            let n = stream.read(&mut buf);
            self.stats.received(1, 0);
            let n = match n {
                Ok(0) if asm.is_idle() => {
                    events(&ServerEvent::Ended { peer });
                    return;
                }
                Ok(0) => break CloseReason::Truncated,
                // Clients (libnfs among them) often reset rather than close.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && asm.is_idle() => {
                    events(&ServerEvent::Ended { peer });
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break CloseReason::Io(e),
            };
            let mut input = &buf[..n];
            while !input.is_empty() {
                let record = match asm.push(&mut input) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => break 'conn CloseReason::Record(e),
                };
                self.stats.received(0, 1);
                match self.dispatcher.handle(record) {
                    Ok(Handled::Reply(reply)) => {
                        let (kind, bytes) = (ReplyKind::of(reply.data()), reply.wire_len());
                        let before = transport.syscalls();
                        let sent = transport.send_reply(reply);
                        let syscalls = transport.syscalls().wrapping_sub(before);
                        self.stats.replied(kind, bytes, syscalls);
                        if let Err(e) = sent {
                            break 'conn CloseReason::Io(e);
                        }
                    }
                    Ok(Handled::Dropped(error)) => events(&ServerEvent::Dropped {
                        peer,
                        error: &error,
                    }),
                    Err(e) => break 'conn CloseReason::Reply(e),
                }
            }
        };
        events(&ServerEvent::Closed {
            peer,
            reason: &reason,
        });
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// A server running in the background. Dropping it shuts it down.
#[derive(Debug)]
pub struct ServerHandle {
    wake: Option<OwnedFd>,
    thread: Option<JoinHandle<io::Result<()>>>,
    addrs: Vec<SocketAddr>,
    stats: Arc<ServerStats>,
}

impl ServerHandle {
    /// The bound addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The server's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Stops accepting, closes every connection, waits for their threads,
    /// and returns the accept loop's result.
    pub fn shutdown(mut self) -> io::Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> io::Result<()> {
        if let Some(w) = self.wake.take() {
            let _ = rustix::io::write(&w, &[1]);
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("accept thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Writes `n` zero words; handy for empty optional fields.
pub(crate) fn put_false<B: BufMut>(b: &mut B, n: usize) {
    for _ in 0..n {
        b.put_u32(0);
    }
}
