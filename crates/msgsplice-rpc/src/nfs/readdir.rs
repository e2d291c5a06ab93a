//! READDIR and READDIRPLUS.
//!
//! Cookies are the directory's own `d_off` positions (what `getdents64`
//! returns and `lseek` accepts), so a listing continues where the last
//! reply stopped without re-reading the directory. `.` and `..` are not
//! listed. The cookie verifier is always zero, as for most local
//! filesystems under knfsd.

use std::os::fd::AsFd;

use bytes::BufMut;
use rustix::fs::{AtFlags, Dir};

use super::attr::{put_post_op_attr, Attr, POST_OP_ATTR_LEN};
use super::export::Export;
use super::proc::{decode_fh, put_fh, try_stat, Ctx, ProcError, FH3_LEN};
use super::Nfsstat;
use crate::reply::Reply;
use crate::xdr::{opaque_len, XdrDecoder, XdrPut};

/// Largest directory reply (whole RPC body), whatever the client allows.
/// Kept under half a fragment folio so the head is a cheap bump allocation.
pub const DIR_REPLY_MAX: usize = 30 * 1024;
/// Bytes of a reply before and after the entries: status, post_op_attr,
/// cookieverf, the final "no more entries" word and eof.
const FIXED: usize = 4 + POST_OP_ATTR_LEN + 8 + 4 + 4;

pub(super) fn readdir(
    ex: &Export,
    ctx: &Ctx<'_, '_>,
    d: &mut XdrDecoder<'_>,
    plus: bool,
) -> Result<Reply, ProcError> {
    let dir = decode_fh(ex, d)?;
    let cookie = d.u64()?;
    let _verf = d.fixed_opaque(8)?;
    let (dircount, maxcount) = if plus {
        (d.u32()? as usize, d.u32()? as usize)
    } else {
        let c = d.u32()? as usize;
        (c, c)
    };
    let dir = try_stat!(ctx, dir, 1);
    let (fd, dir_attr) = match ex.open_dir(dir) {
        Ok(x) => x,
        Err(s) => return ctx.fail_attr(s, ex.getattr(dir).ok().as_ref()),
    };
    if !dir_attr.may(ctx.cred).0 {
        return ctx.fail_attr(Nfsstat::Acces, Some(&dir_attr));
    }
    let mut stream = match Dir::new(fd) {
        Ok(s) => s,
        Err(_) => return ctx.fail_attr(Nfsstat::Io, Some(&dir_attr)),
    };
    if cookie != 0 && stream.seek(cookie as i64).is_err() {
        return ctx.fail_attr(Nfsstat::BadCookie, Some(&dir_attr));
    }

    // The whole reply body must fit in maxcount; the directory part
    // (fileid, name, cookie) of the entries in dircount, when given.
    let budget = maxcount.min(DIR_REPLY_MAX);
    if budget < FIXED {
        return ctx.fail_attr(Nfsstat::TooSmall, Some(&dir_attr));
    }
    let dir_budget = if dircount == 0 { usize::MAX } else { dircount };
    let mut b = ctx.status(Nfsstat::Ok, budget)?;
    put_post_op_attr(b.head(), Some(&dir_attr));
    b.head().put_u64(0); // cookieverf
    let mut used = FIXED;
    let mut dir_used = 0;
    let mut entries = 0;
    let eof = loop {
        let entry = match stream.read() {
            None => break true,
            Some(Ok(e)) => e,
            Some(Err(_)) => return ctx.fail_attr(Nfsstat::Io, Some(&dir_attr)),
        };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let dir_part = 8 + opaque_len(name.len()) + 8;
        let mut size = 4 + dir_part;
        let mut plus_part = None;
        if plus {
            size += POST_OP_ATTR_LEN + 4 + FH3_LEN;
            // An entry that vanished or cannot be registered is listed
            // without attributes and handle; the client can LOOKUP it.
            plus_part = stream
                .fd()
                .ok()
                .and_then(|dfd| {
                    rustix::fs::statat(dfd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW).ok()
                })
                .map(|st| Attr::from_stat(&st));
        }
        if used + size > budget || dir_used + dir_part > dir_budget {
            if entries == 0 {
                return ctx.fail_attr(Nfsstat::TooSmall, Some(&dir_attr));
            }
            break false;
        }
        let h = b.head();
        h.put_u32(1);
        h.put_u64(entry.ino());
        h.put_xdr_opaque(name);
        h.put_u64(entry.offset() as u64);
        if plus {
            let id = plus_part.and_then(|a| ex.register(dir, name, &a).ok());
            put_post_op_attr(b.head(), plus_part.as_ref());
            match id {
                Some(id) => {
                    b.head().put_u32(1);
                    put_fh(b.head(), ex, id);
                }
                None => b.head().put_u32(0),
            }
        }
        used += size;
        dir_used += dir_part;
        entries += 1;
    };
    b.head().put_u32(0);
    b.head().put_xdr_bool(eof);
    Ok(b.finish()?)
}
