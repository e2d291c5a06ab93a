//! ONC RPC over TCP with single-send replies, and a read-only NFSv3 export.
//!
//! This crate is the user-space counterpart of the Linux sunrpc server
//! change that sends a reply as one `sendmsg(MSG_SPLICE_PAGES)`: record
//! marker, head, data pages and tail together (seed 004). A READ reply
//! here is built the same way: the head (marker, RPC header, NFS results)
//! is encoded straight into a spliceable fragment with four bytes reserved
//! in front, the file data stays in the page cache as a file range, and
//! the marker is written into the reserved bytes once the total is known.
//! No extra buffer and no copy of the head is needed to send it all at
//! once.
//!
//! # Layers
//!
//! Each layer only uses the ones above it in this list, and everything but
//! the server driver is sans-IO (bytes in, values or bytes out; no
//! sockets), so it is tested, property-tested and fuzzed directly.
//!
//! - [`xdr`]: RFC 4506 encoding. A borrowing decoder that returns typed
//!   errors and never allocates what a length field claims; encoders on
//!   [`bytes::BufMut`], so they write into a [`msgsplice::FragBuf`].
//! - [`rpc`]: RFC 5531 messages. A call header is decoded into a validated
//!   [`rpc::CallHeader`] (credentials checked once, here), or into a
//!   [`rpc::CallError`] that says whether to answer with a denial or drop
//!   the record. Reply headers, accepted and denied, are encoded.
//! - [`record`]: record marking on a byte stream. [`record::RecordAssembler`]
//!   is fed whatever the socket returned and yields whole records; an
//!   oversize or malformed stream is an error that closes the connection.
//! - [`reply`]: a [`reply::Reply`] is head + data (fragments or a file
//!   range) + tail, with the record marker over all three: the shape of one
//!   msgsplice message.
//! - [`transport`]: [`transport::ReplyTransport`] sends replies on a
//!   connection. [`transport::SplicerTransport`], the default, turns a
//!   reply into one [`msgsplice::Msg`] and sends it with one
//!   [`msgsplice::Splicer::send`], SPLICE on;
//!   [`transport::SocketTransport`] sends the same bytes with plain
//!   `writev` and `sendfile`.
//! - [`server`]: [`server::Dispatcher`] routes a record to a
//!   [`server::Program`] (sans-IO); [`server::RpcServer`] is the blocking
//!   driver: listeners, one thread per connection, shutdown handle, and
//!   [`server::ServerStats`] (records, replies, system calls per reply).
//! - [`mount`] and [`nfs`]: MOUNT v3 and a read-only NFSv3 export of one
//!   directory, with unforgeable file handles and resolution that cannot
//!   leave the export root. [`nfs::NfsServer`] puts it all together.
//!
//! # Example
//!
//! ```no_run
//! use msgsplice_rpc::nfs::NfsServer;
//! let server = NfsServer::bind_local("/srv/data", 0, 0)?;
//! println!("nfs-ls {}", server.url());
//! server.serve()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod mount;
pub mod nfs;
pub mod record;
pub mod reply;
pub mod rpc;
pub mod server;
pub mod transport;
pub mod xdr;

pub use nfs::{NfsConfig, NfsServer};
pub use reply::{FileRange, Reply, ReplyData};
pub use server::{ServerConfig, ServerHandle, ServerStats, StatsSnapshot};
pub use transport::{ReplyTransport, SocketTransport, SplicerTransport};
