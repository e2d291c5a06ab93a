//! File attributes (`fattr3`, RFC 1813 section 2.6).

use bytes::BufMut;
use rustix::fs::{FileType, Stat, Statx, StatxFlags};

use crate::exports::FileOwner;
use crate::xdr::{XdrPut, U32_LEN};

/// Encoded size of `fattr3`.
pub const FATTR3_LEN: usize = 84;
/// Encoded size of a present `post_op_attr`: `attributes_follow`, then
/// `fattr3`.
pub const POST_OP_ATTR_LEN: usize = U32_LEN + FATTR3_LEN;

/// `ftype3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Ftype {
    /// Regular file.
    Reg = 1,
    /// Directory.
    Dir = 2,
    /// Block device.
    Blk = 3,
    /// Character device.
    Chr = 4,
    /// Symbolic link.
    Lnk = 5,
    /// Socket.
    Sock = 6,
    /// Named pipe.
    Fifo = 7,
}

/// The attributes of a file, as NFS reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// File type.
    pub kind: Ftype,
    /// Permission bits (and set-id, sticky).
    pub mode: u32,
    /// Hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Bytes of storage used.
    pub used: u64,
    /// Device numbers (major, minor) of a device file.
    pub rdev: (u32, u32),
    /// File system id (the device).
    pub fsid: u64,
    /// File id (the inode).
    pub fileid: u64,
    /// Last access (seconds, nanoseconds).
    pub atime: (u32, u32),
    /// Last modification.
    pub mtime: (u32, u32),
    /// Last status change.
    pub ctime: (u32, u32),
    /// The file's generation, told apart from an earlier file that had the
    /// same inode number: its birth time (`statx` `STATX_BTIME`) in
    /// nanoseconds, or 0 where the file system does not keep one. Not
    /// part of `fattr3`; file handles carry it.
    pub gen: u64,
}

impl Attr {
    /// Attributes from a `stat` result.
    #[allow(clippy::unnecessary_cast)] // field types differ between targets
    pub fn from_stat(st: &Stat) -> Attr {
        let kind = match FileType::from_raw_mode(st.st_mode as _) {
            FileType::RegularFile => Ftype::Reg,
            FileType::Directory => Ftype::Dir,
            FileType::Symlink => Ftype::Lnk,
            FileType::BlockDevice => Ftype::Blk,
            FileType::CharacterDevice => Ftype::Chr,
            FileType::Socket => Ftype::Sock,
            _ => Ftype::Fifo,
        };
        let t = |s: i64, ns: u64| (s as u32, ns as u32);
        Attr {
            kind,
            mode: st.st_mode as u32 & 0o7777,
            nlink: st.st_nlink as u32,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            size: st.st_size as u64,
            used: (st.st_blocks as u64).saturating_mul(512),
            rdev: (
                rustix::fs::major(st.st_rdev as u64),
                rustix::fs::minor(st.st_rdev as u64),
            ),
            fsid: st.st_dev as u64,
            fileid: st.st_ino as u64,
            atime: t(st.st_atime as i64, st.st_atime_nsec as u64),
            mtime: t(st.st_mtime as i64, st.st_mtime_nsec as u64),
            ctime: t(st.st_ctime as i64, st.st_ctime_nsec as u64),
            gen: 0,
        }
    }

    /// What to ask `statx` for: the basic `stat` fields and the birth time.
    pub const STATX_MASK: StatxFlags = StatxFlags::BASIC_STATS.union(StatxFlags::BTIME);

    /// Attributes from a `statx` result asked for [`Self::STATX_MASK`].
    pub fn from_statx(st: &Statx) -> Attr {
        let kind = match FileType::from_raw_mode(u32::from(st.stx_mode) as _) {
            FileType::RegularFile => Ftype::Reg,
            FileType::Directory => Ftype::Dir,
            FileType::Symlink => Ftype::Lnk,
            FileType::BlockDevice => Ftype::Blk,
            FileType::CharacterDevice => Ftype::Chr,
            FileType::Socket => Ftype::Sock,
            _ => Ftype::Fifo,
        };
        let t = |ts: &rustix::fs::StatxTimestamp| (ts.tv_sec as u32, ts.tv_nsec);
        let has_btime = StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::BTIME);
        let b = &st.stx_btime;
        let gen = match has_btime {
            true => (b.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(u64::from(b.tv_nsec)),
            false => 0,
        };
        Attr {
            kind,
            mode: u32::from(st.stx_mode) & 0o7777,
            nlink: st.stx_nlink,
            uid: st.stx_uid,
            gid: st.stx_gid,
            size: st.stx_size,
            used: st.stx_blocks.saturating_mul(512),
            rdev: (st.stx_rdev_major, st.stx_rdev_minor),
            fsid: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            fileid: st.stx_ino,
            atime: t(&st.stx_atime),
            mtime: t(&st.stx_mtime),
            ctime: t(&st.stx_ctime),
            gen,
        }
    }

    /// Writes `fattr3` ([`FATTR3_LEN`] bytes).
    pub fn put<B: BufMut>(&self, b: &mut B) {
        b.put_u32(self.kind as u32);
        b.put_u32(self.mode);
        b.put_u32(self.nlink);
        b.put_u32(self.uid);
        b.put_u32(self.gid);
        b.put_u64(self.size);
        b.put_u64(self.used);
        b.put_u32(self.rdev.0);
        b.put_u32(self.rdev.1);
        b.put_u64(self.fsid);
        b.put_u64(self.fileid);
        for (s, ns) in [self.atime, self.mtime, self.ctime] {
            b.put_u32(s);
            b.put_u32(ns);
        }
    }

    /// What the permission checks need: mode with its file type bits,
    /// owner and group (see [`crate::exports::access`](mod@crate::exports::access)).
    pub fn owner(&self) -> FileOwner {
        let kind = match self.kind {
            Ftype::Reg => 0o100000,
            Ftype::Dir => 0o040000,
            Ftype::Blk => 0o060000,
            Ftype::Chr => 0o020000,
            Ftype::Lnk => 0o120000,
            Ftype::Sock => 0o140000,
            Ftype::Fifo => 0o010000,
        };
        FileOwner {
            mode: kind | (self.mode & 0o7777),
            uid: self.uid,
            gid: self.gid,
        }
    }
}

/// Writes `post_op_attr`: present with `attr`, or absent.
pub fn put_post_op_attr<B: BufMut>(b: &mut B, attr: Option<&Attr>) {
    match attr {
        Some(a) => {
            b.put_xdr_bool(true);
            a.put(b);
        }
        None => b.put_xdr_bool(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: Ftype, mode: u32) -> Attr {
        Attr {
            kind,
            mode,
            nlink: 1,
            uid: 1000,
            gid: 100,
            size: 0,
            used: 0,
            rdev: (0, 0),
            fsid: 1,
            fileid: 2,
            atime: (0, 0),
            mtime: (0, 0),
            ctime: (0, 0),
            gen: 0,
        }
    }

    #[test]
    fn fattr3_has_its_fixed_size() {
        let mut v = Vec::new();
        attr(Ftype::Reg, 0o644).put(&mut v);
        assert_eq!(v.len(), FATTR3_LEN);
        let mut v = Vec::new();
        put_post_op_attr(&mut v, Some(&attr(Ftype::Reg, 0o644)));
        assert_eq!(v.len(), POST_OP_ATTR_LEN);
    }

    #[test]
    fn the_checks_see_type_and_mode() {
        use crate::exports::{access, access_bits, Identity};
        let all = 0x3f;
        let who = |uid, gid| Identity {
            uid,
            gid,
            gids: Default::default(),
        };
        let f = attr(Ftype::Reg, 0o640);
        assert!(!f.owner().is_dir());
        assert_eq!(access(&who(1000, 1), &f.owner(), all), access_bits::READ);
        assert_eq!(access(&who(2000, 100), &f.owner(), all), access_bits::READ);
        assert_eq!(access(&who(3000, 5), &f.owner(), all), 0);
        let d = attr(Ftype::Dir, 0o711);
        assert!(d.owner().is_dir());
        assert_eq!(access(&who(3000, 5), &d.owner(), all), access_bits::LOOKUP);
    }
}
