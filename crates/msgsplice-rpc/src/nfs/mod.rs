//! A read-only NFSv3 export (RFC 1813) with its MOUNT v3 service.
//!
//! [`NfsServer`] binds the NFS and MOUNT ports (on 127.0.0.1 unless told
//! otherwise) and serves one directory ([`NfsServer::bind`], mounted as
//! `/export`) or a table of exports ([`NfsServer::bind_exports`], each
//! mounted as `/NAME`, see [`crate::exports`]). Both listeners serve both
//! programs, so the ports can also be the same. Clients find the ports
//! through a portmapper ([`crate::portmap::Portmapper`]), or are told
//! them, e.g. `nfs://127.0.0.1/export/file?nfsport=N&mountport=M&version=3`.
//!
//! - [`handle`]: unforgeable file handles (export number, node id,
//!   generation under a keyed tag) and the table behind them.
//! - [`export`]: one exported tree, reached only by safe resolution, with
//!   its options (clients, squashing) and the open-file cache.
//! - [`ExportSet`]: the exports of a server, found by handle or MOUNT path.
//! - [`state`]: the state directory that keeps handles valid across
//!   restarts.
//! - [`stats`]: calls per procedure, errors and bytes read.
//! - [`attr`]: `fattr3`, and what the permission checks need of it.
//! - `args`, `proc`, `res` and `readdir` (private): the NFS procedures.
//!   `args` decodes each procedure's arguments into validated values
//!   (handles verified), `res` encodes results and the failure body of
//!   each procedure, `proc` routes a call to its export, checks the
//!   caller and runs the procedure (decode, file-system work, encode),
//!   and `readdir` is READDIR and READDIRPLUS. Every write procedure
//!   answers NFS3ERR_ROFS.
//! - [`crate::mount`]: MOUNT v3.
//!
//! READ replies carry file data as a file range ([`crate::reply::FileRange`])
//! so the transport can send it from the page cache.

mod args;
pub mod attr;
pub mod export;
pub mod handle;
mod proc;
mod readdir;
mod res;
mod set;
pub mod state;
pub mod stats;

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use msgsplice::FragCache;

pub use export::Export;
pub use proc::NfsProgram;
pub use set::{export_number, ExportSet};
pub use state::{StateDir, StateError};
pub use stats::{NfsStats, NfsStatsSnapshot};

use crate::exports::{self, Exports, Squash, DEFAULT_ANON_ID};
use crate::mount::MountProgram;
use crate::server::{
    Dispatcher, Program, RpcServer, ServerConfig, ServerEvent, ServerHandle, ServerStats,
};

/// The NFS program number.
pub const NFS_PROGRAM: u32 = 100003;
/// The NFS version served.
pub const NFS_V3: u32 = 3;

/// Largest READ the server answers (FSINFO `rtmax`).
pub const READ_MAX: u32 = 1 << 20;
/// Largest WRITE a client may send (FSINFO `wtmax`; writes are refused,
/// but a client must be able to send one to hear so).
pub const WRITE_MAX: u32 = 64 * 1024;

/// `nfsstat3`: the status of an NFS procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum Nfsstat {
    /// Success.
    Ok = 0,
    /// Not owner.
    Perm = 1,
    /// No such file or directory.
    NoEnt = 2,
    /// I/O error.
    Io = 5,
    /// Permission denied.
    Acces = 13,
    /// Not a directory.
    NotDir = 20,
    /// Is a directory.
    IsDir = 21,
    /// Invalid argument (e.g. READ of a non-file).
    Inval = 22,
    /// Read-only file system.
    Rofs = 30,
    /// Name too long.
    NameTooLong = 63,
    /// Stale file handle.
    Stale = 70,
    /// Malformed file handle.
    BadHandle = 10001,
    /// Bad READDIR cookie.
    BadCookie = 10003,
    /// Operation not supported.
    NotSupp = 10004,
    /// Buffer too small (READDIR count).
    TooSmall = 10005,
    /// Server fault.
    ServerFault = 10006,
}

/// Settings of an [`NfsServer`].
#[derive(Debug, Clone)]
pub struct NfsConfig {
    /// The name clients mount (`/export` by default) when one directory is
    /// exported ([`NfsServer::bind`]). Must not be `/`: libnfs splits
    /// `nfs://host/a/file` into export `/a` and file `/file`. An export
    /// table names its exports itself.
    pub export_name: String,
    /// Largest number of file handles remembered (per export).
    pub max_handles: usize,
    /// Where the handle key and the exports' node journals are kept (see
    /// [`StateDir`]), so that handles stay valid across restarts. Without
    /// it each start makes a new key, every handle a client holds goes
    /// stale at a restart, and a [`ServerEvent::Warning`] says so.
    pub state_dir: Option<std::path::PathBuf>,
    /// RPC server limits, hooks and transport.
    pub server: ServerConfig,
}

impl Default for NfsConfig {
    fn default() -> Self {
        NfsConfig {
            export_name: "/export".into(),
            max_handles: 1 << 20,
            state_dir: None,
            server: ServerConfig::default(),
        }
    }
}

/// A read-only NFSv3 server for one directory or a table of exports,
/// bound and ready to serve.
///
/// ```no_run
/// use msgsplice_rpc::nfs::NfsServer;
/// let server = NfsServer::bind_local("/srv/data", 0, 0).unwrap();
/// println!("{}", server.url());
/// let handle = server.spawn().unwrap();
/// // ... later:
/// handle.shutdown().unwrap();
/// ```
#[derive(Debug)]
pub struct NfsServer {
    rpc: RpcServer,
    exports: Arc<ExportSet>,
    mount: Arc<MountProgram>,
    nfs_stats: Arc<NfsStats>,
    nfs_addr: SocketAddr,
    mount_addr: SocketAddr,
}

impl NfsServer {
    /// Exports `root` on `nfs_addr` (NFS) and `mount_addr` (MOUNT) with the
    /// default [`NfsConfig`]. Port 0 picks a free port; equal addresses
    /// share one listener.
    pub fn bind(
        root: impl AsRef<Path>,
        nfs_addr: SocketAddr,
        mount_addr: SocketAddr,
    ) -> io::Result<NfsServer> {
        NfsServer::bind_with(root, nfs_addr, mount_addr, NfsConfig::default())
    }

    /// [`bind`](Self::bind) on 127.0.0.1 with the given ports.
    pub fn bind_local(
        root: impl AsRef<Path>,
        nfs_port: u16,
        mount_port: u16,
    ) -> io::Result<NfsServer> {
        let at = |p| SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));
        NfsServer::bind(root, at(nfs_port), at(mount_port))
    }

    /// [`bind`](Self::bind) with explicit settings: one export named
    /// `config.export_name`, open to every client, root squashed.
    pub fn bind_with(
        root: impl AsRef<Path>,
        nfs_addr: SocketAddr,
        mount_addr: SocketAddr,
        config: NfsConfig,
    ) -> io::Result<NfsServer> {
        let name = config.export_name.trim_end_matches('/');
        if !name.starts_with('/') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the export name must start with '/' and not be '/' alone",
            ));
        }
        let options = exports::Export {
            name: name.trim_start_matches('/').to_owned(),
            dir: root.as_ref().to_owned(),
            clients: Vec::new(),
            squash: Squash::Root,
            anon_uid: DEFAULT_ANON_ID,
            anon_gid: DEFAULT_ANON_ID,
        };
        let (key, state) = NfsServer::key(&config)?;
        let number = export_number(&key, &options.name);
        let export = Export::open_with(number, name, options, key, config.max_handles)?;
        let set = ExportSet::single(Arc::new(export));
        NfsServer::bind_set(set, state, nfs_addr, mount_addr, config)
    }

    /// Serves every export of `exports` (each mounted as `/NAME`) on
    /// `nfs_addr` (NFS) and `mount_addr` (MOUNT). Fails if `exports` is
    /// empty or a directory cannot be opened.
    pub fn bind_exports(
        exports: &Exports,
        nfs_addr: SocketAddr,
        mount_addr: SocketAddr,
        config: NfsConfig,
    ) -> io::Result<NfsServer> {
        let (key, state) = NfsServer::key(&config)?;
        let set = ExportSet::open(exports, key, config.max_handles)?;
        NfsServer::bind_set(set, state, nfs_addr, mount_addr, config)
    }

    /// The handle key: kept in the state directory, or new.
    fn key(config: &NfsConfig) -> io::Result<([u8; 16], Option<StateDir>)> {
        match &config.state_dir {
            Some(dir) => {
                let state = StateDir::open(dir)?;
                Ok((state.key()?, Some(state)))
            }
            None => {
                (config.server.events)(&ServerEvent::Warning {
                    message: "no state directory: file handles will not survive a restart \
                              (clients must mount again)",
                });
                Ok((export::random_key()?, None))
            }
        }
    }

    fn bind_set(
        set: ExportSet,
        state: Option<StateDir>,
        nfs_addr: SocketAddr,
        mount_addr: SocketAddr,
        config: NfsConfig,
    ) -> io::Result<NfsServer> {
        if let Some(state) = &state {
            for e in set.iter() {
                e.keep_state(state)?;
            }
        }
        let exports = Arc::new(set);
        let nfs_stats = Arc::new(NfsStats::default());
        let mount = Arc::new(MountProgram::serving(
            exports.clone(),
            config.server.events.clone(),
            nfs_stats.clone(),
        ));
        let programs: Vec<Arc<dyn Program>> = vec![
            Arc::new(NfsProgram::serving(exports.clone(), nfs_stats.clone())),
            mount.clone(),
        ];
        let dispatcher = Dispatcher::new(programs, FragCache::new());
        let same = nfs_addr == mount_addr && nfs_addr.port() != 0;
        let addrs: &[SocketAddr] = if same {
            &[nfs_addr]
        } else {
            &[nfs_addr, mount_addr]
        };
        let rpc = RpcServer::bind(addrs, dispatcher, config.server)?;
        let bound = rpc.local_addrs();
        let nfs_addr = bound[0];
        let mount_addr = *bound.last().unwrap_or(&nfs_addr);
        Ok(NfsServer {
            rpc,
            exports,
            mount,
            nfs_stats,
            nfs_addr,
            mount_addr,
        })
    }

    /// The NFS and MOUNT counters: calls per procedure, errors, bytes
    /// read. Shared; they go on counting once the server runs. Together
    /// with [`stats`](Self::stats) (connections, replies, system calls).
    pub fn nfs_stats(&self) -> Arc<NfsStats> {
        self.nfs_stats.clone()
    }

    /// The exports served.
    pub fn exports(&self) -> &Arc<ExportSet> {
        &self.exports
    }

    /// The MOUNT program (its recorded mounts: [`MountProgram::mounts`]).
    pub fn mount_program(&self) -> &Arc<MountProgram> {
        &self.mount
    }

    /// The NFS address.
    pub fn nfs_addr(&self) -> SocketAddr {
        self.nfs_addr
    }

    /// The NFS port.
    pub fn nfs_port(&self) -> u16 {
        self.nfs_addr.port()
    }

    /// The MOUNT address.
    pub fn mount_addr(&self) -> SocketAddr {
        self.mount_addr
    }

    /// The MOUNT port.
    pub fn mount_port(&self) -> u16 {
        self.mount_addr.port()
    }

    /// The (first) export's name.
    pub fn export_name(&self) -> &str {
        self.exports.first().name()
    }

    /// The URL a libnfs client uses for the (first) export's root; append
    /// `/path/in/export` before the `?` for a file (see [`Self::url_for`]).
    pub fn url(&self) -> String {
        self.url_for("")
    }

    /// The URL of `path` (relative to the export root, `/`-separated).
    pub fn url_for(&self, path: &str) -> String {
        let host = match self.nfs_addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let path = path.trim_start_matches('/');
        let sep = if path.is_empty() { "" } else { "/" };
        format!(
            "nfs://{host}{}{sep}{path}?nfsport={}&mountport={}&version=3",
            self.export_name(),
            self.nfs_port(),
            self.mount_port()
        )
    }

    /// The server's counters: records, replies, READ replies and the
    /// system calls spent on them. Shared; they go on counting once the
    /// server is spawned or serving.
    pub fn stats(&self) -> Arc<ServerStats> {
        self.rpc.stats()
    }

    /// Serves on a background thread; the handle stops it.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        self.rpc.spawn()
    }

    /// Serves on this thread, forever.
    pub fn serve(self) -> io::Result<()> {
        self.rpc.serve()
    }

    /// The same export on the tokio driver, with `config`'s limits (the
    /// blocking [`ServerConfig`] given at bind time is then unused).
    #[cfg(feature = "tokio")]
    pub fn into_tokio(self, config: crate::server::TokioConfig) -> crate::server::TokioServer {
        crate::server::TokioServer::from_rpc(self.rpc, config)
    }
}
