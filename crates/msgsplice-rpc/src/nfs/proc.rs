//! The NFSv3 procedures of a read-only export.

use std::sync::Arc;

use bytes::BufMut;
use msgsplice::FragCache;

use super::attr::{put_post_op_attr, Attr, Ftype, POST_OP_ATTR_LEN};
use super::export::Export;
use super::handle::FH_LEN;
use super::{Nfsstat, NFS_PROGRAM, NFS_V3, READ_MAX, WRITE_MAX};
use crate::reply::{FileRange, Reply, ReplyBuilder, ReplyData, ReplyError};
use crate::rpc::{AcceptStat, CallHeader, Credential};
use crate::server::Program;
use crate::xdr::{opaque_len, XdrDecoder, XdrError, XdrPut};

/// Largest `nfs_fh3` accepted in arguments (RFC 1813: 64 bytes).
pub(super) const MAX_FH: u32 = 64;
/// Largest file name accepted in arguments before the NAME_MAX check.
pub(super) const MAX_NAME_ARG: u32 = 1024;

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

/// How a procedure can fail to produce its own reply.
pub(super) enum ProcError {
    /// The arguments did not decode: GARBAGE_ARGS.
    Garbage,
    /// No reply could be built.
    Reply(ReplyError),
}

impl From<XdrError> for ProcError {
    fn from(_: XdrError) -> Self {
        ProcError::Garbage
    }
}

impl From<ReplyError> for ProcError {
    fn from(e: ReplyError) -> Self {
        ProcError::Reply(e)
    }
}

/// What a procedure needs to know about its call.
pub(super) struct Ctx<'c, 'a> {
    pub xid: u32,
    pub cred: &'c Credential<'a>,
    pub cache: &'c FragCache,
}

impl Ctx<'_, '_> {
    /// A successful RPC reply with NFS status `stat` written, and room for
    /// `capacity` more bytes.
    pub fn status(&self, stat: Nfsstat, capacity: usize) -> Result<ReplyBuilder, ReplyError> {
        let mut b =
            ReplyBuilder::accepted(self.cache, self.xid, AcceptStat::Success, 4 + capacity)?;
        b.head().put_u32(stat as u32);
        Ok(b)
    }

    /// A failure reply: status, then `words` zero words (absent attributes,
    /// empty wcc_data).
    pub fn fail(&self, stat: Nfsstat, words: usize) -> Result<Reply, ProcError> {
        let mut b = self.status(stat, 4 * words)?;
        for _ in 0..words {
            b.head().put_u32(0);
        }
        Ok(b.finish()?)
    }

    /// A failure reply with the object's attributes, when known.
    pub fn fail_attr(&self, stat: Nfsstat, attr: Option<&Attr>) -> Result<Reply, ProcError> {
        let mut b = self.status(stat, POST_OP_ATTR_LEN)?;
        put_post_op_attr(b.head(), attr);
        Ok(b.finish()?)
    }
}

/// The NFS program (100003, version 3) over one [`Export`].
#[derive(Debug)]
pub struct NfsProgram {
    export: Arc<Export>,
}

impl NfsProgram {
    /// The NFS program for `export`.
    pub fn new(export: Arc<Export>) -> NfsProgram {
        NfsProgram { export }
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
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError> {
        use procs::*;
        let ctx = Ctx {
            xid: call.xid,
            cred: &call.cred,
            cache,
        };
        let d = &mut XdrDecoder::new(args);
        let ex = &*self.export;
        let res = match call.proc_num {
            NULL => Ok(Reply::accepted(cache, call.xid, AcceptStat::Success)?),
            GETATTR => getattr(ex, &ctx, d),
            LOOKUP => lookup(ex, &ctx, d),
            ACCESS => access(ex, &ctx, d),
            READLINK => readlink(ex, &ctx, d),
            READ => read(ex, &ctx, d),
            READDIR => super::readdir::readdir(ex, &ctx, d, false),
            READDIRPLUS => super::readdir::readdir(ex, &ctx, d, true),
            FSSTAT => fsstat(ex, &ctx, d),
            FSINFO => fsinfo(ex, &ctx, d),
            PATHCONF => pathconf(ex, &ctx, d),
            // Every write procedure: NFS3ERR_ROFS with empty wcc_data
            // (pre_op_attr and post_op_attr absent: two zero words each).
            SETATTR | WRITE | CREATE | MKDIR | SYMLINK | MKNOD | REMOVE | RMDIR | COMMIT => {
                ctx.fail(Nfsstat::Rofs, 2)
            }
            RENAME => ctx.fail(Nfsstat::Rofs, 4),
            LINK => ctx.fail(Nfsstat::Rofs, 3),
            _ => return Reply::accepted(cache, call.xid, AcceptStat::ProcUnavail),
        };
        match res {
            Ok(r) => Ok(r),
            Err(ProcError::Garbage) => Reply::accepted(cache, call.xid, AcceptStat::GarbageArgs),
            Err(ProcError::Reply(e)) => Err(e),
        }
    }
}

/// Decodes an `nfs_fh3` and verifies it: the node id, or the status to
/// answer with.
pub(super) fn decode_fh(
    ex: &Export,
    d: &mut XdrDecoder<'_>,
) -> Result<Result<u64, Nfsstat>, XdrError> {
    let fh = d.opaque(MAX_FH)?;
    Ok(ex.verify(fh))
}

/// Writes `post_op_fh3`-less `nfs_fh3`: the handle opaque.
pub(super) fn put_fh<B: BufMut>(b: &mut B, ex: &Export, id: u64) {
    b.put_xdr_opaque(ex.handle(id).as_bytes());
}

/// Encoded size of an `nfs_fh3` of this server.
pub(super) const FH3_LEN: usize = opaque_len(FH_LEN);

macro_rules! try_stat {
    ($ctx:expr, $e:expr, $words:expr) => {
        match $e {
            Ok(v) => v,
            Err(s) => return $ctx.fail(s, $words),
        }
    };
}
pub(super) use try_stat;

fn getattr(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = try_stat!(ctx, decode_fh(ex, d)?, 0);
    let a = try_stat!(ctx, ex.getattr(id), 0);
    let mut b = ctx.status(Nfsstat::Ok, super::attr::FATTR3_LEN)?;
    a.put(b.head());
    Ok(b.finish()?)
}

fn lookup(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let dir = decode_fh(ex, d)?;
    let name = d.string(MAX_NAME_ARG)?;
    let dir = try_stat!(ctx, dir, 1);
    let dir_attr = try_stat!(ctx, ex.getattr(dir), 1);
    if dir_attr.kind != Ftype::Dir {
        return ctx.fail_attr(Nfsstat::NotDir, Some(&dir_attr));
    }
    if !dir_attr.may(ctx.cred).1 {
        return ctx.fail_attr(Nfsstat::Acces, Some(&dir_attr));
    }
    let (id, attr, dir_attr) = match ex.lookup(dir, name) {
        Ok(x) => x,
        Err(s) => return ctx.fail_attr(s, Some(&dir_attr)),
    };
    let mut b = ctx.status(Nfsstat::Ok, FH3_LEN + 2 * POST_OP_ATTR_LEN)?;
    put_fh(b.head(), ex, id);
    put_post_op_attr(b.head(), Some(&attr));
    put_post_op_attr(b.head(), Some(&dir_attr));
    Ok(b.finish()?)
}

fn access(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = decode_fh(ex, d)?;
    let want = d.u32()?;
    let id = try_stat!(ctx, id, 1);
    let a = try_stat!(ctx, ex.getattr(id), 1);
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + 4)?;
    put_post_op_attr(b.head(), Some(&a));
    b.head().put_u32(a.access(ctx.cred, want));
    Ok(b.finish()?)
}

fn readlink(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = try_stat!(ctx, decode_fh(ex, d)?, 1);
    let (target, a) = try_stat!(ctx, ex.readlink(id), 1);
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + opaque_len(target.len()))?;
    put_post_op_attr(b.head(), Some(&a));
    b.head().put_xdr_opaque(&target);
    Ok(b.finish()?)
}

/// READ: the data goes as a file range (sent from the page cache), with
/// the count clipped to the end of the file and to [`READ_MAX`].
fn read(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = decode_fh(ex, d)?;
    let offset = d.u64()?;
    let count = d.u32()?;
    let id = try_stat!(ctx, id, 1);
    let (file, a) = match ex.open_file(id) {
        Ok(x) => x,
        Err(s) => return ctx.fail_attr(s, ex.getattr(id).ok().as_ref()),
    };
    let (r, x) = a.may(ctx.cred);
    // As knfsd does, a file's owner may read what they may execute.
    if !(r || (x && matches!(ctx.cred, Credential::Sys(s) if s.uid == a.uid))) {
        return ctx.fail_attr(Nfsstat::Acces, Some(&a));
    }
    let (n, eof) = read_span(a.size, offset, count);
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + 12)?;
    put_post_op_attr(b.head(), Some(&a));
    b.head().put_u32(n as u32);
    b.head().put_xdr_bool(eof);
    let data = if n == 0 {
        ReplyData::None
    } else {
        ReplyData::File(FileRange {
            file,
            offset,
            len: n,
        })
    };
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

fn fsstat(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = try_stat!(ctx, decode_fh(ex, d)?, 1);
    let a = try_stat!(ctx, ex.getattr(id), 1);
    let vfs = match ex.statvfs() {
        Ok(v) => v,
        Err(s) => return ctx.fail_attr(s, Some(&a)),
    };
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + 6 * 8 + 4)?;
    put_post_op_attr(b.head(), Some(&a));
    let frsize = vfs.f_frsize;
    b.head().put_u64(vfs.f_blocks.saturating_mul(frsize));
    b.head().put_u64(vfs.f_bfree.saturating_mul(frsize));
    b.head().put_u64(vfs.f_bavail.saturating_mul(frsize));
    b.head().put_u64(vfs.f_files);
    b.head().put_u64(vfs.f_ffree);
    b.head().put_u64(vfs.f_favail);
    b.head().put_u32(0); // invarsec: may change at any time
    Ok(b.finish()?)
}

fn fsinfo(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    const FSF3_LINK: u32 = 0x1;
    const FSF3_SYMLINK: u32 = 0x2;
    const FSF3_HOMOGENEOUS: u32 = 0x8;
    const FSF3_CANSETTIME: u32 = 0x10;
    let id = try_stat!(ctx, decode_fh(ex, d)?, 1);
    let a = try_stat!(ctx, ex.getattr(id), 1);
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + 7 * 4 + 8 + 8 + 4)?;
    put_post_op_attr(b.head(), Some(&a));
    let h = b.head();
    h.put_u32(READ_MAX); // rtmax
    h.put_u32(READ_MAX); // rtpref
    h.put_u32(4096); // rtmult
    h.put_u32(WRITE_MAX); // wtmax
    h.put_u32(WRITE_MAX); // wtpref
    h.put_u32(4096); // wtmult
    h.put_u32(super::readdir::DIR_REPLY_MAX as u32); // dtpref
    h.put_u64(i64::MAX as u64); // maxfilesize
    h.put_u32(0); // time_delta: 1 ns
    h.put_u32(1);
    h.put_u32(FSF3_LINK | FSF3_SYMLINK | FSF3_HOMOGENEOUS | FSF3_CANSETTIME);
    Ok(b.finish()?)
}

fn pathconf(ex: &Export, ctx: &Ctx<'_, '_>, d: &mut XdrDecoder<'_>) -> Result<Reply, ProcError> {
    let id = try_stat!(ctx, decode_fh(ex, d)?, 1);
    let a = try_stat!(ctx, ex.getattr(id), 1);
    let mut b = ctx.status(Nfsstat::Ok, POST_OP_ATTR_LEN + 6 * 4)?;
    put_post_op_attr(b.head(), Some(&a));
    let h = b.head();
    h.put_u32(65000); // linkmax
    h.put_u32(super::export::MAX_NAME as u32); // name_max
    h.put_xdr_bool(true); // no_trunc: long names are refused, not cut
    h.put_xdr_bool(true); // chown_restricted
    h.put_xdr_bool(false); // case_insensitive
    h.put_xdr_bool(true); // case_preserving
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
