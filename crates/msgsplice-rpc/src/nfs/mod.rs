//! A read-only NFSv3 export (RFC 1813) with its MOUNT v3 service.
//!
//! [`NfsServer`] binds the NFS and MOUNT ports (on 127.0.0.1 unless told
//! otherwise) and serves one directory. Both listeners serve both programs,
//! so the ports can also be the same. No portmapper: clients are told the
//! ports, e.g. `nfs://127.0.0.1/export/file?nfsport=N&mountport=M&version=3`.
//!
//! - [`handle`]: unforgeable file handles and the table behind them.
//! - [`export`]: the exported tree, reached only by safe resolution.
//! - [`attr`]: `fattr3` and access checks.
//! - `args`, `proc`, `res` and `readdir` (private): the NFS procedures.
//!   `args` decodes each procedure's arguments into validated values
//!   (handles verified), `res` encodes results and the failure body of
//!   each procedure, `proc` runs them (decode, file-system work, encode)
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

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::Arc;

use msgsplice::FragCache;

pub use export::Export;
pub use proc::NfsProgram;

use crate::mount::MountProgram;
use crate::server::{Dispatcher, Program, RpcServer, ServerConfig, ServerHandle, ServerStats};

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
    /// The name clients mount (`/export` by default). Must not be `/`:
    /// libnfs splits `nfs://host/a/file` into export `/a` and file `/file`.
    pub export_name: String,
    /// Largest number of file handles remembered.
    pub max_handles: usize,
    /// RPC server limits, hooks and transport.
    pub server: ServerConfig,
}

impl Default for NfsConfig {
    fn default() -> Self {
        NfsConfig {
            export_name: "/export".into(),
            max_handles: 1 << 20,
            server: ServerConfig::default(),
        }
    }
}

/// A read-only NFSv3 server for one directory, bound and ready to serve.
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
    export: Arc<Export>,
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

    /// [`bind`](Self::bind) with explicit settings.
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
        let export = Arc::new(Export::open(root.as_ref(), name, config.max_handles)?);
        let programs: Vec<Arc<dyn Program>> = vec![
            Arc::new(NfsProgram::new(export.clone())),
            Arc::new(MountProgram::new(export.clone())),
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
            export,
            nfs_addr,
            mount_addr,
        })
    }

    /// The NFS address.
    pub fn nfs_addr(&self) -> SocketAddr {
        self.nfs_addr
    }

    /// The NFS port.
    pub fn nfs_port(&self) -> u16 {
        self.nfs_addr.port()
    }

    /// The MOUNT port.
    pub fn mount_port(&self) -> u16 {
        self.mount_addr.port()
    }

    /// The export's name.
    pub fn export_name(&self) -> &str {
        self.export.name()
    }

    /// The URL a libnfs client uses for the export root; append
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
            self.export.name(),
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
