//! The exported directory tree, reached only through safe resolution.
//!
//! Every path the server opens is walked from the export root's descriptor,
//! one component at a time, with `openat(O_NOFOLLOW)`: the kernel is never
//! handed a path with a `/`, a `..` or a symbolic link to follow. `.` and
//! `..` are answered from the handle table (a node's recorded parent), and
//! `..` of the root is the root. Symbolic links are objects clients can
//! READLINK; the server itself never follows one. So nothing outside the
//! root can be reached, whatever names or handles a client sends.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::attr::{Attr, Ftype};
use super::handle::{FileHandle, HandleError, HandleTable, Node, ROOT_ID};
use super::state::{StateDir, StateError};
use super::Nfsstat;
use crate::exports::{self, Identity, Squash, DEFAULT_ANON_ID};
use crate::rpc::Credential;

/// Longest file name accepted (NAME_MAX).
pub const MAX_NAME: usize = 255;
/// Open files kept for READ.
const FILE_CACHE: usize = 32;

/// An exported directory: its root descriptor, handle table, name and
/// options (who may use it, and as whom).
#[derive(Debug)]
pub struct Export {
    root: OwnedFd,
    name: String,
    number: u32,
    options: exports::Export,
    table: RwLock<HandleTable>,
    files: Mutex<Vec<(u64, Arc<File>)>>,
}

/// An open directory (`O_PATH`) and the name of a node in it.
type Parent = (OwnedFd, Box<[u8]>);

fn dir_path_flags() -> OFlags {
    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// A fresh random handle key.
pub fn random_key() -> std::io::Result<[u8; 16]> {
    let mut key = [0u8; 16];
    rustix::rand::getrandom(&mut key, rustix::rand::GetRandomFlags::empty())?;
    Ok(key)
}

/// The attributes of an open file (`statx` with `AT_EMPTY_PATH`: one
/// system call, like `fstat`, and no allocation).
fn stat_fd(fd: impl AsFd) -> Result<Attr, Errno> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, Attr::STATX_MASK).map(|s| Attr::from_statx(&s))
}

/// The attributes of `name` in `dir`, not following a symbolic link.
fn stat_at(dir: impl AsFd, name: &[u8]) -> Result<Attr, Errno> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, Attr::STATX_MASK)
        .map(|s| Attr::from_statx(&s))
}

fn errno_to_stat(e: Errno) -> Nfsstat {
    match e {
        Errno::NOENT => Nfsstat::NoEnt,
        Errno::NOTDIR => Nfsstat::NotDir,
        Errno::ACCESS | Errno::PERM => Nfsstat::Acces,
        Errno::NAMETOOLONG => Nfsstat::NameTooLong,
        Errno::LOOP => Nfsstat::Inval,
        Errno::ISDIR => Nfsstat::IsDir,
        _ => Nfsstat::Io,
    }
}

impl Export {
    /// Opens `root` for export under the name `name` (what MOUNT clients
    /// ask for, e.g. `/export`) as export number 0, open to every client,
    /// with root squashed to 65534, a fresh random handle key and room for
    /// `max_nodes` handles.
    pub fn open(root: &Path, name: &str, max_nodes: usize) -> std::io::Result<Export> {
        let options = exports::Export {
            name: name.trim_matches('/').to_owned(),
            dir: root.to_owned(),
            clients: Vec::new(),
            squash: Squash::Root,
            anon_uid: DEFAULT_ANON_ID,
            anon_gid: DEFAULT_ANON_ID,
        };
        Export::open_with(0, name, options, random_key()?, max_nodes)
    }

    /// Opens `options.dir` as export number `number` (the number its
    /// handles carry), mounted as `path`, with handle key `key`.
    pub fn open_with(
        number: u32,
        path: &str,
        options: exports::Export,
        key: [u8; 16],
        max_nodes: usize,
    ) -> std::io::Result<Export> {
        let root = rustix::fs::open(&options.dir, dir_path_flags(), Mode::empty())?;
        let a = stat_fd(&root)?;
        let root_node = Node {
            parent: ROOT_ID,
            name: Box::default(),
            dev: a.fsid,
            ino: a.fileid,
            gen: a.gen,
        };
        Ok(Export {
            root,
            name: path.to_owned(),
            number,
            options,
            table: RwLock::new(HandleTable::new(key, number, root_node, max_nodes)),
            files: Mutex::new(Vec::new()),
        })
    }

    /// Takes back the nodes an earlier run recorded in `state` for this
    /// export, and records new ones there from now on: handles then stay
    /// valid across restarts (with the same key).
    ///
    /// Costs: reads the journal once; then one `write` per new node.
    pub fn keep_state(&self, state: &StateDir) -> Result<(), StateError> {
        let (nodes, journal) = state.journal(&self.options.name)?;
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .restore(nodes, journal);
        Ok(())
    }

    /// The number this export's handles carry.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The export's name: the path clients mount (`/name`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The export's options: directory, clients, squashing.
    pub fn options(&self) -> &exports::Export {
        &self.options
    }

    /// True if a client at `addr` may use the export (its `clients=`).
    pub fn admits(&self, addr: IpAddr) -> bool {
        self.options.admits(addr)
    }

    /// The identity a caller with `cred` has on this export, after
    /// squashing; AUTH_NONE is the anonymous identity.
    ///
    /// Costs: no allocation (see [`Squash::apply`]).
    pub fn identity(&self, cred: &Credential<'_>) -> Identity {
        match cred {
            Credential::Sys(s) => self.options.identity(s.uid, s.gid, s.gids.as_slice()),
            Credential::None => Identity {
                uid: self.options.anon_uid,
                gid: self.options.anon_gid,
                gids: Default::default(),
            },
        }
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, HandleTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of node `id`.
    pub fn handle(&self, id: u64) -> FileHandle {
        self.table().handle(id)
    }

    /// The READDIR cookie verifier of a directory with attributes `dir`:
    /// a keyed hash of its inode, modification and change times. It
    /// changes when an entry is added, removed or renamed (the mtime), so a
    /// cookie from before that is refused rather than trusted.
    pub fn cookie_verifier(&self, dir: &Attr) -> u64 {
        let t = |(s, ns): (u32, u32)| (u64::from(s) << 32) | u64::from(ns);
        self.table()
            .keyed(&[dir.fsid, dir.fileid, dir.gen, t(dir.mtime), t(dir.ctime)])
    }

    /// Checks a client's handle: its node id, or BADHANDLE / STALE.
    pub fn verify(&self, fh: &[u8]) -> Result<u64, Nfsstat> {
        self.table().verify(fh).map_err(|e| match e {
            HandleError::Malformed => Nfsstat::BadHandle,
            HandleError::Stale => Nfsstat::Stale,
        })
    }

    /// Opens the directory holding node `id` (`O_PATH`) and returns it with
    /// the node's name in it, or `None` for the root. Any failure on the
    /// way means the handle no longer names what it named: STALE.
    fn walk_parent(&self, id: u64) -> Result<Option<Parent>, Nfsstat> {
        let table = self.table();
        let mut names = Vec::new();
        table.path_into(id, &mut names);
        let Some((last, dirs)) = names.split_last() else {
            return Ok(None);
        };
        let mut cur: Option<OwnedFd> = None;
        for name in dirs {
            let at: BorrowedFd<'_> = cur.as_ref().map_or(self.root.as_fd(), |f| f.as_fd());
            let next = rustix::fs::openat(at, *name, dir_path_flags(), Mode::empty())
                .map_err(|_| Nfsstat::Stale)?;
            cur = Some(next);
        }
        let dir = match cur {
            Some(d) => d,
            None => rustix::fs::openat(&self.root, ".", dir_path_flags(), Mode::empty())
                .map_err(|_| Nfsstat::Stale)?,
        };
        Ok(Some((dir, Box::from(*last))))
    }

    fn check(&self, id: u64, attr: &Attr) -> Result<(), Nfsstat> {
        let table = self.table();
        let n = table.node(id).ok_or(Nfsstat::Stale)?;
        if !n.is(attr.fsid, attr.fileid, attr.gen) {
            return Err(Nfsstat::Stale);
        }
        Ok(())
    }

    /// The attributes of node `id`, checked to still be the same file.
    ///
    /// A node whose file is open in the READ cache is answered from that
    /// file, as READ is: every procedure gives a handle the same verdict.
    pub fn getattr(&self, id: u64) -> Result<Attr, Nfsstat> {
        if let Some(a) = self.cached(id)? {
            return Ok(a.1);
        }
        let a = match self.walk_parent(id)? {
            None => stat_fd(&self.root),
            Some((dir, name)) => stat_at(&dir, &name),
        }
        .map_err(|_| Nfsstat::Stale)?;
        self.check(id, &a)?;
        Ok(a)
    }

    /// Node `id`'s file from the READ cache, with its attributes now, if
    /// it is there. A cached file that has been deleted (no links left) is
    /// dropped from the cache and the handle is STALE: the name may hold
    /// another file now, and an unlinked file is gone for every procedure.
    ///
    /// Costs: a scan of the cache; on a hit, one `statx` on the open file.
    fn cached(&self, id: u64) -> Result<Option<(Arc<File>, Attr)>, Nfsstat> {
        let cached = {
            let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
            files.iter().find(|(i, _)| *i == id).map(|(_, f)| f.clone())
        };
        let Some(f) = cached else {
            return Ok(None);
        };
        let a = stat_fd(&*f).map_err(errno_to_stat)?;
        if a.nlink > 0 {
            return Ok(Some((f, a)));
        }
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(i, _)| *i != id);
        Err(Nfsstat::Stale)
    }

    /// Opens node `id` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`) and
    /// checks it is still the same file.
    fn open_node(&self, id: u64, flags: OFlags) -> Result<(OwnedFd, Attr), Nfsstat> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match self.walk_parent(id)? {
            None => rustix::fs::openat(&self.root, ".", flags, Mode::empty()),
            Some((dir, name)) => rustix::fs::openat(&dir, &*name, flags, Mode::empty()),
        }
        .map_err(|e| match e {
            Errno::NOENT => Nfsstat::Stale,
            e => errno_to_stat(e),
        })?;
        let a = stat_fd(&fd).map_err(errno_to_stat)?;
        self.check(id, &a)?;
        Ok((fd, a))
    }

    /// Looks `name` up in directory `dir`. `.` and `..` are answered from
    /// the table; other names must be single components. Returns the
    /// node's id and attributes, and the directory's attributes.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Result<(u64, Attr, Attr), Nfsstat> {
        if name.len() > MAX_NAME {
            return Err(Nfsstat::NameTooLong);
        }
        if name.is_empty() {
            return Err(Nfsstat::NoEnt);
        }
        if name.contains(&b'/') || name.contains(&0) {
            return Err(Nfsstat::Acces);
        }
        // O_DIRECTORY: a handle of a non-directory fails with NOTDIR.
        let (dfd, dir_attr) = self.open_node(dir, OFlags::PATH | OFlags::DIRECTORY)?;
        match name {
            b"." => return Ok((dir, dir_attr, dir_attr)),
            b".." => {
                let parent = self.table().node(dir).ok_or(Nfsstat::Stale)?.parent;
                return Ok((parent, self.getattr(parent)?, dir_attr));
            }
            _ => {}
        }
        let a = stat_at(&dfd, name).map_err(errno_to_stat)?;
        let id = self.register(dir, name, &a)?;
        Ok((id, a, dir_attr))
    }

    /// Registers `name` in `dir` (found with attributes `a`) and returns its
    /// id. Fails with JUKEBOX-like SERVERFAULT if the table is full.
    pub fn register(&self, dir: u64, name: &[u8], a: &Attr) -> Result<u64, Nfsstat> {
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register(dir, name, a.fsid, a.fileid, a.gen)
            .map_err(|_| Nfsstat::ServerFault)
    }

    /// Opens directory `id` for reading its entries.
    pub fn open_dir(&self, id: u64) -> Result<(OwnedFd, Attr), Nfsstat> {
        self.open_node(id, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// An open regular file for READ, from a small cache of open files.
    /// Returns it with its current attributes.
    ///
    /// Costs: on a hit, one `statx` and no allocation; on a miss, the
    /// walk, one `open` and one `Arc` allocation.
    pub fn open_file(&self, id: u64) -> Result<(Arc<File>, Attr), Nfsstat> {
        if let Some(hit) = self.cached(id)? {
            return Ok(hit);
        }
        // Look before opening: opening a device or a FIFO can have effects.
        let a = self.getattr(id)?;
        match a.kind {
            Ftype::Reg => {}
            Ftype::Dir => return Err(Nfsstat::IsDir),
            _ => return Err(Nfsstat::Inval),
        }
        let (fd, a) = self.open_node(id, OFlags::RDONLY | OFlags::NONBLOCK)?;
        if a.kind != Ftype::Reg {
            return Err(Nfsstat::Inval);
        }
        let f = Arc::new(File::from(fd));
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= FILE_CACHE {
            files.remove(0);
        }
        files.push((id, f.clone()));
        Ok((f, a))
    }

    /// The target of symbolic link `id`, and its attributes.
    pub fn readlink(&self, id: u64) -> Result<(Vec<u8>, Attr), Nfsstat> {
        let a = self.getattr(id)?;
        if a.kind != Ftype::Lnk {
            return Err(Nfsstat::Inval);
        }
        let (dir, name) = self.walk_parent(id)?.ok_or(Nfsstat::Inval)?;
        let target = rustix::fs::readlinkat(&dir, &*name, Vec::new()).map_err(errno_to_stat)?;
        Ok((target.into_bytes(), a))
    }

    /// File system statistics of the export's file system.
    pub fn statvfs(&self) -> Result<rustix::fs::StatVfs, Nfsstat> {
        rustix::fs::fstatvfs(&self.root).map_err(errno_to_stat)
    }

    /// Resolves a MOUNT path: the export name, optionally followed by a
    /// directory below it (`/export/sub/dir`), walked name by name like
    /// LOOKUP. Returns the directory's id.
    pub fn mount_path(&self, path: &[u8]) -> Result<u64, Nfsstat> {
        let name = self.name.trim_end_matches('/').as_bytes();
        let rest = path.strip_prefix(name).ok_or(Nfsstat::NoEnt)?;
        if !rest.is_empty() && rest[0] != b'/' && !name.is_empty() {
            return Err(Nfsstat::NoEnt);
        }
        let mut id = ROOT_ID;
        for comp in rest.split(|&c| c == b'/').filter(|c| !c.is_empty()) {
            id = self.lookup(id, comp)?.0;
        }
        if self.getattr(id)?.kind != Ftype::Dir {
            return Err(Nfsstat::NotDir);
        }
        Ok(id)
    }
}
