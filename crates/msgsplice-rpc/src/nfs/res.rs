//! NFS procedure results: typed values out to XDR, with their encoded
//! sizes, so that a reply head is sized from what it holds.
//!
//! A result is a status, then the arm of the procedure's result union that
//! the status selects: `resok` on success, `resfail` otherwise.
//! [`FailBody`] names each `resfail` shape of RFC 1813; the success bodies
//! that are fixed lists of numbers ([`FsStat`], [`FsInfo`], [`PathConf`])
//! are structs here.

use bytes::BufMut;

use super::attr::{put_post_op_attr, Attr, POST_OP_ATTR_LEN};
use super::export::Export;
use super::handle::FH_LEN;
use crate::xdr::{opaque_len, XdrPut, U32_LEN, U64_LEN};

/// Encoded size of an `nfs_fh3` of this server.
pub(super) const FH3_LEN: usize = opaque_len(FH_LEN);
/// Encoded size of an absent `post_op_attr` (or `pre_op_attr`): the
/// `attributes_follow` FALSE word.
const NO_ATTR_LEN: usize = U32_LEN;
/// Encoded size of a `wcc_data` with neither before nor after attributes.
const EMPTY_WCC_LEN: usize = 2 * NO_ATTR_LEN;
/// Encoded size of a `post_op_fh3` with the handle present.
pub(super) const POST_OP_FH3_LEN: usize = U32_LEN + FH3_LEN;

/// Writes an `nfs_fh3`: the handle of node `id`, as an opaque.
pub(super) fn put_fh<B: BufMut>(b: &mut B, ex: &Export, id: u64) {
    b.put_xdr_opaque(ex.handle(id).as_bytes());
}

/// Writes a `post_op_fh3`: the handle of node `id`, if known.
pub(super) fn put_post_op_fh<B: BufMut>(b: &mut B, ex: &Export, id: Option<u64>) {
    match id {
        Some(id) => {
            b.put_xdr_bool(true);
            put_fh(b, ex, id);
        }
        None => b.put_xdr_bool(false),
    }
}

/// The `resfail` arm of a procedure's result: what follows its failure
/// status (RFC 1813 section 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FailBody {
    /// GETATTR: nothing.
    Void,
    /// The object's (or directory's) `post_op_attr`: every other read
    /// procedure.
    PostOpAttr,
    /// One `wcc_data`: SETATTR, WRITE, CREATE, MKDIR, SYMLINK, MKNOD,
    /// REMOVE, RMDIR, COMMIT.
    Wcc,
    /// LINK: the file's `post_op_attr`, then the directory's `wcc_data`.
    PostOpAttrWcc,
    /// RENAME: the source and target directories' `wcc_data`.
    TwoWcc,
}

impl FailBody {
    /// Largest encoded size (attributes present where there can be any).
    pub(super) const fn max_len(self) -> usize {
        match self {
            FailBody::Void => 0,
            FailBody::PostOpAttr => POST_OP_ATTR_LEN,
            FailBody::Wcc => EMPTY_WCC_LEN,
            FailBody::PostOpAttrWcc => POST_OP_ATTR_LEN + EMPTY_WCC_LEN,
            FailBody::TwoWcc => 2 * EMPTY_WCC_LEN,
        }
    }

    /// Writes the body, with `attr` as its first `post_op_attr` if it has
    /// one. Every `wcc_data` is empty: this export changes nothing, so
    /// there are no before and after attributes to report.
    pub(super) fn put<B: BufMut>(self, b: &mut B, attr: Option<&Attr>) {
        match self {
            FailBody::Void => {}
            FailBody::PostOpAttr => put_post_op_attr(b, attr),
            FailBody::Wcc => put_empty_wcc(b),
            FailBody::PostOpAttrWcc => {
                put_post_op_attr(b, attr);
                put_empty_wcc(b);
            }
            FailBody::TwoWcc => {
                put_empty_wcc(b);
                put_empty_wcc(b);
            }
        }
    }
}

/// Writes a `wcc_data` with `pre_op_attr` and `post_op_attr` both absent.
fn put_empty_wcc<B: BufMut>(b: &mut B) {
    put_post_op_attr(b, None);
    put_post_op_attr(b, None);
}

/// FSSTAT3resok after the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FsStat {
    /// Total, free, and free-to-the-caller bytes.
    pub bytes: [u64; 3],
    /// Total, free, and free-to-the-caller file slots.
    pub files: [u64; 3],
    /// Seconds the figures stay valid (0: may change at any time).
    pub invarsec: u32,
}

impl FsStat {
    /// Encoded size.
    pub(super) const LEN: usize = 6 * U64_LEN + U32_LEN;

    /// The figures of `vfs`, from `statvfs`.
    pub(super) fn from_statvfs(vfs: &rustix::fs::StatVfs) -> FsStat {
        let frsize = vfs.f_frsize;
        FsStat {
            bytes: [vfs.f_blocks, vfs.f_bfree, vfs.f_bavail].map(|n| n.saturating_mul(frsize)),
            files: [vfs.f_files, vfs.f_ffree, vfs.f_favail],
            invarsec: 0,
        }
    }

    /// Writes [`Self::LEN`] bytes.
    pub(super) fn put<B: BufMut>(&self, b: &mut B) {
        for n in self.bytes.into_iter().chain(self.files) {
            b.put_u64(n);
        }
        b.put_u32(self.invarsec);
    }
}

/// FSINFO3resok after the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FsInfo {
    /// Largest READ size.
    pub rtmax: u32,
    /// Preferred READ size.
    pub rtpref: u32,
    /// Suggested multiple of READ sizes.
    pub rtmult: u32,
    /// Largest WRITE size.
    pub wtmax: u32,
    /// Preferred WRITE size.
    pub wtpref: u32,
    /// Suggested multiple of WRITE sizes.
    pub wtmult: u32,
    /// Preferred READDIR size.
    pub dtpref: u32,
    /// Largest file size.
    pub maxfilesize: u64,
    /// Time granularity (seconds, nanoseconds).
    pub time_delta: (u32, u32),
    /// `FSF3_*` property bits.
    pub properties: u32,
}

impl FsInfo {
    /// Encoded size: seven sizes, maxfilesize, time_delta, properties.
    pub(super) const LEN: usize = 7 * U32_LEN + U64_LEN + 2 * U32_LEN + U32_LEN;
    /// Hard links are supported.
    pub(super) const FSF3_LINK: u32 = 0x1;
    /// Symbolic links are supported.
    pub(super) const FSF3_SYMLINK: u32 = 0x2;
    /// PATHCONF is the same for every file.
    pub(super) const FSF3_HOMOGENEOUS: u32 = 0x8;

    /// Writes [`Self::LEN`] bytes.
    pub(super) fn put<B: BufMut>(&self, b: &mut B) {
        for n in [
            self.rtmax,
            self.rtpref,
            self.rtmult,
            self.wtmax,
            self.wtpref,
            self.wtmult,
            self.dtpref,
        ] {
            b.put_u32(n);
        }
        b.put_u64(self.maxfilesize);
        b.put_u32(self.time_delta.0);
        b.put_u32(self.time_delta.1);
        b.put_u32(self.properties);
    }
}

/// PATHCONF3resok after the attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PathConf {
    /// Most hard links to one file.
    pub linkmax: u32,
    /// Longest file name.
    pub name_max: u32,
    /// Long names are refused rather than cut.
    pub no_trunc: bool,
    /// Only the owner's privileged user may change a file's owner.
    pub chown_restricted: bool,
    /// Names match whatever their case.
    pub case_insensitive: bool,
    /// Names keep the case they were created with.
    pub case_preserving: bool,
}

impl PathConf {
    /// Encoded size.
    pub(super) const LEN: usize = 2 * U32_LEN + 4 * U32_LEN;

    /// Writes [`Self::LEN`] bytes.
    pub(super) fn put<B: BufMut>(&self, b: &mut B) {
        b.put_u32(self.linkmax);
        b.put_u32(self.name_max);
        b.put_xdr_bool(self.no_trunc);
        b.put_xdr_bool(self.chown_restricted);
        b.put_xdr_bool(self.case_insensitive);
        b.put_xdr_bool(self.case_preserving);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_sizes_match_their_constants() {
        for body in [
            FailBody::Void,
            FailBody::PostOpAttr,
            FailBody::Wcc,
            FailBody::PostOpAttrWcc,
            FailBody::TwoWcc,
        ] {
            let mut v = Vec::new();
            body.put(&mut v, None);
            assert!(v.len() <= body.max_len(), "{body:?}");
            assert!(v.iter().all(|&b| b == 0), "{body:?}: all absent");
        }
        // The failure bodies without attributes, in XDR words, as RFC 1813
        // lays them out.
        let words = |body: FailBody| {
            let mut v = Vec::new();
            body.put(&mut v, None);
            v.len() / 4
        };
        assert_eq!(words(FailBody::Void), 0);
        assert_eq!(words(FailBody::PostOpAttr), 1);
        assert_eq!(words(FailBody::Wcc), 2);
        assert_eq!(words(FailBody::PostOpAttrWcc), 3);
        assert_eq!(words(FailBody::TwoWcc), 4);

        let mut v = Vec::new();
        FsStat {
            bytes: [1, 2, 3],
            files: [4, 5, 6],
            invarsec: 0,
        }
        .put(&mut v);
        assert_eq!(v.len(), FsStat::LEN);
        let mut v = Vec::new();
        FsInfo {
            rtmax: 1,
            rtpref: 1,
            rtmult: 1,
            wtmax: 1,
            wtpref: 1,
            wtmult: 1,
            dtpref: 1,
            maxfilesize: 1,
            time_delta: (0, 1),
            properties: 0,
        }
        .put(&mut v);
        assert_eq!(v.len(), FsInfo::LEN);
        let mut v = Vec::new();
        PathConf {
            linkmax: 1,
            name_max: 1,
            no_trunc: true,
            chown_restricted: true,
            case_insensitive: false,
            case_preserving: true,
        }
        .put(&mut v);
        assert_eq!(v.len(), PathConf::LEN);
    }
}
