//! msgsplice: send a whole message in one call, splicing what can be spliced
//! and copying the rest.
//!
//! This is the user-space counterpart of Linux's `MSG_SPLICE_PAGES` work
//! (Linux 6.5). A server builds a message from a protocol header, data pages
//! and a trailer, and hands it over in one call; parts whose lifetime the
//! library can hold are given to the kernel by reference, the rest is
//! copied, and the code looks the same either way.
//!
//! # Layers
//!
//! - [`frag`]: the page-fragment allocator. [`frag::FragCache`] hands out
//!   refcounted [`frag::Frag`]s carved from large folios, with no lock and no
//!   atomic per allocation; a folio is reused only when every fragment in
//!   it, and every kernel read of it, is finished.
//! - [`msg`]: a [`Msg`] is one message as an ordered list of segments, the
//!   user-space `bio_vec[]`: spliceable memory ([`Frag`], [`bytes::Bytes`],
//!   and owned `Vec<u8>` or `BytesMut`, which become `Bytes` uncopied),
//!   copied memory (`&[u8]`) and file ranges. The segment types
//!   are the guard the kernel keeps in `sys_sendmsg`: only memory whose
//!   lifetime the library can hold is ever spliced. A `Msg` of up to eight
//!   segments lives on the stack, and it carries its own send cursor.
//! - [`send`]: a [`Splicer`] sends a `Msg` over a TCP, UDP or Unix socket
//!   in one system call when it is all memory: with the SPLICE hint on,
//!   large spliceable runs go with `MSG_ZEROCOPY` (TCP and UDP) and stay
//!   referenced until the kernel's completion arrives on the error queue
//!   (the folio is recycled only then, or retired if it never comes); small
//!   ones and everything with SPLICE off are copied. Where completions say
//!   the kernel copied anyway (local delivery), the default policy stops
//!   zero-copy on that socket, and to a peer on this host it never starts.
//!   File ranges go by `sendfile` between memory parts corked with
//!   `MSG_MORE`, or over TCP, when more of the message follows, through a
//!   pipe by `splice` with `SPLICE_F_MORE`. Short writes resume at the
//!   exact byte; a full non-blocking socket reports how far it got. Over
//!   UDP a message is
//!   one datagram, to the connected peer or to an address per message; with
//!   a GSO segment size it leaves as segments of that size, and every size
//!   limit is a typed error before any byte is sent.
//! - [`tls`] (feature `tls`, on by default): a [`TlsSplicer`] sends a `Msg`
//!   as TLS records. rustls runs the handshake; then the record layer is
//!   msgsplice's own, so that one record takes bytes from several segments
//!   (a header, 64 KiB of data and a trailer make 5 records, not 6 or 7)
//!   and each record is sealed in place in a fragment: one copy per byte
//!   in user space (memory `memcpy`'d, file ranges `preadv`'d straight into
//!   the records), then one `sendmsg` of the sealed fragments through a
//!   Splicer. Where the kernel has kTLS (TLS 1.3), the keys go to the
//!   kernel instead and the Splicer sends plaintext, file ranges by
//!   `sendfile`; [`tls::probe_ktls`] says whether it can, and why not.
//! - [`uring`] (feature `uring`): a [`UringSplicer`] sends the same
//!   messages through io_uring: `SENDMSG_ZC` whose notifications come on
//!   the ring, folios of a bound cache registered once as fixed buffers,
//!   and messages for many sockets submitted with one system call.
//!   [`Engine::best`] picks it where the kernel can, and the Splicer
//!   otherwise, saying why.
//! - `sys` (private): the few system-call wrappers rustix lacks. All
//!   `unsafe` that talks to the kernel lives there.
//!
//! `unsafe` code is denied everywhere else: only `frag` (the refcounted
//! fragments over raw mappings) and `sys` may hold it, and every block
//! there says why it is sound.
#![warn(missing_docs)]
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "tokio")]
pub mod async_send;
#[allow(unsafe_code)]
pub mod frag;
pub mod msg;
pub mod send;
#[allow(unsafe_code)]
mod sys;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "uring")]
pub mod uring;

#[cfg(feature = "tokio")]
pub use async_send::AsyncSplicer;
pub use frag::{Frag, FragBuf, FragCache, FragError, FragMut};
pub use msg::{FileRange, Msg, Segment};
pub use send::{SendError, SendStats, SocketKind, Splicer};
#[cfg(feature = "tls")]
pub use tls::{TlsError, TlsSplicer};
#[cfg(feature = "uring")]
pub use uring::{Engine, UringSplicer};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
