//! NFS procedure arguments: XDR in, validated values out.
//!
//! Each decoder reads a procedure's whole argument list first, so that any
//! XDR error (truncation, a length over its limit) is GARBAGE_ARGS whatever
//! else is wrong, and only then verifies the file handles against the
//! export. A handler gets node ids the export issued and verified, never a
//! raw handle: a malformed, forged or stale handle stops at the decoder as
//! [`ArgError::Handle`], the status the procedure fails with.
//!
//! Trailing bytes after the arguments are ignored, as other servers do.

use std::num::NonZeroUsize;

use super::export::Export;
use super::Nfsstat;
use crate::xdr::{XdrDecoder, XdrError};

/// Largest `nfs_fh3` accepted in arguments (RFC 1813: 64 bytes).
pub(super) const MAX_FH: u32 = 64;
/// Largest file name accepted in arguments. Longer names are garbage;
/// names up to this but over `NAME_MAX` fail later with NAMETOOLONG.
pub(super) const MAX_NAME_ARG: u32 = 1024;
/// Bytes of a READDIR cookie verifier (`cookieverf3`).
const COOKIEVERF_LEN: usize = 8;

/// Why arguments cannot reach their procedure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ArgError {
    /// Not valid XDR for the procedure: the call gets GARBAGE_ARGS.
    Garbage,
    /// Well-formed, but a file handle does not verify: the procedure fails
    /// with this status (BADHANDLE, STALE).
    Handle(Nfsstat),
}

impl From<XdrError> for ArgError {
    fn from(_: XdrError) -> Self {
        ArgError::Garbage
    }
}

/// An `nfs_fh3` as it arrived: at most [`MAX_FH`] bytes, not yet verified.
struct RawFh<'a>(&'a [u8]);

impl<'a> RawFh<'a> {
    fn decode(d: &mut XdrDecoder<'a>) -> Result<RawFh<'a>, XdrError> {
        d.opaque(MAX_FH).map(RawFh)
    }

    /// The node the handle names, if the export issued it and the node
    /// is still the file it was.
    fn verify(self, ex: &Export) -> Result<u64, ArgError> {
        ex.verify(self.0).map_err(ArgError::Handle)
    }
}

/// One file handle: GETATTR, READLINK, FSSTAT, FSINFO and PATHCONF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ObjectArgs {
    /// The object.
    pub object: u64,
}

impl ObjectArgs {
    pub(super) fn decode(ex: &Export, args: &[u8]) -> Result<ObjectArgs, ArgError> {
        let d = &mut XdrDecoder::new(args);
        let object = RawFh::decode(d)?;
        Ok(ObjectArgs {
            object: object.verify(ex)?,
        })
    }
}

/// LOOKUP3args: a directory and a name in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LookupArgs<'a> {
    /// The directory.
    pub dir: u64,
    /// The name, at most [`MAX_NAME_ARG`] bytes, not yet checked otherwise.
    pub name: &'a [u8],
}

impl<'a> LookupArgs<'a> {
    pub(super) fn decode(ex: &Export, args: &'a [u8]) -> Result<LookupArgs<'a>, ArgError> {
        let d = &mut XdrDecoder::new(args);
        let dir = RawFh::decode(d)?;
        let name = d.string(MAX_NAME_ARG)?;
        Ok(LookupArgs {
            dir: dir.verify(ex)?,
            name,
        })
    }
}

/// ACCESS3args: an object and the ACCESS3 bits asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AccessArgs {
    /// The object.
    pub object: u64,
    /// ACCESS3 bits (unknown bits are never granted).
    pub want: u32,
}

impl AccessArgs {
    pub(super) fn decode(ex: &Export, args: &[u8]) -> Result<AccessArgs, ArgError> {
        let d = &mut XdrDecoder::new(args);
        let object = RawFh::decode(d)?;
        let want = d.u32()?;
        Ok(AccessArgs {
            object: object.verify(ex)?,
            want,
        })
    }
}

/// READ3args: a file, an offset and a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReadArgs {
    /// The file.
    pub file: u64,
    /// Byte offset; past the end of the file is fine (no data, eof).
    pub offset: u64,
    /// Bytes asked for; the reply clips it (see `read_span`).
    pub count: u32,
}

impl ReadArgs {
    pub(super) fn decode(ex: &Export, args: &[u8]) -> Result<ReadArgs, ArgError> {
        let d = &mut XdrDecoder::new(args);
        let file = RawFh::decode(d)?;
        let offset = d.u64()?;
        let count = d.u32()?;
        Ok(ReadArgs {
            file: file.verify(ex)?,
            offset,
            count,
        })
    }
}

/// READDIR3args and READDIRPLUS3args.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReaddirArgs {
    /// The directory.
    pub dir: u64,
    /// Where to go on from: 0 for the start, else a cookie of an earlier
    /// reply.
    pub cookie: u64,
    /// The cookie verifier of the reply the cookie came from (anything
    /// with cookie 0).
    pub verifier: u64,
    /// Most bytes of the entries' directory parts (file id, name, cookie),
    /// if limited: READDIRPLUS's `dircount`, unless zero; READDIR's
    /// `count`.
    pub dir_limit: Option<NonZeroUsize>,
    /// Most bytes of the whole reply body (`maxcount`, or READDIR's
    /// `count`).
    pub max_reply: usize,
}

impl ReaddirArgs {
    /// Decodes READDIRPLUS3args if `plus`, else READDIR3args.
    pub(super) fn decode(ex: &Export, args: &[u8], plus: bool) -> Result<ReaddirArgs, ArgError> {
        let d = &mut XdrDecoder::new(args);
        let dir = RawFh::decode(d)?;
        let cookie = d.u64()?;
        let mut verf = [0u8; COOKIEVERF_LEN];
        verf.copy_from_slice(d.fixed_opaque(COOKIEVERF_LEN)?);
        let (dircount, maxcount) = if plus {
            (d.u32()?, d.u32()?)
        } else {
            let count = d.u32()?;
            (count, count)
        };
        Ok(ReaddirArgs {
            dir: dir.verify(ex)?,
            cookie,
            verifier: u64::from_be_bytes(verf),
            dir_limit: NonZeroUsize::new(dircount as usize),
            max_reply: maxcount as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs::handle::ROOT_ID;
    use crate::xdr::XdrPut;
    use bytes::BufMut;

    fn export() -> (tempfile::TempDir, Export) {
        let dir = tempfile::tempdir().unwrap();
        let ex = Export::open(dir.path(), "/export", 16).unwrap();
        (dir, ex)
    }

    fn args(fh: &[u8], rest: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut v = Vec::new();
        v.put_xdr_opaque(fh);
        rest(&mut v);
        v
    }

    #[test]
    fn a_verified_handle_reaches_the_procedure_as_its_node() {
        let (_dir, ex) = export();
        let root = ex.handle(ROOT_ID);
        let a = args(root.as_bytes(), |v| {
            v.put_u64(9);
            v.put_u32(100);
        });
        let read = ReadArgs::decode(&ex, &a).unwrap();
        assert_eq!((read.file, read.offset, read.count), (ROOT_ID, 9, 100));
        let a = args(root.as_bytes(), |v| v.put_xdr_opaque(b"name"));
        let lookup = LookupArgs::decode(&ex, &a).unwrap();
        assert_eq!((lookup.dir, lookup.name), (ROOT_ID, &b"name"[..]));
    }

    #[test]
    fn garbage_wins_over_a_bad_handle() {
        let (_dir, ex) = export();
        let forged = [0u8; 28];
        // Well-formed: the handle's own status.
        let a = args(&forged, |v| v.put_u32(1));
        assert!(matches!(
            AccessArgs::decode(&ex, &a),
            Err(ArgError::Handle(_))
        ));
        // Truncated after the handle: garbage, whatever the handle.
        let a = args(&forged, |v| v.put_u16(1));
        assert_eq!(AccessArgs::decode(&ex, &a), Err(ArgError::Garbage));
        // A handle over the protocol's limit is garbage too.
        let a = args(&[0; MAX_FH as usize + 4], |_| {});
        assert_eq!(ObjectArgs::decode(&ex, &a), Err(ArgError::Garbage));
    }

    #[test]
    fn readdir_counts_become_limits() {
        let (_dir, ex) = export();
        let root = ex.handle(ROOT_ID);
        let a = args(root.as_bytes(), |v| {
            v.put_u64(5);
            v.put_u64(0);
            v.put_u32(0);
            v.put_u32(4096);
        });
        let plus = ReaddirArgs::decode(&ex, &a, true).unwrap();
        assert_eq!(
            (plus.cookie, plus.dir_limit, plus.max_reply),
            (5, None, 4096)
        );
        let a = args(root.as_bytes(), |v| {
            v.put_u64(0);
            v.put_u64(0);
            v.put_u32(512);
        });
        let plain = ReaddirArgs::decode(&ex, &a, false).unwrap();
        assert_eq!(plain.dir_limit, NonZeroUsize::new(512));
        assert_eq!(plain.max_reply, 512);
    }
}
