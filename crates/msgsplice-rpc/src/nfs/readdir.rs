//! READDIR and READDIRPLUS.
//!
//! Cookies are the directory's own `d_off` positions (what `getdents64`
//! returns and `lseek` accepts), so a listing continues where the last
//! reply stopped without re-reading the directory. `.` and `..` are not
//! listed. The cookie verifier is derived from the directory's state
//! ([`Export::cookie_verifier`]): a cookie handed back with another
//! verifier than the directory's now is NFS3ERR_BAD_COOKIE, and the client
//! starts the listing again. A cookie of 0 is always fine.
//!
//! A reply is built in steps: open the listing at the cookie, size the
//! budget from the client's limits, write entries while they fit, end the
//! list.

use std::os::fd::AsFd;

use bytes::BufMut;
use rustix::fs::{AtFlags, Dir};

use super::args::ReaddirArgs;
use super::attr::{put_post_op_attr, Attr, POST_OP_ATTR_LEN};
use super::export::Export;
use super::proc::{failed_with, Ctx, ProcError};
use super::res::{put_post_op_fh, POST_OP_FH3_LEN};
use super::Nfsstat;
use crate::reply::{Reply, ReplyBuilder};
use crate::xdr::{opaque_len, XdrPut, U32_LEN, U64_LEN};

/// Largest directory reply (whole RPC body), whatever the client allows.
/// Kept under half a fragment folio so the head is a cheap bump allocation.
pub const DIR_REPLY_MAX: usize = 30 * 1024;
/// Bytes of a reply before and after the entries: status, post_op_attr,
/// cookieverf, the final "no more entries" word and eof.
const FIXED: usize = U32_LEN + POST_OP_ATTR_LEN + U64_LEN + U32_LEN + U32_LEN;
/// Bytes READDIRPLUS adds to an entry, at most: its `post_op_attr` and
/// `post_op_fh3`, both present.
const PLUS_LEN: usize = POST_OP_ATTR_LEN + POST_OP_FH3_LEN;

/// READDIR (`plus` false) or READDIRPLUS: the entries of a directory from
/// a cookie on, as many as the client's limits allow.
pub(super) fn readdir(
    ex: &Export,
    ctx: &Ctx<'_>,
    args: &[u8],
    plus: bool,
) -> Result<Reply, ProcError> {
    let args = ReaddirArgs::decode(ex, args, plus)?;
    let (mut listing, dir_attr) = open_listing(ex, ctx, &args)?;
    let mut budget =
        Budget::new(&args).ok_or(ProcError::Failed(Nfsstat::TooSmall, Some(dir_attr)))?;
    let mut b = ctx.ok(budget.reply)?;
    put_post_op_attr(b.head(), Some(&dir_attr));
    b.head().put_u64(ex.cookie_verifier(&dir_attr));
    let eof = put_entries(ex, args.dir, &mut listing, &mut budget, &mut b, plus)
        .map_err(failed_with(&dir_attr))?;
    b.head().put_xdr_bool(false); // no more entries follow
    b.head().put_xdr_bool(eof);
    Ok(b.finish()?)
}

/// The directory open for reading, positioned at the cookie, with its
/// attributes; or why not (with the attributes when known).
fn open_listing(ex: &Export, ctx: &Ctx<'_>, args: &ReaddirArgs) -> Result<(Dir, Attr), ProcError> {
    let (fd, dir_attr) = ex
        .open_dir(args.dir)
        .map_err(|stat| ProcError::Failed(stat, ex.getattr(args.dir).ok()))?;
    if !crate::exports::may_list_dir(&ctx.who, &dir_attr.owner()) {
        return Err(ProcError::Failed(Nfsstat::Acces, Some(dir_attr)));
    }
    if args.cookie != 0 && args.verifier != ex.cookie_verifier(&dir_attr) {
        return Err(ProcError::Failed(Nfsstat::BadCookie, Some(dir_attr)));
    }
    let fail = failed_with(&dir_attr);
    let mut listing = Dir::new(fd).map_err(|_| fail(Nfsstat::Io))?;
    if args.cookie != 0 && listing.seek(args.cookie as i64).is_err() {
        return Err(ProcError::Failed(Nfsstat::BadCookie, Some(dir_attr)));
    }
    Ok((listing, dir_attr))
}

/// How many bytes the entries may still take. The whole reply body must
/// fit in the client's `maxcount` (and [`DIR_REPLY_MAX`]); the directory
/// parts of the entries (file id, name, cookie) in its `dircount`, if any.
struct Budget {
    /// Largest reply body.
    reply: usize,
    /// Bytes of the reply body so far, counting [`FIXED`].
    used: usize,
    /// Largest sum of directory parts.
    dir: usize,
    /// Sum of directory parts so far.
    dir_used: usize,
}

impl Budget {
    /// The budget of a reply to `args`, or `None` if not even an empty
    /// listing fits.
    fn new(args: &ReaddirArgs) -> Option<Budget> {
        let reply = args.max_reply.min(DIR_REPLY_MAX);
        (reply >= FIXED).then(|| Budget {
            reply,
            used: FIXED,
            dir: args.dir_limit.map_or(usize::MAX, |n| n.get()),
            dir_used: 0,
        })
    }

    /// Takes room for an entry of `len` bytes whose directory part is
    /// `dir_len` bytes, if it fits.
    fn take(&mut self, len: usize, dir_len: usize) -> bool {
        if self.used + len > self.reply || self.dir_used + dir_len > self.dir {
            return false;
        }
        self.used += len;
        self.dir_used += dir_len;
        true
    }
}

/// Writes entries of `listing` (in directory `dir`) while they fit the
/// budget. Returns whether the listing reached its end; fails with
/// TOOSMALL if not even the first entry fits, or IO if reading fails.
fn put_entries(
    ex: &Export,
    dir: u64,
    listing: &mut Dir,
    budget: &mut Budget,
    b: &mut ReplyBuilder,
    plus: bool,
) -> Result<bool, Nfsstat> {
    let mut entries = 0;
    loop {
        let entry = match listing.read() {
            None => return Ok(true),
            Some(Ok(e)) => e,
            Some(Err(_)) => return Err(Nfsstat::Io),
        };
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let dir_len = U64_LEN + opaque_len(name.len()) + U64_LEN;
        let len = U32_LEN + dir_len + if plus { PLUS_LEN } else { 0 };
        if !budget.take(len, dir_len) {
            return if entries == 0 {
                Err(Nfsstat::TooSmall)
            } else {
                Ok(false)
            };
        }
        let h = b.head();
        h.put_xdr_bool(true); // an entry follows
        h.put_u64(entry.ino());
        h.put_xdr_opaque(name);
        h.put_u64(entry.offset() as u64);
        if plus {
            put_plus_part(ex, dir, listing, name, b);
        }
        entries += 1;
    }
}

/// Writes what READDIRPLUS adds to an entry: its attributes and handle.
/// An entry that vanished or cannot be registered goes without them; the
/// client can LOOKUP it.
fn put_plus_part(ex: &Export, dir: u64, listing: &Dir, name: &[u8], b: &mut ReplyBuilder) {
    let attr = listing
        .fd()
        .ok()
        .and_then(|dfd| {
            rustix::fs::statx(
                dfd.as_fd(),
                name,
                AtFlags::SYMLINK_NOFOLLOW,
                Attr::STATX_MASK,
            )
            .ok()
        })
        .map(|st| Attr::from_statx(&st));
    let id = attr.and_then(|a| ex.register(dir, name, &a).ok());
    put_post_op_attr(b.head(), attr.as_ref());
    put_post_op_fh(b.head(), ex, id);
}
