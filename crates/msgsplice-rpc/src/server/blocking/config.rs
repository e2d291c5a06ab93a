//! [`ServerConfig`]: the limits and hooks of the blocking driver.

use std::io;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::record::DEFAULT_MAX_RECORD;
use crate::server::{log_to_stderr, EventSink};
use crate::transport::{splicer_factory, splicer_settings, ReplyTransport, SendEngine};

/// Makes the [`ReplyTransport`] for a new connection from (a clone of) its
/// socket. The default is [`splicer_factory`] with [`splicer_settings`]
/// (SPLICE on); [`crate::transport::socket_factory`] gives plain
/// `writev`/`sendfile`.
pub type TransportFactory =
    Arc<dyn Fn(TcpStream) -> io::Result<Box<dyn ReplyTransport>> + Send + Sync>;

/// Limits and hooks of an [`RpcServer`](super::RpcServer).
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
    /// Makes each connection's reply transport (with
    /// [`SendEngine::Sendmsg`], and as the fallback of the others).
    pub transport: TransportFactory,
    /// The send engine: [`SendEngine::Sendmsg`] (the default) uses
    /// [`transport`](Self::transport) as it is; `SendEngine::Uring`
    /// (feature `uring`) probes io_uring when the server starts serving
    /// and sends through a ring per connection, or, where the kernel does
    /// not allow it, reports why once through [`events`](Self::events)
    /// and uses `transport`.
    pub engine: SendEngine,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_record: DEFAULT_MAX_RECORD,
            max_connections: 256,
            idle_timeout: Some(Duration::from_secs(600)),
            send_timeout: Some(Duration::from_secs(60)),
            events: Arc::new(log_to_stderr),
            transport: splicer_factory(splicer_settings()),
            engine: SendEngine::Sendmsg,
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
            .field("engine", &self.engine.name())
            .finish_non_exhaustive()
    }
}
