//! MOUNT version 3 (RFC 1813 appendix I): how a client gets the root handle.
//!
//! MNT accepts the export name, or a directory below it
//! (`/export/sub/dir`, which libnfs asks for when a URL names a file in a
//! subdirectory), resolved name by name like LOOKUP. EXPORT lists the one
//! export as a well-formed `exports` list: libnfs calls it right after MNT
//! (to find nested exports) and fails the mount on a malformed reply.
//! Nothing is recorded per client, so DUMP is empty and UMNT/UMNTALL only
//! acknowledge.

use std::sync::Arc;

use bytes::BufMut;
use msgsplice::FragCache;

use crate::nfs::handle::FH_LEN;
use crate::nfs::{Export, Nfsstat};
use crate::reply::{Reply, ReplyBuilder, ReplyError};
use crate::rpc::{flavor, AcceptStat, CallHeader};
use crate::server::{Caller, Program};
use crate::xdr::{opaque_len, XdrDecoder, XdrPut, U32_LEN};

/// The MOUNT program number.
pub const MOUNT_PROGRAM: u32 = 100005;
/// The MOUNT version served.
pub const MOUNT_V3: u32 = 3;
/// Longest MOUNT path (`MNTPATHLEN`).
pub const MNT_PATH_LEN: u32 = 1024;

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

/// The MOUNT program over one [`Export`].
#[derive(Debug)]
pub struct MountProgram {
    export: Arc<Export>,
}

impl MountProgram {
    /// The MOUNT program for `export`.
    pub fn new(export: Arc<Export>) -> MountProgram {
        MountProgram { export }
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
        _caller: &Caller<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError> {
        let ok = |cap| ReplyBuilder::accepted(cache, call.xid, AcceptStat::Success, cap);
        let garbage = || Reply::accepted(cache, call.xid, AcceptStat::GarbageArgs);
        let mut d = XdrDecoder::new(args);
        match call.proc_num {
            NULL | UMNTALL => ok(0)?.finish(),
            UMNT => match d.string(MNT_PATH_LEN) {
                Ok(_) => ok(0)?.finish(),
                Err(_) => garbage(),
            },
            MNT => match d.string(MNT_PATH_LEN) {
                Ok(path) => self.mnt(ok(MNT_RES_LEN)?, path),
                Err(_) => garbage(),
            },
            DUMP => {
                let mut b = ok(U32_LEN)?;
                b.head().put_xdr_bool(false); // empty mountlist
                b.finish()
            }
            EXPORT => self.export_list(ok),
            _ => Reply::accepted(cache, call.xid, AcceptStat::ProcUnavail),
        }
    }
}

impl MountProgram {
    /// MNT: the handle of the export, or of a directory below it, and the
    /// flavors to use; or why not.
    fn mnt(&self, mut b: ReplyBuilder, path: &[u8]) -> Result<Reply, ReplyError> {
        let h = b.head();
        match self.export.mount_path(path) {
            Ok(id) => {
                h.put_u32(MountStat::Ok as u32);
                h.put_xdr_opaque(self.export.handle(id).as_bytes());
                h.put_u32(AUTH_FLAVORS.len() as u32);
                for f in AUTH_FLAVORS {
                    h.put_u32(f);
                }
            }
            Err(s) => h.put_u32(MountStat::from(s) as u32),
        }
        b.finish()
    }

    /// EXPORT: a list of one `exportnode`, the export, open to every
    /// client. `ok` makes the success reply with room for the results.
    fn export_list(
        &self,
        ok: impl FnOnce(usize) -> Result<ReplyBuilder, ReplyError>,
    ) -> Result<Reply, ReplyError> {
        let name = self.export.name().as_bytes();
        let mut b = ok(U32_LEN + opaque_len(name.len()) + 2 * U32_LEN)?;
        let h = b.head();
        h.put_xdr_bool(true); // an exportnode follows
        h.put_xdr_opaque(name); // ex_dir
        h.put_xdr_bool(false); // ex_groups: none (everyone)
        h.put_xdr_bool(false); // ex_next: end of list
        b.finish()
    }
}
