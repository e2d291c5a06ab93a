//! MOUNT version 3 (RFC 1813 appendix I): how a client gets the root handle.
//!
//! - MNT accepts an export's path (`/name`), or a directory below it
//!   (`/name/sub/dir`, which libnfs asks for when a URL names a file in a
//!   subdirectory), resolved name by name like LOOKUP. A client outside
//!   the export's `clients=` gets MNT3ERR_ACCES. A successful MNT is
//!   recorded (client address and path) for DUMP.
//! - UMNT forgets one recorded mount of the caller, UMNTALL all of them.
//!   Both always succeed (the protocol has no failure for them).
//! - EXPORT lists every export with the clients allowed to mount it
//!   (`*` when anyone may, as Linux's mountd says it), DUMP the recorded
//!   mounts with the client's address as its host name.
//!
//! Every MNT, refused MNT, UMNT and UMNTALL is reported as a
//! [`ServerEvent`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::BufMut;
use msgsplice::FragCache;

use crate::nfs::handle::FH_LEN;
use crate::nfs::{Export, ExportSet, NfsStats, Nfsstat};
use crate::reply::{Reply, ReplyBuilder, ReplyError};
use crate::rpc::{flavor, AcceptStat, CallHeader};
use crate::server::{Caller, EventSink, Program, ServerEvent};
use crate::xdr::{opaque_len, XdrDecoder, XdrPut, U32_LEN};

/// The MOUNT program number.
pub const MOUNT_PROGRAM: u32 = 100005;
/// The MOUNT version served.
pub const MOUNT_V3: u32 = 3;
/// Longest MOUNT path (`MNTPATHLEN`).
pub const MNT_PATH_LEN: u32 = 1024;
/// Mounts remembered for DUMP; MNT still succeeds past it, unrecorded.
pub const MAX_MOUNTS: usize = 4096;
/// Largest EXPORT or DUMP reply body; a longer list is cut short there
/// (kept under half a fragment folio, like directory replies).
pub const LIST_REPLY_MAX: usize = 30 * 1024;

/// `mountstat3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[non_exhaustive]
pub enum MountStat {
    /// Success.
    Ok = 0,
    /// Not owner.
    Perm = 1,
    /// No such directory.
    NoEnt = 2,
    /// I/O error.
    Io = 5,
    /// Permission denied.
    Acces = 13,
    /// Not a directory.
    NotDir = 20,
    /// Invalid argument.
    Inval = 22,
    /// Path too long.
    NameTooLong = 63,
    /// Server fault.
    ServerFault = 10006,
}

impl MountStat {
    /// The protocol's name of the status (`MNT3ERR_ACCES`, ...).
    pub fn name(self) -> &'static str {
        match self {
            MountStat::Ok => "MNT3_OK",
            MountStat::Perm => "MNT3ERR_PERM",
            MountStat::NoEnt => "MNT3ERR_NOENT",
            MountStat::Io => "MNT3ERR_IO",
            MountStat::Acces => "MNT3ERR_ACCES",
            MountStat::NotDir => "MNT3ERR_NOTDIR",
            MountStat::Inval => "MNT3ERR_INVAL",
            MountStat::NameTooLong => "MNT3ERR_NAMETOOLONG",
            MountStat::ServerFault => "MNT3ERR_SERVERFAULT",
        }
    }
}

impl From<Nfsstat> for MountStat {
    fn from(s: Nfsstat) -> MountStat {
        match s {
            Nfsstat::Perm => MountStat::Perm,
            Nfsstat::NoEnt | Nfsstat::Stale => MountStat::NoEnt,
            Nfsstat::Acces => MountStat::Acces,
            Nfsstat::NotDir => MountStat::NotDir,
            Nfsstat::Inval => MountStat::Inval,
            Nfsstat::NameTooLong => MountStat::NameTooLong,
            Nfsstat::ServerFault => MountStat::ServerFault,
            _ => MountStat::Io,
        }
    }
}

/// One recorded mount: who, and which path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The client's address.
    pub host: IpAddr,
    /// The path it mounted, as sent.
    pub path: Vec<u8>,
}

/// The MOUNT program over an [`ExportSet`].
pub struct MountProgram {
    exports: Arc<ExportSet>,
    mounts: Mutex<Vec<MountEntry>>,
    events: EventSink,
    stats: Arc<NfsStats>,
}

impl std::fmt::Debug for MountProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountProgram")
            .field("exports", &self.exports)
            .finish_non_exhaustive()
    }
}

impl MountProgram {
    /// The MOUNT program for one export, reporting to no one.
    pub fn new(export: Arc<Export>) -> MountProgram {
        let quiet: EventSink = Arc::new(|_| {});
        MountProgram::serving(Arc::new(ExportSet::single(export)), quiet, Arc::default())
    }

    /// The MOUNT program for `exports`, reporting mounts to `events` and
    /// counting calls in `stats`.
    pub fn serving(
        exports: Arc<ExportSet>,
        events: EventSink,
        stats: Arc<NfsStats>,
    ) -> MountProgram {
        MountProgram {
            exports,
            mounts: Mutex::new(Vec::new()),
            events,
            stats,
        }
    }

    /// The mounts recorded now.
    pub fn mounts(&self) -> Vec<MountEntry> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<MountEntry>> {
        // Every change is one whole push or retain: no half-made state.
        self.mounts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const NULL: u32 = 0;
const MNT: u32 = 1;
const DUMP: u32 = 2;
const UMNT: u32 = 3;
const UMNTALL: u32 = 4;
const EXPORT: u32 = 5;

/// Authentication flavors offered to a mounting client, best first.
const AUTH_FLAVORS: [u32; 2] = [flavor::AUTH_SYS, flavor::AUTH_NONE];
/// Encoded size of `mountres3`, at most: status, `fhandle3`, and the
/// `auth_flavors<>` array (length word and flavors).
const MNT_RES_LEN: usize = U32_LEN + opaque_len(FH_LEN) + U32_LEN + AUTH_FLAVORS.len() * U32_LEN;

impl Program for MountProgram {
    fn program(&self) -> u32 {
        MOUNT_PROGRAM
    }

    fn versions(&self) -> (u32, u32) {
        (MOUNT_V3, MOUNT_V3)
    }

    fn call(
        &self,
        call: &CallHeader<'_>,
        caller: &Caller<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError> {
        let ok = |cap| ReplyBuilder::accepted(cache, call.xid, AcceptStat::Success, cap);
        let garbage = || Reply::accepted(cache, call.xid, AcceptStat::GarbageArgs);
        let mut d = XdrDecoder::new(args);
        self.stats.count_mount(call.proc_num);
        match call.proc_num {
            NULL => ok(0)?.finish(),
            UMNTALL => {
                self.umnt(caller.peer, None);
                ok(0)?.finish()
            }
            UMNT => match d.string(MNT_PATH_LEN) {
                Ok(path) => {
                    self.umnt(caller.peer, Some(path));
                    ok(0)?.finish()
                }
                Err(_) => garbage(),
            },
            MNT => match d.string(MNT_PATH_LEN) {
                Ok(path) => self.mnt(ok(MNT_RES_LEN)?, caller.peer, path),
                Err(_) => garbage(),
            },
            DUMP => self.dump(ok),
            EXPORT => self.export_list(ok),
            _ => Reply::accepted(cache, call.xid, AcceptStat::ProcUnavail),
        }
    }
}

/// Room a list reply may take: what it needs, at most [`LIST_REPLY_MAX`].
fn list_room(items: impl Iterator<Item = usize>) -> usize {
    let mut room = U32_LEN; // the end of the list
    for n in items {
        if room + n > LIST_REPLY_MAX {
            break;
        }
        room += n;
    }
    room
}

impl MountProgram {
    /// MNT: the handle of the export, or of a directory below it, and the
    /// flavors to use; or why not. Records and reports the mount.
    fn mnt(&self, mut b: ReplyBuilder, peer: SocketAddr, path: &[u8]) -> Result<Reply, ReplyError> {
        let h = b.head();
        match self.resolve(peer.ip(), path) {
            Ok((ex, id)) => {
                h.put_u32(MountStat::Ok as u32);
                h.put_xdr_opaque(ex.handle(id).as_bytes());
                h.put_u32(AUTH_FLAVORS.len() as u32);
                for f in AUTH_FLAVORS {
                    h.put_u32(f);
                }
                self.record(peer.ip(), path);
                (self.events)(&ServerEvent::Mounted { peer, path });
            }
            Err(s) => {
                self.stats.count_error();
                h.put_u32(s as u32);
                let why = s.name();
                (self.events)(&ServerEvent::MountRefused { peer, path, why });
            }
        }
        b.finish()
    }

    /// The export `path` is in and the directory it names, if `host` may
    /// mount it.
    fn resolve(&self, host: IpAddr, path: &[u8]) -> Result<(&Arc<Export>, u64), MountStat> {
        let ex = self.exports.for_mount(path).ok_or(MountStat::NoEnt)?;
        if !ex.admits(host) {
            return Err(MountStat::Acces);
        }
        let id = ex.mount_path(path).map_err(MountStat::from)?;
        Ok((ex, id))
    }

    /// Remembers that `host` mounted `path` (once per host and path).
    fn record(&self, host: IpAddr, path: &[u8]) {
        let mut mounts = self.lock();
        let known = mounts.iter().any(|m| m.host == host && m.path == path);
        if !known && mounts.len() < MAX_MOUNTS {
            mounts.push(MountEntry {
                host,
                path: path.to_vec(),
            });
        }
    }

    /// UMNT (`Some(path)`) or UMNTALL (`None`): forgets the caller's
    /// mounts of `path`, or all of them, and reports it.
    fn umnt(&self, peer: SocketAddr, path: Option<&[u8]>) {
        let host = peer.ip();
        self.lock()
            .retain(|m| m.host != host || path.is_some_and(|p| p != m.path));
        (self.events)(&ServerEvent::Unmounted { peer, path });
    }

    /// DUMP: the recorded mounts, as a `mountlist`.
    fn dump(
        &self,
        ok: impl FnOnce(usize) -> Result<ReplyBuilder, ReplyError>,
    ) -> Result<Reply, ReplyError> {
        let mounts = self.lock().clone();
        let hosts: Vec<String> = mounts.iter().map(|m| m.host.to_string()).collect();
        let size =
            |i: usize| U32_LEN + opaque_len(hosts[i].len()) + opaque_len(mounts[i].path.len());
        let room = list_room((0..mounts.len()).map(size));
        let mut b = ok(room)?;
        let mut used = U32_LEN;
        for (i, m) in mounts.iter().enumerate() {
            used += size(i);
            if used > room {
                break;
            }
            let h = b.head();
            h.put_xdr_bool(true); // an entry follows
            h.put_xdr_opaque(hosts[i].as_bytes()); // ml_hostname
            h.put_xdr_opaque(&m.path); // ml_directory
        }
        b.head().put_xdr_bool(false);
        b.finish()
    }

    /// EXPORT: every export, with the clients that may mount it as its
    /// groups (`*` for everyone).
    fn export_list(
        &self,
        ok: impl FnOnce(usize) -> Result<ReplyBuilder, ReplyError>,
    ) -> Result<Reply, ReplyError> {
        let nodes: Vec<(&str, Vec<String>)> = self
            .exports
            .iter()
            .map(|e| {
                let clients = &e.options().clients;
                let groups = match clients.is_empty() {
                    true => vec!["*".to_owned()],
                    false => clients.iter().map(|c| c.to_string()).collect(),
                };
                (e.name(), groups)
            })
            .collect();
        let size = |(name, groups): &(&str, Vec<String>)| {
            let g: usize = groups.iter().map(|g| U32_LEN + opaque_len(g.len())).sum();
            U32_LEN + opaque_len(name.len()) + g + U32_LEN
        };
        let room = list_room(nodes.iter().map(size));
        let mut b = ok(room)?;
        let mut used = U32_LEN;
        for node in &nodes {
            used += size(node);
            if used > room {
                break;
            }
            let h = b.head();
            h.put_xdr_bool(true); // an exportnode follows
            h.put_xdr_opaque(node.0.as_bytes()); // ex_dir
            for g in &node.1 {
                h.put_xdr_bool(true); // a groupnode follows
                h.put_xdr_opaque(g.as_bytes()); // gr_name
            }
            h.put_xdr_bool(false); // end of ex_groups
        }
        b.head().put_xdr_bool(false); // end of the list
        b.finish()
    }
}
