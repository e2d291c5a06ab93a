//! io_uring send engine (feature `uring`): [`UringSplicer`] sends a
//! [`Msg`](crate::Msg) with the meaning of a [`Splicer`], through
//! `IORING_OP_SENDMSG_ZC` and `IORING_OP_SENDMSG`.
//!
//! # What it adds to the Splicer
//!
//! - **Notifications on the ring.** A zero-copy send's completion comes
//!   as a CQE flagged `IORING_CQE_F_NOTIF` instead of an error-queue
//!   message, read with no system call. With `IORING_SEND_ZC_REPORT_USAGE`
//!   it says whether the kernel copied after all, which feeds the same
//!   policy as the Splicer's COPIED completions ([`OnCopied`](crate::send::OnCopied)),
//!   and as there, zero-copy never starts to a peer on this host by
//!   default. Buffers are held by the same bookkeeping until the
//!   notification.
//! - **Registered folios.** A [`FragCache`] bound to the ring
//!   ([`UringBuilder::bind_cache`]) has each folio it maps put in the
//!   ring's sparse buffer table (pinned once, at mapping) and taken out
//!   before it is unmapped; runs whose buffers lie in registered folios go
//!   by `SENDMSG_ZC` with `IORING_RECVSEND_FIXED_BUF` (Linux 6.15), which
//!   pins nothing per send. See the `table` module for why unregistering
//!   never races a send.
//! - **Many sockets, one system call.** [`UringSplicer::send_many`] queues
//!   the next run of a message for every socket and submits them with one
//!   `io_uring_enter`.
//!
//! File ranges go by `sendfile`, synchronously, in their place in the
//! message (the Splicer's tail pipe is not used). UDP sockets must be
//! connected; a GSO segment size ([`Builder::gso_segment`]) is set on the
//! socket (`setsockopt(UDP_SEGMENT)`) when it is added, so every datagram
//! is cut by the kernel, as the Splicer's are.
//!
//! # Probing, and the fallback
//!
//! [`UringBuilder::build`] sets up the ring and probes it (opcodes by
//! `IORING_REGISTER_PROBE`, a one-byte trial send from a registered buffer,
//! `RLIMIT_MEMLOCK`); see [`UringProbe`]. A kernel without what the engine
//! needs gives [`UringError::Unsupported`], which says what is missing and
//! why; the caller then uses the sendmsg-based [`Splicer`], which
//! [`Engine::best`] does by itself. Missing registered-buffer sends only
//! turn registration off.
//!
//! # Why the `io-uring` crate
//!
//! rustix's `io_uring` module offers the raw system calls and structures;
//! the `io-uring` crate also maps the queues and orders their head and tail
//! updates, and builds each opcode's entry. Using it keeps the unsafe code
//! of this engine (in `sys::uring`) to the two things only msgsplice can
//! vouch for: the lifetime of what an entry points at, and updates of the
//! buffer table.

mod conn;
mod plan;
mod probe;
mod splicer;
mod table;

use std::os::fd::AsFd;
use std::sync::Arc;

pub use probe::{Capability, UringProbe};
pub use splicer::{ConnId, UringSplicer};

use crate::frag::FragCache;
use crate::send::{Builder, SendError, SendStats, Splicer};
use table::FolioTable;

/// Why a [`UringSplicer`] could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UringError {
    /// The kernel (or its configuration) lacks something the engine needs.
    /// Use a [`Splicer`] instead: [`Engine::best`] does.
    #[error("io_uring cannot be used: {what}: {why}; use the Splicer (Engine::best falls back by itself)")]
    Unsupported {
        /// What is missing.
        what: &'static str,
        /// Why, as the probe found it.
        why: String,
    },
    /// The frag cache given to [`UringBuilder::bind_cache`] is already
    /// bound to a ring; a cache registers its folios with one ring.
    #[error("the frag cache is already bound to a ring; bind a cache of its own")]
    CacheAlreadyBound,
    /// Registering the buffer table failed.
    #[error("registering the buffer table failed: {0}; build without bind_cache")]
    Register(std::io::Error),
    /// The socket cannot be driven (as for a [`Splicer`]).
    #[error(transparent)]
    Socket(#[from] SendError),
}

/// Counters of the ring itself (each socket keeps its [`SendStats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UringStats {
    /// `io_uring_enter` calls made, for every socket together.
    pub enters: u64,
    /// Zero-copy entries sent from registered folios.
    pub fixed_sends: u64,
    /// Folios of the bound cache registered, ever.
    pub folios_registered: u64,
    /// Folios of the bound cache left unregistered (no free slot, over the
    /// `RLIMIT_MEMLOCK` budget, or the kernel refused).
    pub folios_not_registered: u64,
    /// Folios registered now.
    pub folios_registered_now: u64,
}

/// Settings of a [`UringSplicer`]: the [`Builder`] of the policy it shares
/// with the Splicer, the ring's size, and the registered folios.
#[derive(Clone, Debug)]
pub struct UringBuilder {
    pub(crate) send: Builder,
    entries: u32,
    slots: u16,
    bind: Option<FragCache>,
    missing: Vec<Capability>,
}

impl Default for UringBuilder {
    fn default() -> UringBuilder {
        UringBuilder {
            send: Builder::default(),
            entries: 256,
            slots: 1024,
            bind: None,
            missing: Vec::new(),
        }
    }
}

impl UringBuilder {
    /// The defaults: a ring of 256 entries, the Splicer's default policy,
    /// no bound cache.
    pub fn new() -> UringBuilder {
        UringBuilder::default()
    }

    /// The policy, as for a [`Splicer`] (SPLICE hint, threshold, COPIED
    /// handling, drain timeout, ...; the frag cache for copies of copy
    /// segments, unless [`bind_cache`](UringBuilder::bind_cache) gives one).
    /// A GSO segment size is set on each UDP socket as it is added (see
    /// the module's documentation).
    pub fn policy(mut self, b: Builder) -> UringBuilder {
        self.send = b;
        self
    }

    /// Submission entries of the ring (default 256; the kernel rounds up
    /// to a power of two). A round queues one chain per socket.
    pub fn entries(mut self, n: u32) -> UringBuilder {
        self.entries = n.max(8);
        self
    }

    /// Binds `cache` to the ring: every folio it maps from now on is
    /// registered (up to [`registered_slots`](UringBuilder::registered_slots)
    /// folios and the `RLIMIT_MEMLOCK` budget of
    /// [`UringProbe::registration_budget`]), and copy segments of zero-copy
    /// runs are copied into it. Only where the probe finds registered-buffer
    /// sends (else the cache is used unbound). A cache is bound to one ring
    /// for its life; the ring's registrations live as long as the cache's
    /// folios. Costs one `io_uring_register` when a folio is mapped and one
    /// before it is unmapped, on whichever thread does it; with large
    /// fragments (over half a folio, each a mapping of its own) that is two
    /// per fragment.
    pub fn bind_cache(mut self, cache: FragCache) -> UringBuilder {
        self.bind = Some(cache);
        self
    }

    /// Slots of the registered buffer table (default 1024 folios).
    pub fn registered_slots(mut self, n: u16) -> UringBuilder {
        self.slots = n.max(1);
        self
    }

    /// For tests: the probe treats `what` as missing, as on an older kernel.
    #[doc(hidden)]
    pub fn pretend_missing(mut self, what: Capability) -> UringBuilder {
        self.missing.push(what);
        self
    }

    /// Probes the kernel and builds a splicer over `sock`. Costs what the
    /// probe costs (see [`UringProbe`]), and with a bound cache one
    /// `io_uring_register` for the table.
    pub fn build<S: AsFd>(self, sock: S) -> Result<UringSplicer<S>, UringError> {
        let mut sp = self.prepare()?;
        sp.add(sock)?;
        Ok(sp)
    }

    /// Probes the kernel as [`build`](UringBuilder::build) does, without a
    /// socket, and returns what it found: a server can ask once at start
    /// whether to use the engine at all. Costs a ring's setup and
    /// teardown (see [`UringProbe`]); fails with
    /// [`UringError::Unsupported`] where `build` would.
    pub fn probe(&self) -> Result<UringProbe, UringError> {
        probe::probe(self.entries, &self.missing).map(|(_ring, p)| p)
    }

    /// The ring, probed, with its table; no socket yet.
    fn prepare<S: AsFd>(self) -> Result<UringSplicer<S>, UringError> {
        let (ring, probe) = probe::probe(self.entries, &self.missing)?;
        let mut table = None;
        if let (Some(cache), true) = (&self.bind, probe.fixed_sendmsg_zc) {
            ring.register_sparse(u32::from(self.slots))
                .map_err(UringError::Register)?;
            let handle = ring.table_handle().map_err(UringError::Register)?;
            let t = Arc::new(FolioTable::new(
                handle,
                self.slots,
                probe.registration_budget(),
            ));
            if !cache.set_folio_hook(t.clone()) {
                return Err(UringError::CacheAlreadyBound);
            }
            table = Some(t);
        }
        let cache = self
            .bind
            .clone()
            .or_else(|| self.send.cache.clone())
            .unwrap_or_else(|| FragCache::global().clone());
        Ok(UringSplicer::from_parts(ring, probe, self, table, cache))
    }
}

/// The best send engine for a socket: a [`UringSplicer`] where the kernel
/// has what it needs, else a [`Splicer`], with the reason.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Engine<S: AsFd> {
    /// io_uring.
    Uring(UringSplicer<S>),
    /// sendmsg, because io_uring could not be used.
    Splicer {
        /// The engine.
        splicer: Splicer<S>,
        /// Why io_uring was not used.
        why: UringError,
    },
}

impl<S: AsFd> Engine<S> {
    /// [`best_with`](Engine::best_with) the default settings.
    pub fn best(sock: S) -> Result<Engine<S>, SendError> {
        Engine::best_with(UringBuilder::new(), sock)
    }

    /// A [`UringSplicer`] built by `b` if the kernel allows, else a
    /// [`Splicer`] with `b`'s policy. Fails only as creating a Splicer
    /// fails (not a socket, an unsupported kind).
    pub fn best_with(b: UringBuilder, sock: S) -> Result<Engine<S>, SendError> {
        let policy = b.send.clone();
        match b.prepare::<S>() {
            Ok(mut sp) => {
                sp.add(sock)?;
                Ok(Engine::Uring(sp))
            }
            Err(why) => Ok(Engine::Splicer {
                splicer: policy.build(sock)?,
                why,
            }),
        }
    }

    /// Sends `msg`, as [`Splicer::send`] does.
    pub fn send(&mut self, msg: &mut crate::Msg<'_>) -> Result<u64, SendError> {
        match self {
            Engine::Uring(u) => u.send(msg),
            Engine::Splicer { splicer, .. } => splicer.send(msg),
        }
    }

    /// The socket's counters.
    pub fn stats(&self) -> SendStats {
        match self {
            Engine::Uring(u) => u.stats(ConnId::FIRST),
            Engine::Splicer { splicer, .. } => splicer.stats(),
        }
    }

    /// Why io_uring is not used, if it is not.
    pub fn fallback_reason(&self) -> Option<&UringError> {
        match self {
            Engine::Uring(_) => None,
            Engine::Splicer { why, .. } => Some(why),
        }
    }
}
