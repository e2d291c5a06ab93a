//! The NFSv3 procedures of a read-only export.
//!
//! Each procedure reads as three steps: decode its arguments into
//! validated values ([`super::args`]), do the file-system work through the
//! [`Export`], encode the results ([`super::res`]). A failure is a
//! [`ProcError`]; [`NfsProgram`] turns it into GARBAGE_ARGS or into the
//! failure status with the procedure's own [`FailBody`]. Every write
//! procedure answers NFS3ERR_ROFS.
//!
//! Before that, a call is routed to the export its (first) file handle
//! names, and refused with NFS3ERR_ACCES if the caller's address is not
//! among the export's `clients=`. The caller's AUTH_SYS identity, squashed
//! by the export's options, is checked against each object as Linux's nfsd
//! does (see [`crate::exports::access`](mod@crate::exports::access)): LOOKUP needs search permission on
//! the directory, READDIR and READDIRPLUS list (read) permission, READ and
//! READLINK read permission. Unlike nfsd, an owner who may execute but not
//! read a file is not let READ it: the export keeps to the mode bits.

use std::sync::Arc;

use bytes::BufMut;
use msgsplice::FragCache;

use super::args::{AccessArgs, ArgError, LookupArgs, ObjectArgs, ReadArgs};
use super::attr::{put_post_op_attr, Attr, Ftype, FATTR3_LEN, POST_OP_ATTR_LEN};
use super::export::{Export, MAX_NAME};
use super::readdir::{readdir, DIR_REPLY_MAX};
use super::res::{put_fh, FailBody, FsInfo, FsStat, PathConf, FH3_LEN};
use super::set::ExportSet;
use super::stats::NfsStats;
use super::{Nfsstat, NFS_PROGRAM, NFS_V3, READ_MAX, WRITE_MAX};
use crate::exports::{self, Identity};
use crate::reply::{FileRange, Reply, ReplyBuilder, ReplyData, ReplyError};
use crate::rpc::{AcceptStat, CallHeader};
use crate::server::{Caller, Program};
use crate::xdr::XdrDecoder;
use crate::xdr::{opaque_len, XdrPut, U32_LEN};

/// Procedure numbers (RFC 1813 section 3.3).
mod procs {
    pub const NULL: u32 = 0;
    pub const GETATTR: u32 = 1;
    pub const SETATTR: u32 = 2;
    pub const LOOKUP: u32 = 3;
    pub const ACCESS: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const READ: u32 = 6;
    pub const WRITE: u32 = 7;
    pub const CREATE: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const SYMLINK: u32 = 10;
    pub const MKNOD: u32 = 11;
    pub const REMOVE: u32 = 12;
    pub const RMDIR: u32 = 13;
    pub const RENAME: u32 = 14;
    pub const LINK: u32 = 15;
    pub const READDIR: u32 = 16;
    pub const READDIRPLUS: u32 = 17;
    pub const FSSTAT: u32 = 18;
    pub const FSINFO: u32 = 19;
    pub const PATHCONF: u32 = 20;
    pub const COMMIT: u32 = 21;
}

/// Encoded size of READ3resok after the attributes and before the data:
/// `count`, `eof`, and the data opaque's length word.
const READ_OK_HEAD_LEN: usize = 3 * U32_LEN;
/// PATHCONF `linkmax`: what ext4 allows.
const LINK_MAX: u32 = 65000;
/// FSINFO `rtmult` and `wtmult`: a page.
const IO_MULTIPLE: u32 = 4096;

/// How a procedure ends without its success reply.
#[derive(Debug)]
pub(super) enum ProcError {
    /// The arguments did not decode: GARBAGE_ARGS.
    Garbage,
    /// The procedure failed with this status. Its failure body carries the
    /// object's attributes, when known.
    Failed(Nfsstat, Option<Attr>),
    /// No reply could be built.
    Reply(ReplyError),
}

impl From<ArgError> for ProcError {
    fn from(e: ArgError) -> Self {
        match e {
            ArgError::Garbage => ProcError::Garbage,
            ArgError::Handle(stat) => ProcError::Failed(stat, None),
        }
    }
}

/// A failure whose object's attributes are not known.
impl From<Nfsstat> for ProcError {
    fn from(stat: Nfsstat) -> Self {
        ProcError::Failed(stat, None)
    }
}

impl From<ReplyError> for ProcError {
    fn from(e: ReplyError) -> Self {
        ProcError::Reply(e)
    }
}

/// A failure with the object's attributes `attr`, for `map_err`.
pub(super) fn failed_with(attr: &Attr) -> impl FnOnce(Nfsstat) -> ProcError {
    let attr = *attr;
    move |stat| ProcError::Failed(stat, Some(attr))
}

/// What a procedure needs to know about its call.
pub(super) struct Ctx<'c> {
    pub xid: u32,
    /// The caller's identity on the export, squashed.
    pub who: Identity,
    pub cache: &'c FragCache,
}

impl Ctx<'_> {
    /// A reply with NFS status `stat` written, and room for `capacity`
    /// more bytes of results.
    fn status(&self, stat: Nfsstat, capacity: usize) -> Result<ReplyBuilder, ReplyError> {
        let mut b = ReplyBuilder::accepted(
            self.cache,
            self.xid,
            AcceptStat::Success,
            U32_LEN + capacity,
        )?;
        b.head().put_u32(stat as u32);
        Ok(b)
    }

    /// A success reply (NFS3_OK written), with room for `capacity` bytes of
    /// results.
    pub fn ok(&self, capacity: usize) -> Result<ReplyBuilder, ReplyError> {
        self.status(Nfsstat::Ok, capacity)
    }

    /// The complete failure reply: `stat`, then `body` with `attr`.
    fn failure(
        &self,
        stat: Nfsstat,
        body: FailBody,
        attr: Option<&Attr>,
    ) -> Result<Reply, ReplyError> {
        let mut b = self.status(stat, body.max_len())?;
        body.put(b.head(), attr);
        b.finish()
    }
}

/// The NFS program (100003, version 3) over an [`ExportSet`].
#[derive(Debug)]
pub struct NfsProgram {
    exports: Arc<ExportSet>,
    stats: Arc<NfsStats>,
}

impl NfsProgram {
    /// The NFS program for one export.
    pub fn new(export: Arc<Export>) -> NfsProgram {
        NfsProgram::serving(Arc::new(ExportSet::single(export)), Arc::default())
    }

    /// The NFS program for every export of `exports`, counting in `stats`.
    pub fn serving(exports: Arc<ExportSet>, stats: Arc<NfsStats>) -> NfsProgram {
        NfsProgram { exports, stats }
    }

    /// The export a call's arguments are for: the one its first file
    /// handle names. Every NFSv3 procedure but NULL starts with one. A
    /// handle that names no export goes to the first, whose table then
    /// refuses it (so garbage arguments still win over a bad handle).
    fn route(&self, args: &[u8]) -> &Arc<Export> {
        let fh = XdrDecoder::new(args).opaque(super::args::MAX_FH);
        fh.ok()
            .and_then(|fh| self.exports.by_handle(fh))
            .unwrap_or(self.exports.first())
    }
}

impl Program for NfsProgram {
    fn program(&self) -> u32 {
        NFS_PROGRAM
    }

    fn versions(&self) -> (u32, u32) {
        (NFS_V3, NFS_V3)
    }

    fn call(
        &self,
        call: &CallHeader<'_>,
        caller: &Caller<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError> {
        use procs::*;
        self.stats.count_nfs(call.proc_num);
        if call.proc_num == NULL {
            return Reply::accepted(cache, call.xid, AcceptStat::Success);
        }
        let ex = &**self.route(args);
        let ctx = Ctx {
            xid: call.xid,
            who: ex.identity(&caller.cred),
            cache,
        };
        let res = match call.proc_num {
            _ if !ex.admits(caller.peer.ip()) => Err(ProcError::Failed(Nfsstat::Acces, None)),
            GETATTR => getattr(ex, &ctx, args),
            LOOKUP => lookup(ex, &ctx, args),
            ACCESS => access(ex, &ctx, args),
            READLINK => readlink(ex, &ctx, args),
            READ => read(ex, &ctx, args),
            READDIR => readdir(ex, &ctx, args, false),
            READDIRPLUS => readdir(ex, &ctx, args, true),
            FSSTAT => fsstat(ex, &ctx, args),
            FSINFO => fsinfo(ex, &ctx, args),
            PATHCONF => pathconf(ex, &ctx, args),
            // Not decoded: whatever they ask, the answer is the same.
            SETATTR | WRITE | CREATE | MKDIR | SYMLINK | MKNOD | REMOVE | RMDIR | RENAME | LINK
            | COMMIT => Err(ProcError::Failed(Nfsstat::Rofs, None)),
            _ => return Reply::accepted(cache, call.xid, AcceptStat::ProcUnavail),
        };
        if res.is_err() {
            self.stats.count_error();
        }
        match res {
            Ok(r) => {
                if call.proc_num == READ {
                    self.stats.count_read_bytes(r.data().len());
                }
                Ok(r)
            }
            Err(ProcError::Garbage) => Reply::accepted(cache, call.xid, AcceptStat::GarbageArgs),
            Err(ProcError::Failed(stat, attr)) => {
                ctx.failure(stat, fail_body(call.proc_num), attr.as_ref())
            }
            Err(ProcError::Reply(e)) => Err(e),
        }
    }
}

/// The `resfail` arm of procedure `proc_num`'s result.
fn fail_body(proc_num: u32) -> FailBody {
    use procs::*;
    match proc_num {
        GETATTR => FailBody::Void,
        SETATTR | WRITE | CREATE | MKDIR | SYMLINK | MKNOD | REMOVE | RMDIR | COMMIT => {
            FailBody::Wcc
        }
        LINK => FailBody::PostOpAttrWcc,
        RENAME => FailBody::TwoWcc,
        _ => FailBody::PostOpAttr,
    }
}

/// GETATTR: the object's attributes.
fn getattr(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ObjectArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    let mut b = ctx.ok(FATTR3_LEN)?;
    attr.put(b.head());
    Ok(b.finish()?)
}

/// LOOKUP: a name in a directory the caller may search.
fn lookup(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = LookupArgs::decode(ex, args)?;
    let dir_attr = ex.getattr(args.dir)?;
    if dir_attr.kind != Ftype::Dir {
        return Err(ProcError::Failed(Nfsstat::NotDir, Some(dir_attr)));
    }
    if !exports::may_search_dir(&ctx.who, &dir_attr.owner()) {
        return Err(ProcError::Failed(Nfsstat::Acces, Some(dir_attr)));
    }
    let (id, attr, dir_attr) = ex
        .lookup(args.dir, args.name)
        .map_err(failed_with(&dir_attr))?;
    let mut b = ctx.ok(FH3_LEN + 2 * POST_OP_ATTR_LEN)?;
    put_fh(b.head(), ex, id);
    put_post_op_attr(b.head(), Some(&attr));
    put_post_op_attr(b.head(), Some(&dir_attr));
    Ok(b.finish()?)
}

/// ACCESS: which of the asked rights the caller has.
fn access(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = AccessArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    let granted = exports::access(&ctx.who, &attr.owner(), args.want);
    let mut b = ctx.ok(POST_OP_ATTR_LEN + U32_LEN)?;
    put_post_op_attr(b.head(), Some(&attr));
    b.head().put_u32(granted);
    Ok(b.finish()?)
}

/// READLINK: a symbolic link's target.
fn readlink(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ObjectArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    if !exports::may_read(&ctx.who, &attr.owner()) {
        return Err(ProcError::Failed(Nfsstat::Acces, Some(attr)));
    }
    let (target, attr) = ex.readlink(args.object)?;
    let mut b = ctx.ok(POST_OP_ATTR_LEN + opaque_len(target.len()))?;
    put_post_op_attr(b.head(), Some(&attr));
    b.head().put_xdr_opaque(&target);
    Ok(b.finish()?)
}

/// READ: the data goes as a file range (sent from the page cache), with
/// the count clipped to the end of the file and to [`READ_MAX`].
fn read(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ReadArgs::decode(ex, args)?;
    let (file, attr) = ex
        .open_file(args.file)
        .map_err(|stat| ProcError::Failed(stat, ex.getattr(args.file).ok()))?;
    // The attributes come from the statx the reply needs anyway: the
    // check costs no system call.
    if !exports::may_read(&ctx.who, &attr.owner()) {
        return Err(ProcError::Failed(Nfsstat::Acces, Some(attr)));
    }
    let (n, eof) = read_span(attr.size, args.offset, args.count);
    let data = match n {
        0 => ReplyData::None,
        len => ReplyData::File(FileRange {
            file,
            offset: args.offset,
            len,
        }),
    };
    let mut b = ctx.ok(POST_OP_ATTR_LEN + READ_OK_HEAD_LEN)?;
    put_post_op_attr(b.head(), Some(&attr));
    b.head().put_u32(n as u32);
    b.head().put_xdr_bool(eof);
    b.put_opaque_data(data);
    Ok(b.finish()?)
}

/// Bytes a READ of `count` at `offset` returns from a file of `size`
/// bytes, and whether that reaches the end of the file.
pub(super) fn read_span(size: u64, offset: u64, count: u32) -> (u64, bool) {
    if offset >= size {
        return (0, true);
    }
    let n = (count.min(READ_MAX) as u64).min(size - offset);
    (n, offset + n >= size)
}

/// FSSTAT: space and file slots of the exported file system.
fn fsstat(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ObjectArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    let vfs = ex.statvfs().map_err(failed_with(&attr))?;
    let mut b = ctx.ok(POST_OP_ATTR_LEN + FsStat::LEN)?;
    put_post_op_attr(b.head(), Some(&attr));
    FsStat::from_statvfs(&vfs).put(b.head());
    Ok(b.finish()?)
}

/// FSINFO: the server's transfer sizes and what the export supports.
fn fsinfo(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ObjectArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    let info = FsInfo {
        rtmax: READ_MAX,
        rtpref: READ_MAX,
        rtmult: IO_MULTIPLE,
        wtmax: WRITE_MAX,
        wtpref: WRITE_MAX,
        wtmult: IO_MULTIPLE,
        dtpref: DIR_REPLY_MAX as u32,
        maxfilesize: i64::MAX as u64,
        time_delta: (0, 1),
        properties: FsInfo::FSF3_LINK | FsInfo::FSF3_SYMLINK | FsInfo::FSF3_HOMOGENEOUS,
    };
    let mut b = ctx.ok(POST_OP_ATTR_LEN + FsInfo::LEN)?;
    put_post_op_attr(b.head(), Some(&attr));
    info.put(b.head());
    Ok(b.finish()?)
}

/// PATHCONF: name and link limits.
fn pathconf(ex: &Export, ctx: &Ctx<'_>, args: &[u8]) -> Result<Reply, ProcError> {
    let args = ObjectArgs::decode(ex, args)?;
    let attr = ex.getattr(args.object)?;
    let conf = PathConf {
        linkmax: LINK_MAX,
        name_max: MAX_NAME as u32,
        no_trunc: true,
        chown_restricted: true,
        case_insensitive: false,
        case_preserving: true,
    };
    let mut b = ctx.ok(POST_OP_ATTR_LEN + PathConf::LEN)?;
    put_post_op_attr(b.head(), Some(&attr));
    conf.put(b.head());
    Ok(b.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_span_at_and_past_eof() {
        assert_eq!(read_span(10, 0, 4), (4, false));
        assert_eq!(read_span(10, 6, 4), (4, true));
        assert_eq!(read_span(10, 7, 4), (3, true));
        assert_eq!(read_span(10, 10, 4), (0, true));
        assert_eq!(read_span(10, 11, 4), (0, true));
        assert_eq!(read_span(0, 0, 4), (0, true));
        assert_eq!(read_span(10, 0, 0), (0, false));
        assert_eq!(read_span(u64::MAX, u64::MAX - 1, 4), (1, true));
        assert_eq!(read_span(1 << 30, 0, u32::MAX), (READ_MAX as u64, false));
    }
}
