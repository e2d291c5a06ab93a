//! What a driver reports about its connections, and why it closes one.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::record::RecordError;
use crate::reply::ReplyError;
use crate::rpc::CallError;

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
    /// Something the operator should know about the server as a whole.
    Warning {
        /// What, in a sentence.
        message: &'a str,
    },
    /// A client mounted an export (MOUNT's MNT succeeded).
    Mounted {
        /// The client.
        peer: SocketAddr,
        /// The path it mounted (the export, or a directory in it), as sent.
        path: &'a [u8],
    },
    /// A client's MNT was refused.
    MountRefused {
        /// The client.
        peer: SocketAddr,
        /// The path it asked for, as sent.
        path: &'a [u8],
        /// Why, as the MOUNT status sent back (`MNT3ERR_ACCES`, ...).
        why: &'static str,
    },
    /// A client said it unmounted a path (UMNT), or everything (UMNTALL:
    /// `path` is `None`).
    Unmounted {
        /// The client.
        peer: SocketAddr,
        /// The path, as sent; `None` for UMNTALL.
        path: Option<&'a [u8]>,
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
        ServerEvent::Warning { message } => eprintln!("msgsplice-rpc: warning: {message}"),
        _ => {}
    }
}
