//! How replies leave: the [`ReplyTransport`] trait and its
//! implementations.
//!
//! The server driver hands every [`Reply`] to the `ReplyTransport` of its
//! connection, made by the [`TransportFactory`]
//! in [`ServerConfig`](crate::server::ServerConfig).
//!
//! - [`SplicerTransport`] (the default): one reply is one
//!   [`msgsplice::Msg`] (head fragment with the marker in place, data
//!   fragments or a file range, tail) given to a [`msgsplice::Splicer`] in
//!   one `send` call, with the SPLICE hint on: the user-space form of a
//!   sunrpc server that sends each reply with one
//!   `sendmsg(MSG_SPLICE_PAGES)`.
//! - `UringTransport` (feature `uring`): the same message given to a
//!   `msgsplice::uring::UringSplicer`, one ring per connection; chosen by
//!   [`SendEngine`] in the blocking driver's
//!   [`ServerConfig`](crate::server::ServerConfig), which probes io_uring
//!   when the server starts and falls back to the Splicer, saying why.
//! - [`SocketTransport`]: the same bytes with plain `writev`, `send` and
//!   `sendfile` and no send engine; the reference to compare with.
//!
//! All send exactly the same bytes (the tests compare them), and all
//! count the system calls they make ([`ReplyTransport::syscalls`]), which
//! the server adds up per reply kind in its
//! [`ServerStats`](crate::server::ServerStats).

mod socket;
mod splicer;
#[cfg(feature = "uring")]
mod uring;

use std::io;
use std::net::TcpStream;
use std::sync::Arc;

use crate::reply::Reply;
use crate::server::{EventSink, TransportFactory};

pub use socket::SocketTransport;
pub use splicer::SplicerTransport;
#[cfg(feature = "tokio")]
pub(crate) use splicer::{sendfile_unsupported, COPY_CHUNK};
#[cfg(feature = "uring")]
pub use uring::{uring_settings, UringTransport};

/// Sends complete replies on one connection, in order.
///
/// An error means the connection is unusable (the peer may have seen part of
/// a record); the driver closes it.
pub trait ReplyTransport: Send {
    /// Sends `reply` entirely, or fails.
    fn send_reply(&mut self, reply: Reply) -> io::Result<()>;

    /// System calls made on the connection so far, if the transport counts
    /// them (0 otherwise). The driver reads it around each
    /// [`send_reply`](Self::send_reply) to attribute them to that reply.
    fn syscalls(&self) -> u64 {
        0
    }
}

impl<T: ReplyTransport + ?Sized> ReplyTransport for Box<T> {
    fn send_reply(&mut self, reply: Reply) -> io::Result<()> {
        (**self).send_reply(reply)
    }

    fn syscalls(&self) -> u64 {
        (**self).syscalls()
    }
}

/// The Splicer settings of [`SplicerTransport::new`] and of the server's
/// default factory: msgsplice's defaults (SPLICE on, zero-copy policy from
/// measurement) with the per-message `fstat` of file ranges off
/// ([`msgsplice::send::Builder::check_file_ranges`]): a reply's
/// [`FileRange`](crate::reply::FileRange) was measured when the reply was
/// built, and one that no longer fits its file fails the send anyway.
pub fn splicer_settings() -> msgsplice::send::Builder {
    msgsplice::send::Builder::new().check_file_ranges(false)
}

/// A factory making a [`SplicerTransport`] with `builder`'s settings for
/// each connection (the default factory is
/// `splicer_factory(splicer_settings())`).
pub fn splicer_factory(builder: msgsplice::send::Builder) -> TransportFactory {
    Arc::new(move |s: TcpStream| {
        let t: Box<dyn ReplyTransport> =
            Box::new(SplicerTransport::with_builder(s, builder.clone())?);
        Ok(t)
    })
}

/// A factory making a [`SocketTransport`] for each connection.
pub fn socket_factory() -> TransportFactory {
    Arc::new(|s: TcpStream| {
        let t: Box<dyn ReplyTransport> = Box::new(SocketTransport::new(s));
        Ok(t)
    })
}

/// Which send engine the blocking driver's connections send their replies
/// with (see [`ServerConfig::engine`](crate::server::ServerConfig::engine)).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum SendEngine {
    /// `sendmsg` and `sendfile`: each connection's transport is made by
    /// the configured [`TransportFactory`] (by default a
    /// [`SplicerTransport`]).
    #[default]
    Sendmsg,
    /// io_uring (feature `uring`): a `UringTransport` per connection, made
    /// with these settings (start from [`uring_settings`]; do not bind a
    /// frag cache in them: every connection has its own ring, and a cache
    /// binds one). Probed once when the server starts; where the kernel
    /// lacks what the engine needs, the configured [`TransportFactory`] is
    /// used instead and a [`ServerEvent::Warning`](crate::server::ServerEvent::Warning)
    /// says why. Only the blocking driver has it: the tokio driver sends
    /// through `msgsplice::AsyncSplicer`, and a `UringSplicer` has no
    /// asynchronous form (its sends wait for their completions).
    #[cfg(feature = "uring")]
    Uring(msgsplice::uring::UringBuilder),
}

impl SendEngine {
    /// io_uring with [`uring_settings`].
    #[cfg(feature = "uring")]
    pub fn uring() -> SendEngine {
        SendEngine::Uring(uring_settings())
    }

    /// `sendmsg` or `uring`, as the command line spells it.
    pub fn name(&self) -> &'static str {
        match self {
            SendEngine::Sendmsg => "sendmsg",
            #[cfg(feature = "uring")]
            SendEngine::Uring(_) => "uring",
        }
    }

    /// The factory the server's connections use: `configured` for
    /// [`SendEngine::Sendmsg`]; for io_uring, its factory if the probe
    /// (run now) succeeds, else `configured`, with one warning to `events`.
    pub(crate) fn factory(
        &self,
        configured: TransportFactory,
        #[allow(unused_variables)] events: &EventSink,
    ) -> TransportFactory {
        match self {
            SendEngine::Sendmsg => configured,
            #[cfg(feature = "uring")]
            SendEngine::Uring(b) => uring::start(b.clone(), configured, events),
        }
    }
}
