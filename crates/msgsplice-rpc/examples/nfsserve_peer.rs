//! The benchmark's peer: the `nfsserve` crate (a Rust NFSv3 server on
//! tokio) exporting a directory read-only, so `msgsplice bench` can put the
//! same client against both servers.
//!
//! ```text
//! cargo run --release -p msgsplice-rpc --example nfsserve_peer -- DIR [PORT]
//! ```
//!
//! It listens on 127.0.0.1 only (the address is fixed here, whatever the
//! arguments), on PORT or a free port, with NFS and MOUNT on that one port
//! (nfsserve serves both there, and a portmapper). It prints the URL of the
//! export root, with `auto-traverse-mounts=0`: nfsserve answers MOUNT
//! EXPORT in a way that libnfs's nested-export lookup fails on, and
//! `nfs-cat`/`nfs-cp` then stop at "mount_cb" (`nfs-ls` works either way).
//!
//! What nfsserve does that matters for a comparison (read from its source,
//! version 0.11): FSINFO says `rtmax` = 1 MiB, like msgsplice's export, so
//! libnfs reads in the same 1 MiB calls. A READ makes the file system
//! return a `Vec<u8>` of the data, which is serialised into a reply
//! `Vec<u8>` and written as marker + body; requests go from the socket
//! through an in-memory pipe to a task per message. The runtime here is
//! tokio's multi-threaded one with its default worker count (one per core).
//!
//! The file system below is this example's own: a read-only view of DIR.
//! File ids are handed out on first sight of a path; open files are kept
//! for READ, as msgsplice's export keeps a small cache of them.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use nfsserve::fs_util::metadata_to_fattr3;
use nfsserve::nfs::{fattr3, fileid3, filename3, nfspath3, nfsstat3, sattr3};
use nfsserve::tcp::{NFSTcp, NFSTcpListener};
use nfsserve::vfs::{DirEntry, NFSFileSystem, ReadDirResult, VFSCapabilities};

/// The root directory's id (0 is reserved by nfsserve).
const ROOT: fileid3 = 1;

/// A read-only view of a directory tree.
struct ReadOnlyDir {
    /// Path of each id, relative to the root; id `n` is at index `n - 1`.
    ids: RwLock<Ids>,
    open: Mutex<HashMap<fileid3, Arc<File>>>,
    root: PathBuf,
}

#[derive(Default)]
struct Ids {
    paths: Vec<PathBuf>,
    by_path: HashMap<PathBuf, fileid3>,
}

impl ReadOnlyDir {
    fn new(root: PathBuf) -> ReadOnlyDir {
        let mut ids = Ids::default();
        ids.paths.push(PathBuf::new());
        ids.by_path.insert(PathBuf::new(), ROOT);
        ReadOnlyDir {
            ids: RwLock::new(ids),
            open: Mutex::new(HashMap::new()),
            root,
        }
    }

    fn rel(&self, id: fileid3) -> Result<PathBuf, nfsstat3> {
        let ids = self.ids.read().map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        let i = usize::try_from(id.wrapping_sub(1)).map_err(|_| nfsstat3::NFS3ERR_STALE)?;
        ids.paths.get(i).cloned().ok_or(nfsstat3::NFS3ERR_STALE)
    }

    fn id_of(&self, rel: &Path) -> Result<fileid3, nfsstat3> {
        if let Some(&id) = self
            .ids
            .read()
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?
            .by_path
            .get(rel)
        {
            return Ok(id);
        }
        let mut ids = self
            .ids
            .write()
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        if let Some(&id) = ids.by_path.get(rel) {
            return Ok(id);
        }
        ids.paths.push(rel.to_path_buf());
        let id = ids.paths.len() as fileid3;
        ids.by_path.insert(rel.to_path_buf(), id);
        Ok(id)
    }

    fn attr(&self, id: fileid3, rel: &Path) -> Result<fattr3, nfsstat3> {
        let meta = self.root.join(rel).symlink_metadata().map_err(io_stat)?;
        Ok(metadata_to_fattr3(id, &meta))
    }

    fn file(&self, id: fileid3) -> Result<Arc<File>, nfsstat3> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
        if let Some(f) = open.get(&id) {
            return Ok(f.clone());
        }
        let f = Arc::new(File::open(self.root.join(self.rel(id)?)).map_err(io_stat)?);
        if open.len() >= 32 {
            open.clear();
        }
        open.insert(id, f.clone());
        Ok(f)
    }
}

fn io_stat(e: std::io::Error) -> nfsstat3 {
    match e.kind() {
        std::io::ErrorKind::NotFound => nfsstat3::NFS3ERR_NOENT,
        std::io::ErrorKind::PermissionDenied => nfsstat3::NFS3ERR_ACCES,
        _ => nfsstat3::NFS3ERR_IO,
    }
}

/// One plain name: no `/`, no NUL, not empty.
fn plain_name(name: &[u8]) -> Result<&std::ffi::OsStr, nfsstat3> {
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(nfsstat3::NFS3ERR_NOENT);
    }
    Ok(std::ffi::OsStr::from_bytes(name))
}

#[async_trait::async_trait]
impl NFSFileSystem for ReadOnlyDir {
    fn capabilities(&self) -> VFSCapabilities {
        VFSCapabilities::ReadOnly
    }

    fn root_dir(&self) -> fileid3 {
        ROOT
    }

    async fn lookup(&self, dirid: fileid3, filename: &filename3) -> Result<fileid3, nfsstat3> {
        let dir = self.rel(dirid)?;
        let rel = match &filename[..] {
            b"." => dir,
            // The root's parent is the root: nothing above it is reachable.
            b".." => dir.parent().map(Path::to_path_buf).unwrap_or_default(),
            name => dir.join(plain_name(name)?),
        };
        // Looks without following a symbolic link.
        self.root.join(&rel).symlink_metadata().map_err(io_stat)?;
        self.id_of(&rel)
    }

    async fn getattr(&self, id: fileid3) -> Result<fattr3, nfsstat3> {
        self.attr(id, &self.rel(id)?)
    }

    async fn setattr(&self, _id: fileid3, _setattr: sattr3) -> Result<fattr3, nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn read(
        &self,
        id: fileid3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let f = self.file(id)?;
        let size = f.metadata().map_err(io_stat)?.len();
        if offset >= size {
            return Ok((Vec::new(), true));
        }
        let n = (size - offset).min(u64::from(count)) as usize;
        let mut data = vec![0u8; n];
        let mut done = 0;
        while done < n {
            match f.read_at(&mut data[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(k) => done += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_stat(e)),
            }
        }
        data.truncate(done);
        Ok((data, offset + done as u64 >= size))
    }

    async fn write(&self, _id: fileid3, _offset: u64, _data: &[u8]) -> Result<fattr3, nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn create(
        &self,
        _dirid: fileid3,
        _filename: &filename3,
        _attr: sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn create_exclusive(
        &self,
        _dirid: fileid3,
        _filename: &filename3,
    ) -> Result<fileid3, nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn mkdir(
        &self,
        _dirid: fileid3,
        _dirname: &filename3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn remove(&self, _dirid: fileid3, _filename: &filename3) -> Result<(), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn rename(
        &self,
        _from_dirid: fileid3,
        _from_filename: &filename3,
        _to_dirid: fileid3,
        _to_filename: &filename3,
    ) -> Result<(), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn readdir(
        &self,
        dirid: fileid3,
        start_after: fileid3,
        max_entries: usize,
    ) -> Result<ReadDirResult, nfsstat3> {
        let dir = self.rel(dirid)?;
        let mut names: Vec<_> = std::fs::read_dir(self.root.join(&dir))
            .map_err(io_stat)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        // Sorted, so that pages follow one order.
        names.sort();
        let mut entries = Vec::new();
        let mut started = start_after == 0;
        let mut end = true;
        for name in names {
            let rel = dir.join(&name);
            let id = self.id_of(&rel)?;
            if !started {
                started = id == start_after;
                continue;
            }
            if entries.len() == max_entries {
                end = false;
                break;
            }
            let Ok(attr) = self.attr(id, &rel) else {
                continue;
            };
            entries.push(DirEntry {
                fileid: id,
                name: name.as_bytes().into(),
                attr,
            });
        }
        Ok(ReadDirResult { entries, end })
    }

    async fn symlink(
        &self,
        _dirid: fileid3,
        _linkname: &filename3,
        _symlink: &nfspath3,
        _attr: &sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        Err(nfsstat3::NFS3ERR_ROFS)
    }

    async fn readlink(&self, id: fileid3) -> Result<nfspath3, nfsstat3> {
        let target = std::fs::read_link(self.root.join(self.rel(id)?)).map_err(io_stat)?;
        Ok(target.as_os_str().as_bytes().into())
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: nfsserve_peer DIR [PORT]");
        std::process::exit(2);
    };
    let port: u16 = match args.next().map(|p| p.to_string_lossy().parse()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            eprintln!("nfsserve_peer: PORT must be a number from 0 to 65535");
            std::process::exit(2);
        }
    };
    let root = std::fs::canonicalize(&dir)?;
    // Loopback only, whatever the arguments.
    let mut listener =
        NFSTcpListener::bind(&format!("127.0.0.1:{port}"), ReadOnlyDir::new(root)).await?;
    listener.with_export_name("export");
    let port = listener.get_listen_port();
    println!(
        "nfs://127.0.0.1/export?nfsport={port}&mountport={port}&version=3&auto-traverse-mounts=0"
    );
    listener.handle_forever().await
}
