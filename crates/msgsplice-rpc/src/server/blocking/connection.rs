//! The blocking driver's connections: a registry of their threads, and the
//! loop each thread runs.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::ServerConfig;
use crate::server::{CloseReason, Handled, ReplySize, ServerEvent, Session};
use crate::transport::ReplyTransport;

/// Bytes asked of each `read`: room for many small calls at once.
const READ_BUF: usize = 64 * 1024;

/// The connections being served: a control handle on each socket (to shut
/// it down) and its thread (to wait for), by connection id.
#[derive(Default)]
pub(super) struct Connections {
    next_id: AtomicU64,
    map: Mutex<HashMap<u64, (TcpStream, JoinHandle<()>)>>,
}

/// The registry, locked.
pub(super) type ConnectionMap<'a> = MutexGuard<'a, HashMap<u64, (TcpStream, JoinHandle<()>)>>;

impl Connections {
    /// A fresh connection id.
    pub(super) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The registry, locked (a panicked holder does not poison it: every
    /// change is one map operation).
    pub(super) fn lock(&self) -> ConnectionMap<'_> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections being served.
    pub(super) fn count(&self) -> usize {
        self.lock().len()
    }

    /// Shuts every connection's socket down and waits for its thread.
    pub(super) fn close_all(&self) {
        let all: Vec<_> = self.lock().drain().collect();
        for (_, (stream, _)) in &all {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for (_, (_, thread)) in all {
            let _ = thread.join();
        }
    }
}

/// One connection, served on its own thread: blocking reads into its
/// [`Session`], replies out through its [`ReplyTransport`], in order.
pub(super) struct Connection<'a> {
    pub(super) peer: SocketAddr,
    pub(super) session: Session,
    pub(super) config: &'a ServerConfig,
}

impl Connection<'_> {
    /// Serves the connection until the client leaves or misbehaves, then
    /// reports how it ended and shuts the socket down.
    pub(super) fn serve(mut self, mut stream: TcpStream, mut transport: Box<dyn ReplyTransport>) {
        let peer = self.peer;
        let events = &self.config.events;
        match self.run(&mut stream, &mut *transport) {
            Ok(()) => events(&ServerEvent::Ended { peer }),
            Err(reason) => {
                events(&ServerEvent::Closed {
                    peer,
                    reason: &reason,
                });
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Reads, handles and replies until the stream ends between records
    /// (`Ok`) or the connection must be closed.
    fn run(
        &mut self,
        stream: &mut TcpStream,
        transport: &mut dyn ReplyTransport,
    ) -> Result<(), CloseReason> {
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = stream.read(&mut buf);
            self.session.stats().count_read();
            let n = match n {
                Ok(0) => return self.session.end_of_stream(),
                // Clients (libnfs among them) often reset rather than close.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset && self.session.is_idle() => {
                    return Ok(())
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CloseReason::Io(e)),
            };
            let mut input = &buf[..n];
            while let Some(handled) = self.session.receive(&mut input)? {
                match handled {
                    Handled::Reply(reply) => self.send(transport, reply)?,
                    Handled::Dropped(error) => (self.config.events)(&ServerEvent::Dropped {
                        peer: self.peer,
                        error: &error,
                    }),
                }
            }
        }
    }

    /// Sends one reply and counts it with the system calls it took.
    fn send(
        &self,
        transport: &mut dyn ReplyTransport,
        reply: crate::reply::Reply,
    ) -> io::Result<()> {
        let size = ReplySize::of(&reply);
        let before = transport.syscalls();
        let sent = transport.send_reply(reply);
        let syscalls = transport.syscalls().wrapping_sub(before);
        self.session.stats().count_reply(size, syscalls);
        sent
    }
}
