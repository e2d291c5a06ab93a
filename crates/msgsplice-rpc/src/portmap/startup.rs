//! [`Portmapper`]: making an NFS export findable by standard tools.
//!
//! Clients that are not told ports (`mount -t nfs` without `port=`,
//! `showmount -e`, `rpcinfo -p`, libnfs URLs without `nfsport=`) ask the
//! portmapper on port 111 of the server's host. At start, [`Portmapper::start`]
//! does one of:
//!
//! - **System**: a system rpcbind answers at 127.0.0.1:111 ([`probe`]):
//!   register NFS v3 and MOUNT v3 over TCP with it, and unregister them
//!   when stopped (or dropped).
//! - **BuiltIn**: serve our own portmapper ([`PortmapProgram`], versions
//!   2 to 4) on port 111 of the bind address, with our registrations and
//!   its own; local services may SET and UNSET in it too.
//! - **Off**: neither; clients must be told the ports.
//!
//! [`PortmapMode::Auto`] tries System, then BuiltIn, and settles for Off
//! (saying why) when port 111 cannot be bound (not root, or taken by
//! something that is not a portmapper). The other modes insist: they fail
//! rather than fall back.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use msgsplice::FragCache;

use super::{
    nfs_v3_over_tcp, probe, register_with, unregister_with, PortmapError, PortmapProgram,
    Registration, Registrations, PMAP_PORT, PMAP_PROGRAM, PMAP_V2, RPCB_V4,
};
use crate::server::{Dispatcher, RpcServer, ServerConfig, ServerHandle};

/// Which portmapper to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PortmapMode {
    /// The system's rpcbind if one answers, else the built-in one if port
    /// 111 can be bound, else none.
    #[default]
    Auto,
    /// The system's rpcbind at 127.0.0.1:111; fail without one.
    System,
    /// The built-in portmapper on port 111 of the bind address; fail if
    /// the port cannot be bound.
    BuiltIn,
    /// No portmapper: clients are told the ports.
    Off,
}

/// What [`Portmapper::start`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortmapOutcome {
    /// Registered with the system's rpcbind at this address.
    System(SocketAddr),
    /// Serving the built-in portmapper at this address.
    BuiltIn(SocketAddr),
    /// No portmapper, as asked.
    Off,
    /// No portmapper, because none could be had (Auto mode): why.
    Unavailable(String),
}

impl std::fmt::Display for PortmapOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortmapOutcome::System(at) => {
                write!(
                    f,
                    "registered NFS and MOUNT with the system rpcbind at {at}"
                )
            }
            PortmapOutcome::BuiltIn(at) => write!(f, "serving the built-in portmapper at {at}"),
            PortmapOutcome::Off => write!(f, "no portmapper (clients must be told the ports)"),
            PortmapOutcome::Unavailable(why) => {
                write!(f, "no portmapper: {why}; clients must be told the ports")
            }
        }
    }
}

/// Why the portmapper step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PortmapStartError {
    /// System mode, and no rpcbind answers at 127.0.0.1:111.
    #[error("no rpcbind answers at 127.0.0.1:111; start it (systemctl start rpcbind) or use --portmap builtin")]
    NoSystem,
    /// Registering with the system's rpcbind failed.
    #[error("registering with rpcbind: {0}")]
    Register(#[from] PortmapError),
    /// BuiltIn mode, and port 111 could not be bound.
    #[error(
        "cannot serve a portmapper on {addr}: {source} (port 111 needs root, and must be free)"
    )]
    Bind {
        /// The address tried.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
}

/// The portmapper step of a running export. Stopping it (or dropping it)
/// undoes what it did: unregisters from the system's rpcbind, or stops the
/// built-in portmapper.
#[derive(Debug)]
pub struct Portmapper {
    outcome: PortmapOutcome,
    registered: Vec<Registration>,
    builtin: Option<ServerHandle>,
}

/// Where the system's rpcbind is asked.
const SYSTEM: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PMAP_PORT);

impl Portmapper {
    /// Makes NFS v3 at `nfs` and MOUNT v3 at `mount` (both TCP) findable,
    /// as `mode` says. The built-in portmapper listens on port 111 of
    /// `nfs`'s address.
    ///
    /// Costs: a probe of 127.0.0.1:111 (Auto, System), then one connection
    /// to register, or one listener and its accept thread.
    pub fn start(
        mode: PortmapMode,
        nfs: SocketAddr,
        mount: SocketAddr,
    ) -> Result<Portmapper, PortmapStartError> {
        let regs = nfs_v3_over_tcp(nfs, mount).to_vec();
        let system_answers = || probe(SYSTEM).unwrap_or(false);
        match mode {
            PortmapMode::Off => Ok(Portmapper::none(PortmapOutcome::Off)),
            PortmapMode::System if !system_answers() => Err(PortmapStartError::NoSystem),
            PortmapMode::System => Portmapper::system(regs),
            PortmapMode::BuiltIn => Portmapper::builtin(regs, nfs.ip()),
            PortmapMode::Auto if system_answers() => Portmapper::system(regs),
            PortmapMode::Auto => match Portmapper::builtin(regs, nfs.ip()) {
                Ok(p) => Ok(p),
                Err(e) => Ok(Portmapper::none(PortmapOutcome::Unavailable(e.to_string()))),
            },
        }
    }

    fn none(outcome: PortmapOutcome) -> Portmapper {
        Portmapper {
            outcome,
            registered: Vec::new(),
            builtin: None,
        }
    }

    fn system(regs: Vec<Registration>) -> Result<Portmapper, PortmapStartError> {
        register_with(SYSTEM, &regs)?;
        Ok(Portmapper {
            outcome: PortmapOutcome::System(SYSTEM),
            registered: regs,
            builtin: None,
        })
    }

    fn builtin(regs: Vec<Registration>, ip: IpAddr) -> Result<Portmapper, PortmapStartError> {
        let addr = SocketAddr::new(ip, PMAP_PORT);
        let mut table = Registrations::new();
        for vers in PMAP_V2..=RPCB_V4 {
            table.insert(Registration::tcp(PMAP_PROGRAM, vers, addr));
        }
        for r in regs {
            table.insert(r);
        }
        let program = PortmapProgram::new(Arc::new(Mutex::new(table)));
        let dispatcher = Dispatcher::new(vec![Arc::new(program)], FragCache::new());
        let bind_err = |source| PortmapStartError::Bind { addr, source };
        let server = RpcServer::bind(&[addr], dispatcher, ServerConfig::default())
            .map_err(bind_err)?
            .spawn()
            .map_err(bind_err)?;
        Ok(Portmapper {
            outcome: PortmapOutcome::BuiltIn(addr),
            registered: Vec::new(),
            builtin: Some(server),
        })
    }

    /// What the step did.
    pub fn outcome(&self) -> &PortmapOutcome {
        &self.outcome
    }

    /// Undoes the step: unregisters from the system's rpcbind (errors are
    /// returned; the mappings may then be left behind), or stops the
    /// built-in portmapper.
    pub fn stop(mut self) -> Result<(), PortmapError> {
        self.undo()
    }

    fn undo(&mut self) -> Result<(), PortmapError> {
        if let Some(h) = self.builtin.take() {
            let at = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PMAP_PORT);
            h.shutdown()
                .map_err(|source| PortmapError::Io { addr: at, source })?;
        }
        let regs = std::mem::take(&mut self.registered);
        if !regs.is_empty() {
            unregister_with(SYSTEM, &regs)?;
        }
        Ok(())
    }
}

impl Drop for Portmapper {
    fn drop(&mut self) {
        // Nowhere to report from a drop; `stop` returns the error.
        let _ = self.undo();
    }
}
