//! The blocking TCP driver: [`RpcServer`] and its [`ServerHandle`].
//!
//! Listeners on one or more addresses, polled by one accept thread; one
//! thread per connection (so a slow or hostile client stalls only its own
//! thread), each running a [`Session`] over its socket and sending the
//! replies through its own [`ReplyTransport`] (by default a
//! [`SplicerTransport`](crate::transport::SplicerTransport): one reply, one
//! message, one send; with [`SendEngine`](crate::transport::SendEngine)
//! `Uring`, a `UringTransport` over a ring of its own), in the order the
//! calls arrived. Socket timeouts
//! close idle or stuck connections; connections over the limit are
//! accepted and closed at once.

mod config;
mod connection;

pub use config::{ServerConfig, TransportFactory};

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::server::{CloseReason, Dispatcher, ServerEvent, ServerStats, Session, StatsSnapshot};
use crate::transport::ReplyTransport;
use connection::{Connection, Connections};

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

    /// The listeners, dispatcher and counters, for another driver to
    /// serve, and the send engine that was asked for (which that driver
    /// may not offer).
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(
        self,
    ) -> (
        Vec<TcpListener>,
        Arc<Dispatcher>,
        Arc<ServerStats>,
        crate::transport::SendEngine,
    ) {
        (
            self.listeners,
            self.dispatcher,
            self.stats,
            self.config.engine,
        )
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

    /// Accepts connections until `wake` becomes readable (or polling
    /// fails), then closes every connection and waits for their threads.
    /// The send engine is chosen first (a probe, for io_uring).
    fn accept_loop(mut self, wake: Option<OwnedFd>) -> io::Result<()> {
        let configured = self.config.transport.clone();
        self.config.transport = self.config.engine.factory(configured, &self.config.events);
        for l in &self.listeners {
            l.set_nonblocking(true)?;
        }
        let conns = Arc::new(Connections::default());
        let result = loop {
            match self.wait_for_clients(wake.as_ref()) {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
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

    /// Waits until a listener is readable (`true`) or `wake` is (`false`:
    /// time to stop).
    fn wait_for_clients(&self, wake: Option<&OwnedFd>) -> io::Result<bool> {
        let mut fds: Vec<PollFd<'_>> = self
            .listeners
            .iter()
            .map(|l| PollFd::new(l, PollFlags::IN))
            .collect();
        if let Some(w) = wake {
            fds.push(PollFd::new(w, PollFlags::IN));
        }
        loop {
            match rustix::event::poll(&mut fds, None) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let woken = wake.is_some() && !fds[self.listeners.len()].revents().is_empty();
        Ok(!woken)
    }

    /// Starts serving an accepted connection on its own thread, unless too
    /// many are open or the socket cannot be set up.
    fn start_connection(&self, stream: TcpStream, peer: SocketAddr, conns: &Arc<Connections>) {
        let events = &self.config.events;
        if conns.count() >= self.config.max_connections {
            events(&ServerEvent::Refused { peer });
            return;
        }
        let (control, transport) = match self.set_up(&stream) {
            Ok(x) => x,
            Err(e) => {
                let reason = CloseReason::Io(e);
                return events(&ServerEvent::Closed {
                    peer,
                    reason: &reason,
                });
            }
        };
        events(&ServerEvent::Accepted { peer });
        let id = conns.next_id();
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
                let session = Session::new(dispatcher, stats, config.max_record, peer);
                let conn = Connection {
                    peer,
                    session,
                    config: &config,
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

    /// Blocking mode, no Nagle delay and the timeouts on the socket; its
    /// reply transport and a control handle to shut it down with.
    fn set_up(&self, stream: &TcpStream) -> io::Result<(TcpStream, Box<dyn ReplyTransport>)> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(self.config.idle_timeout)?;
        stream.set_write_timeout(self.config.send_timeout)?;
        let transport = (self.config.transport)(stream.try_clone()?)?;
        Ok((stream.try_clone()?, transport))
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
