//! [`TokioConfig`]: the runtime, limits and timeouts of the tokio driver.

use std::sync::Arc;
use std::time::Duration;

use crate::record::DEFAULT_MAX_RECORD;
use crate::server::{log_to_stderr, EventSink};
use crate::transport::splicer_settings;

/// Settings of a [`TokioServer`](super::TokioServer). The defaults suit
/// an export facing many clients; see the [module documentation](super)
/// for how the limits play together.
#[derive(Clone)]
pub struct TokioConfig {
    /// Runtime worker threads; `None` is one per CPU.
    pub worker_threads: Option<usize>,
    /// Connections served at once. When full, a new connection evicts one
    /// that is not busy with a reply (see the module documentation for the
    /// order), or is closed if every one is busy. Also capped by the
    /// process's file-descriptor limit, raised to its hard limit at start.
    pub max_connections: usize,
    /// A connection that completes no request within this time of being
    /// accepted is the first to go when room is needed.
    pub first_request_grace: Duration,
    /// A connection with no progress (no byte read, no reply sent) for
    /// this long is closed.
    pub idle_timeout: Duration,
    /// A reply that cannot be sent within this time closes the connection
    /// (a client that does not read its replies).
    pub send_timeout: Duration,
    /// Largest record accepted; a larger one closes the connection. With
    /// [`read_buffer`](Self::read_buffer), it bounds the request bytes a
    /// connection buffers.
    pub max_record: usize,
    /// Bytes asked of each read. Allocated when a connection first sends
    /// something, and given back after it has been idle for a second, so
    /// idle connections hold none.
    pub read_buffer: usize,
    /// How long a shutdown waits for connections to finish the requests
    /// that have arrived and send their replies before closing the rest.
    pub shutdown_timeout: Duration,
    /// Where events go. The default writes closes and drops to stderr.
    pub events: EventSink,
    /// The send engine's settings for each connection's
    /// [`msgsplice::AsyncSplicer`] (default: [`splicer_settings`]).
    pub splicer: msgsplice::send::Builder,
}

impl Default for TokioConfig {
    fn default() -> Self {
        TokioConfig {
            worker_threads: None,
            max_connections: 10_000,
            first_request_grace: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            send_timeout: Duration::from_secs(60),
            max_record: DEFAULT_MAX_RECORD,
            read_buffer: 64 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            events: Arc::new(log_to_stderr),
            splicer: splicer_settings(),
        }
    }
}

impl std::fmt::Debug for TokioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokioConfig")
            .field("worker_threads", &self.worker_threads)
            .field("max_connections", &self.max_connections)
            .field("first_request_grace", &self.first_request_grace)
            .field("idle_timeout", &self.idle_timeout)
            .field("send_timeout", &self.send_timeout)
            .field("max_record", &self.max_record)
            .field("read_buffer", &self.read_buffer)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}
