//! The tokio driver (feature `tokio`): [`TokioServer`] and its
//! [`TokioHandle`]. Thousands of open connections cost no thread each, and
//! a flood of idle or half-open connections cannot lock a new client out.
//!
//! # Tasks
//!
//! The server owns a multi-thread tokio runtime (`worker_threads`, by
//! default one per CPU). One task per listener accepts; one task per
//! connection serves it: it reads with tokio, feeds the bytes to its
//! [`Session`](crate::server::Session) (the sans-IO core, unchanged) and
//! sends each reply as one [`msgsplice::Msg`] with its
//! [`msgsplice::AsyncSplicer`] before dispatching the next call, so the
//! replies leave in call order. A READ reply is the same message as in the
//! blocking driver: head `sendmsg(MSG_MORE)`, then `sendfile` of the file
//! range from the non-blocking socket as it has room; the engine waits for
//! room through its own epoll instance, registered with the reactor, and
//! reaps zero-copy completions while the connection waits for input.
//!
//! The dispatcher runs on the worker thread, in the task: its blocking
//! calls (`open`, `fstat`, `getdents` of the export) are page-cache
//! lookups on a local file system, shorter than one `sendfile` of a READ.
//! Moving them to `spawn_blocking` would cost a hand-off and an
//! allocation per call. `tests/tokio_server.rs` measures it: NULL calls
//! of a second client while a first streams 1 MiB READs, on one worker,
//! beside the threaded driver; in `docs/benchmarks.md` the two tails are
//! alike, both set by CPU contention rather than by the dispatcher.
//!
//! # Limits, and what a connection costs
//!
//! - Connections: at most `max_connections` (default 10 000), capped by
//!   the descriptor limit, whose soft value is raised to the hard one at
//!   start (two descriptors per connection: its socket, and its engine's
//!   epoll instance from its first request on; 256 kept for the rest).
//! - An idle connection holds its socket, a task (its state machine,
//!   under 3 KiB), a session and a registry entry, and no read buffer:
//!   the buffer (`read_buffer`, 64 KiB) is allocated on the first bytes
//!   and given back after a second without input. The send engine (and
//!   its epoll descriptor) is made for the first request, so a connection
//!   that never sends one costs a single descriptor.
//! - Request bytes buffered per connection: at most one read buffer and
//!   one partial record (`max_record`). Replies in flight per connection:
//!   one, as the task sends a reply before it dispatches the next call. A
//!   client that does not read its replies fills its socket; its task
//!   waits for room and reads nothing more, and `send_timeout` closes it.
//!   It stalls only itself.
//! - `idle_timeout` (300 s) closes a connection that made no progress
//!   (no byte read, no reply sent) for that long.
//!
//! # Eviction
//!
//! When a new connection arrives with the table full, or `accept` (or the
//! epoll instance of a connection's send engine) fails because the
//! process or the system is out of descriptors, one connection not busy
//! with a reply is evicted, in this order: first those that completed no
//! request within `first_request_grace` (5 s) of being accepted, oldest
//! first; then the others by their last progress, the longest quiet
//! first. The victim's slot is free at once; its task is woken from its
//! wait for input and closes (a victim that started a request in the
//! meantime finishes its reply first). Only if every connection is busy
//! sending a reply is the new one closed, reported as
//! [`ServerEvent::Refused`]. Finding a victim is one pass over the table,
//! paid only when it is full.
//!
//! # Shutdown
//!
//! [`TokioHandle::shutdown`] stops the accept tasks (the listeners
//! close), then asks every connection to finish: each handles the
//! requests that have arrived (in its buffer and in the socket, which it
//! asks directly, as the reactor may not have reported them yet), sends
//! their replies, and closes when it would have to wait for more input.
//! Connections still open after `shutdown_timeout` are aborted.
//! [`TokioServer::serve_until_signal`] does the same on SIGINT or SIGTERM.
//!
//! # What a READ costs
//!
//! As in the blocking driver: one `recv` of the request (often several
//! requests at once), the dispatcher's `fstat`, then `sendmsg(MSG_MORE)`
//! and `sendfile`, and no heap allocation once warm
//! (`tests/tokio_alloc.rs` counts the whole process). Waiting costs one
//! `epoll_wait` of the reactor per wake-up, and one of the engine's epoll
//! instance when the socket was full. A file on a file system that cannot
//! splice is copied through a buffer made for that reply.

mod config;
mod connection;
mod limits;
mod registry;

pub use config::TokioConfig;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{Dispatcher, RpcServer, ServerEvent, ServerStats, StatsSnapshot};
use registry::Registry;

/// The accept queue asked of each listener.
const LISTEN_BACKLOG: i32 = 4096;

/// What every task of a server shares.
struct Shared {
    dispatcher: Arc<Dispatcher>,
    stats: Arc<ServerStats>,
    config: TokioConfig,
    registry: Registry,
    /// `config.max_connections` capped by the descriptor limit.
    max_connections: usize,
}

/// A bound RPC server for the tokio driver, not yet serving.
pub struct TokioServer {
    listeners: Vec<TcpListener>,
    dispatcher: Arc<Dispatcher>,
    stats: Arc<ServerStats>,
    config: TokioConfig,
}

impl std::fmt::Debug for TokioServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioServer")
            .field("addrs", &self.local_addrs())
            .field("config", &self.config)
            .finish()
    }
}

impl TokioServer {
    /// Binds one listener per address (port 0 picks a free port). Every
    /// listener serves every program of `dispatcher`.
    pub fn bind(
        addrs: &[SocketAddr],
        dispatcher: Dispatcher,
        config: TokioConfig,
    ) -> io::Result<TokioServer> {
        let listeners = addrs
            .iter()
            .map(TcpListener::bind)
            .collect::<io::Result<Vec<_>>>()?;
        Ok(TokioServer {
            listeners,
            dispatcher: Arc::new(dispatcher),
            stats: Arc::default(),
            config,
        })
    }

    /// The listeners, dispatcher and counters of a bound blocking server
    /// (an [`NfsServer`](crate::NfsServer)'s, say), served by this driver
    /// instead with `config`. An io_uring [`SendEngine`](crate::transport::SendEngine)
    /// in its blocking configuration is not used: this driver has none
    /// (see the variant's documentation), and a warning to `config.events`
    /// says so.
    pub fn from_rpc(rpc: RpcServer, config: TokioConfig) -> TokioServer {
        let (listeners, dispatcher, stats, engine) = rpc.into_parts();
        if !matches!(engine, crate::transport::SendEngine::Sendmsg) {
            (config.events)(&crate::server::ServerEvent::Warning {
                message: &format!(
                    "the tokio driver sends with sendmsg (AsyncSplicer); the {} engine of the \
                     blocking configuration is not used (it needs the threads driver)",
                    engine.name()
                ),
            });
        }
        TokioServer {
            listeners,
            dispatcher,
            stats,
            config,
        }
    }

    /// The server's counters (shared: they keep counting once serving).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Starts the runtime and serves on it until the handle is shut down
    /// (or dropped). Raises the soft descriptor limit to the hard one.
    ///
    /// Fails if the runtime cannot be built or a listener cannot be
    /// registered with it.
    pub fn spawn(self) -> io::Result<TokioHandle> {
        let nofile = limits::raise_nofile();
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.config.worker_threads {
            builder.worker_threads(n.max(1));
        }
        let runtime = builder.enable_all().thread_name("rpc-worker").build()?;
        let addrs = self.local_addrs();
        let shared = Arc::new(Shared {
            max_connections: limits::connection_cap(self.config.max_connections, nofile),
            registry: Registry::new(self.config.first_request_grace),
            dispatcher: self.dispatcher,
            stats: self.stats.clone(),
            config: self.config,
        });
        let (stop, stopped) = watch::channel(false);
        let mut accepts = Vec::new();
        for l in self.listeners {
            l.set_nonblocking(true)?;
            // A burst of connections waits in the kernel rather than
            // having its SYNs dropped (the standard library listens with a
            // backlog of 128; Linux lets a listening socket raise it, and
            // caps it at `net.core.somaxconn`).
            rustix::net::listen(&l, LISTEN_BACKLOG)?;
            let l = {
                let _in_runtime = runtime.enter();
                tokio::net::TcpListener::from_std(l)?
            };
            accepts.push(runtime.spawn(accept_loop(shared.clone(), l, stopped.clone())));
        }
        Ok(TokioHandle {
            runtime: Some(runtime),
            stop,
            accepts,
            shared,
            addrs,
        })
    }

    /// Serves until the process receives SIGINT or SIGTERM, then shuts
    /// down gracefully (see [`TokioHandle::shutdown`]).
    pub fn serve_until_signal(self) -> io::Result<ShutdownReport> {
        let handle = self.spawn()?;
        let Some(runtime) = &handle.runtime else {
            return Ok(ShutdownReport::default());
        };
        runtime.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate())?;
            let mut int = signal(SignalKind::interrupt())?;
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            Ok::<(), io::Error>(())
        })?;
        handle.shutdown()
    }
}

/// Accepts connections on `listener` until `stopped` turns true.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
) {
    /// A pause after an accept error that evicting cannot cure.
    const BACKOFF: Duration = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => admit(&shared, stream, peer),
            Err(e) if out_of_descriptors(&e) => {
                // Close one connection so the next accept can succeed;
                // the pause lets the victim's task close its socket.
                shared.registry.evict_one();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(_) => tokio::time::sleep(BACKOFF).await,
        }
    }
}

/// True for the `accept` errors of a process or system out of descriptors.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE)
    )
}

/// Serves a new connection, evicting another if the table is full.
fn admit(shared: &Arc<Shared>, stream: tokio::net::TcpStream, peer: SocketAddr) {
    let events = &shared.config.events;
    if shared.registry.len() >= shared.max_connections && !shared.registry.evict_one() {
        events(&ServerEvent::Refused { peer });
        return;
    }
    // Replies are whole messages; Nagle would only delay their last bytes.
    let _ = stream.set_nodelay(true);
    events(&ServerEvent::Accepted { peer });
    let task_shared = shared.clone();
    shared.registry.register(move |id, state| {
        tokio::spawn(connection::serve(task_shared, id, state, stream, peer)).abort_handle()
    });
}

/// How a shutdown went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Connections that had not finished within the shutdown timeout and
    /// were aborted.
    pub aborted: usize,
}

/// A tokio server running in the background. Dropping it shuts it down.
///
/// Shutting down blocks the calling thread, so it must not be done (or
/// the handle dropped) on a thread of another tokio runtime.
#[derive(Debug)]
pub struct TokioHandle {
    runtime: Option<Runtime>,
    stop: watch::Sender<bool>,
    accepts: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("connections", &self.registry.len())
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl TokioHandle {
    /// The bound addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The server's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Connections being served now.
    pub fn connections(&self) -> usize {
        self.shared.registry.len()
    }

    /// The connection limit in force: the configured one, capped by the
    /// descriptor limit.
    pub fn max_connections(&self) -> usize {
        self.shared.max_connections
    }

    /// Stops accepting, lets every connection finish the requests that
    /// have arrived and send their replies, aborts what is left after the
    /// shutdown timeout, and stops the runtime.
    pub fn shutdown(mut self) -> io::Result<ShutdownReport> {
        Ok(self.stop())
    }

    fn stop(&mut self) -> ShutdownReport {
        let Some(runtime) = self.runtime.take() else {
            return ShutdownReport::default();
        };
        let _ = self.stop.send(true);
        let accepts = std::mem::take(&mut self.accepts);
        let shared = self.shared.clone();
        let aborted = runtime.block_on(async move {
            for a in accepts {
                let _ = a.await;
            }
            shared.registry.shut_down_all();
            let limit = shared.config.shutdown_timeout;
            match tokio::time::timeout(limit, shared.registry.wait_empty()).await {
                Ok(()) => 0,
                Err(_) => shared.registry.abort_all(),
            }
        });
        runtime.shutdown_timeout(Duration::from_secs(1));
        ShutdownReport { aborted }
    }
}

impl Drop for TokioHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
