//! The RPC server: a sans-IO core, and a blocking TCP driver around it.
//!
//! The core has no sockets and no threads of its own:
//!
//! - [`Dispatcher`] takes one complete record and returns the reply to
//!   send ([`Handled`]), routing each call to its [`Program`]. It is
//!   shared by reference among all connections and may be called from any
//!   thread or task, any number of times at once.
//! - [`Session`] is one connection's state: it reassembles records from
//!   whatever bytes the socket returned and runs them through the
//!   dispatcher, in order.
//! - [`ServerStats`] counts records, replies and the system calls spent on
//!   them; [`ServerEvent`] and [`CloseReason`] are what a driver reports.
//!
//! A driver owns the I/O: accepting, reading into a session, sending each
//! reply and counting it ([`ReplySize`], [`ServerStats::count_reply`]),
//! timeouts and closing. [`blocking`] is the one this crate has
//! ([`RpcServer`]: one thread per connection, blocking sockets); [`evented`]
//! (feature `tokio`, [`TokioServer`]) serves the same core from tokio
//! tasks, with limits that hold under a connection flood.

pub mod blocking;
mod dispatch;
#[cfg(feature = "tokio")]
pub mod evented;
mod events;
mod log;
mod session;
mod stats;

pub use blocking::{RpcServer, ServerConfig, ServerHandle, TransportFactory};
pub use dispatch::{Caller, Dispatcher, Handled, Program};
#[cfg(feature = "tokio")]
pub use evented::{ShutdownReport, TokioConfig, TokioHandle, TokioServer};
pub use events::{log_to_stderr, CloseReason, EventSink, ServerEvent};
pub use log::{log_line, log_to_stderr_as, LogFormat};
pub use session::Session;
pub use stats::{ReplySize, ServerStats, StatsSnapshot};
