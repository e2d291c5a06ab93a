//! Who the caller is on the export, and what a file lets them do.
//!
//! Squashing first maps the credential the client claims to the identity
//! the export grants ([`Squash::apply`]); the permission checks then follow
//! the Linux rules that nfsd applies through the VFS (`generic_permission`
//! in `fs/namei.c`):
//!
//! - Exactly one class of mode bits applies: the owner's if the uid owns
//!   the file, else the group's if the file's group is the gid or one of
//!   the supplementary groups, else the others'. An owner whose owner bits
//!   deny is denied even when the group bits would allow.
//! - uid 0 (after squashing) has the capabilities of root: it may read any
//!   file and list and search any directory, but may execute a non-directory
//!   only if at least one of its three `x` bits is set.
//!
//! The export is read-only, so MODIFY, EXTEND and DELETE are never granted.
//! For a directory READ means listing and LOOKUP searching, and EXECUTE is
//! never granted; for other files LOOKUP is never granted (RFC 1813
//! section 3.3.4).

use smallvec::SmallVec;

/// Supplementary groups: up to 16 (all AUTH_SYS carries) held inline.
pub type Groups = SmallVec<[u32; 16]>;

/// An identity on the export: user, group and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub gids: Groups,
}

/// How a client's claimed identity is mapped (the `*_squash` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Squash {
    /// uid 0 becomes the anonymous uid, and gid 0 (primary or
    /// supplementary) the anonymous gid. The default.
    #[default]
    Root,
    /// Everyone becomes the anonymous uid and gid, with no supplementary
    /// groups.
    All,
    /// Identities are taken as claimed, root included.
    None,
}

impl Squash {
    /// The identity `uid`, `gid`, `gids` is granted, with `anon_uid` and
    /// `anon_gid` as the anonymous identity.
    ///
    /// Costs: no allocation for up to 16 groups (all an AUTH_SYS
    /// credential can carry); copies the groups.
    pub fn apply(self, anon_uid: u32, anon_gid: u32, uid: u32, gid: u32, gids: &[u32]) -> Identity {
        match self {
            Squash::None => Identity {
                uid,
                gid,
                gids: Groups::from_slice(gids),
            },
            Squash::All => Identity {
                uid: anon_uid,
                gid: anon_gid,
                gids: Groups::new(),
            },
            Squash::Root => {
                let g = |g: u32| if g == 0 { anon_gid } else { g };
                Identity {
                    uid: if uid == 0 { anon_uid } else { uid },
                    gid: g(gid),
                    gids: gids.iter().copied().map(g).collect(),
                }
            }
        }
    }
}

/// What the checks need to know of a file: its `st_mode` (type and
/// permission bits), owner and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOwner {
    /// `st_mode`: file type bits and permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
}

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;

impl FileOwner {
    /// True if the mode says directory.
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// NFSv3 ACCESS bits (RFC 1813 section 3.3.4).
pub mod access_bits {
    /// Read data, or list a directory.
    pub const READ: u32 = 0x01;
    /// Look a name up in a directory.
    pub const LOOKUP: u32 = 0x02;
    /// Rewrite data (never granted here).
    pub const MODIFY: u32 = 0x04;
    /// Append data (never granted here).
    pub const EXTEND: u32 = 0x08;
    /// Delete a directory entry (never granted here).
    pub const DELETE: u32 = 0x10;
    /// Execute a file.
    pub const EXECUTE: u32 = 0x20;
}

const MAY_READ: u32 = 0o4;
const MAY_EXEC: u32 = 0o1;

/// The three mode bits (`rwx`) that apply to `who` for `file`.
fn class_bits(who: &Identity, file: &FileOwner) -> u32 {
    let shift = if who.uid == file.uid {
        6
    } else if who.gid == file.gid || who.gids.contains(&file.gid) {
        3
    } else {
        0
    };
    (file.mode >> shift) & 0o7
}

/// True if `who` has `want` (MAY_READ or MAY_EXEC) on `file`.
fn permits(who: &Identity, file: &FileOwner, want: u32) -> bool {
    if who.uid == 0 {
        // Root reads anything and searches any directory; it executes a
        // file only if someone may.
        return want == MAY_READ || file.is_dir() || file.mode & 0o111 != 0;
    }
    class_bits(who, file) & want == want
}

/// True if `who` may read the data of `file` (a non-directory).
pub fn may_read(who: &Identity, file: &FileOwner) -> bool {
    !file.is_dir() && permits(who, file, MAY_READ)
}

/// True if `who` may look names up in the directory `dir`.
pub fn may_search_dir(who: &Identity, dir: &FileOwner) -> bool {
    dir.is_dir() && permits(who, dir, MAY_EXEC)
}

/// True if `who` may list the directory `dir` (READDIR).
pub fn may_list_dir(who: &Identity, dir: &FileOwner) -> bool {
    dir.is_dir() && permits(who, dir, MAY_READ)
}

/// The ACCESS result: the bits of `requested` that `who` has on `file`.
pub fn access(who: &Identity, file: &FileOwner, requested: u32) -> u32 {
    use access_bits::*;
    let mut granted = 0;
    if permits(who, file, MAY_READ) {
        granted |= READ;
    }
    if permits(who, file, MAY_EXEC) {
        granted |= if file.is_dir() { LOOKUP } else { EXECUTE };
    }
    granted & requested
}

#[cfg(test)]
mod tests;
