//! ONC RPC over TCP with single-send replies, and a read-only NFSv3 export.
//!
//! A reply here is one message: record marker, head, data pages and tail
//! handed to the kernel together, the way Linux's sunrpc server sends a
//! reply with one `sendmsg(MSG_SPLICE_PAGES)`. A READ reply is built so:
//! the head (marker, RPC header, NFS results) is encoded straight into a
//! spliceable fragment with four bytes reserved in front, the file data
//! stays in the page cache as a file range, and the marker is written into
//! the reserved bytes once the total is known. No extra buffer and no copy
//! of the head is needed to send it all at once.
//!
//! # Layers
//!
//! Each layer only uses the ones above it in this list, and everything but
//! the server's driver is sans-IO (bytes in, values or bytes out; no
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
//!   msgsplice message. [`reply::ReplyBuilder::accepted`] starts one with
//!   the RPC reply header.
//! - [`transport`]: [`transport::ReplyTransport`] sends replies on a
//!   connection. [`transport::SplicerTransport`], the default, turns a
//!   reply into one [`msgsplice::Msg`] and sends it with one
//!   [`msgsplice::Splicer::send`], SPLICE on;
//!   [`transport::SocketTransport`] sends the same bytes with plain
//!   `writev` and `sendfile`; with the cargo feature `uring`,
//!   `transport::UringTransport` gives the same message to msgsplice's
//!   io_uring engine, one ring per connection of the blocking driver,
//!   chosen by [`transport::SendEngine`] in its
//!   [`server::ServerConfig`].
//! - [`server`]: the sans-IO core, [`server::Dispatcher`] (a record in,
//!   routed to its [`server::Program`], a reply out) and
//!   [`server::Session`] (one connection's records, reassembled and
//!   dispatched in order), with [`server::ServerStats`] (records, replies,
//!   system calls per reply); and the blocking driver
//!   [`server::blocking::RpcServer`]: listeners, one thread per
//!   connection, timeouts, a connection limit and a shutdown handle; and,
//!   with the cargo feature `tokio`, the event-driven driver
//!   `server::evented::TokioServer`: one task per connection, replies
//!   through [`msgsplice::AsyncSplicer`], limits and eviction that hold
//!   under a connection flood, graceful shutdown.
//! - [`exports`]: the exports table, sans-IO: `NAME=DIR[,options]` lines
//!   and flags read into typed exports with their `clients=` networks and
//!   squashing, and the permission rules of Linux's nfsd.
//! - [`mount`] and [`nfs`]: MOUNT v3 and a read-only NFSv3 server of one
//!   directory or a table of exports, with unforgeable file handles that
//!   carry their export and the file's generation (and survive restarts
//!   with a [`nfs::StateDir`]), and resolution that cannot leave an
//!   export's root. Each call is checked against the caller's address
//!   ([`server::Caller`]) and its squashed AUTH_SYS identity. Arguments
//!   are decoded into validated values before a procedure sees them.
//!   [`nfs::NfsServer`] puts it all together; [`nfs::NfsStats`] counts
//!   calls per procedure, errors and bytes read.
//! - [`portmap`]: the portmapper and rpcbind protocols, sans-IO, a client
//!   for a system rpcbind, and [`portmap::Portmapper`], the startup step
//!   that makes an export findable by `rpcinfo`, `showmount` and clients
//!   given no ports (register with the system's rpcbind, or serve a
//!   built-in portmapper).
//! - [`server::log_to_stderr_as`]: one log line per connection and mount,
//!   as text or JSON ([`server::LogFormat`]).
//!
//! # What a READ costs
//!
//! A connection thread reads the request (one `read`, often several
//! requests at once), decodes it without allocating, checks the handle,
//! takes the open file from a small cache and `statx`s it for the reply's
//! attributes (which the permission check reuses: it adds no system
//! call), builds the head in a fragment, and sends the reply with the
//! [`msgsplice::Splicer`]. A READ of up to 32 KiB is read into a fragment
//! (one `pread`) and leaves with its head and tail in one `sendmsg`. A
//! larger one goes as one `sendmsg(MSG_MORE)` for the head and one
//! `sendfile` for the data; when the count is not a multiple of four the
//! reply has a tail (the XDR padding): the data then goes through a pipe
//! by two `splice` calls, so that it waits for the tail's `sendmsg` and
//! they leave together. Either way, a file that shrank since its
//! attributes were taken fails the send and closes the connection, so a
//! reply never carries fewer bytes than its head declares. No heap
//! allocation once warm (`tests/alloc.rs` holds it at zero with a
//! counting allocator).
//! [`server::ServerStats`] counts the system calls of the reply path per
//! kind of reply; `msgsplice bench --sections nfs` measures the export
//! against the `nfsserve` crate with libnfs's `nfs-cat` as the client.
//!
//! # Testing
//!
//! `tests/protocol.rs` speaks the wire protocol (odd offsets, every kind
//! of bad input, isolation of bad clients), `tests/libnfs.rs` runs a real
//! client (libnfs-utils: `nfs-ls`, `nfs-cat`, `nfs-cp` of 64 MiB), and `fuzz/` has cargo-fuzz
//! targets for the record reassembler and the whole request path;
//! `tests/access.rs` checks `clients=`, squashing and mode bits with files
//! of other owners, `tests/handles.rs` handles across restarts, deleted,
//! recreated and renamed-over files, and `tests/deploy.rs` runs `rpcinfo`,
//! `showmount` and `nfs-cat` through the built-in portmapper and a real
//! `rpcbind`;
//! `scripts/fuzz.sh SECONDS` runs them on stable Rust.
//!
//! # Example
//!
//! ```no_run
//! use msgsplice_rpc::nfs::NfsServer;
//! let server = NfsServer::bind_local("/srv/data", 0, 0)?;
//! println!("nfs-ls {}", server.url());
//! let stats = server.stats();
//! let handle = server.spawn()?;
//! // ... clients read ...
//! let s = stats.snapshot();
//! println!("{} READ replies, {:?} system calls each", s.bulk_replies, s.syscalls_per_bulk_reply());
//! handle.shutdown()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Several exports, handles that survive restarts, and a portmapper:
//!
//! ```no_run
//! use msgsplice_rpc::exports::Exports;
//! use msgsplice_rpc::nfs::{NfsConfig, NfsServer};
//! use msgsplice_rpc::portmap::{PortmapMode, Portmapper};
//! let exports = Exports::parse("media=/srv/media,clients=192.0.2.0/24\ndocs=/srv/docs\n")
//!     .map_err(std::io::Error::other)?;
//! let config = NfsConfig {
//!     state_dir: Some("/var/lib/msgsplice".into()),
//!     ..NfsConfig::default()
//! };
//! let any = "0.0.0.0:2049".parse().unwrap();
//! let server = NfsServer::bind_exports(&exports, any, any, config)?;
//! let portmap = Portmapper::start(PortmapMode::Auto, server.nfs_addr(), server.mount_addr())
//!     .map_err(std::io::Error::other)?;
//! println!("{}", portmap.outcome());
//! server.serve()?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The same from the command line: `msgsplice nfs serve DIR`, or
//! `msgsplice nfs serve --export NAME=DIR ...` (see `docs/nfs.md`).
#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod exports;
pub mod mount;
pub mod nfs;
pub mod portmap;
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
