//! File handles that stay true: valid across a restart with a state
//! directory, and never naming another file than the one they were made
//! for (deleted and recreated, inode number reused, renamed over), with
//! the same verdict from every procedure.

// The shared helpers re-export more than this file uses.
#[allow(unused_imports)]
mod common;

use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::RpcClient;
use msgsplice_rpc::exports::Exports;
use msgsplice_rpc::nfs::{NfsConfig, NfsServer};
use msgsplice_rpc::ServerHandle;

const GETATTR: u32 = 1;
const ACCESS_OK: u32 = 0;
const STALE: u32 = 70;

/// A server of `root` as export `data`, with `state` as its state
/// directory if given. Returns the handle and the NFS address (which
/// serves MOUNT too).
fn start(root: &Path, state: Option<&Path>) -> (ServerHandle, SocketAddr) {
    let line = format!("data={}", root.display());
    let exports = Exports::from_flags([line.as_str()]).unwrap();
    let config = NfsConfig {
        state_dir: state.map(Path::to_owned),
        ..NfsConfig::default()
    };
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = NfsServer::bind_exports(&exports, any, any, config).unwrap();
    let at = server.nfs_addr();
    (server.spawn().unwrap(), at)
}

/// MNT of `/data`, then LOOKUP of each name in turn from the root.
fn handle_of(at: SocketAddr, path: &[&str]) -> Vec<u8> {
    let mut c = RpcClient::connect(at);
    let mut fh = c.mnt("/data").unwrap();
    for name in path {
        fh = c.lookup(&fh, name.as_bytes()).unwrap();
    }
    fh
}

fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
    std::fs::write(root.join("sub/deeper/f"), b"kept").unwrap();
    std::fs::write(root.join("top"), b"top").unwrap();
    (dir, root)
}

#[test]
fn handles_survive_a_restart_with_a_state_dir() {
    let (dir, root) = tree();
    let state = dir.path().join("state");
    let (server, at) = start(&root, Some(&state));
    let fh = handle_of(at, &["sub", "deeper", "f"]);
    let top = handle_of(at, &["top"]);
    let root_fh = handle_of(at, &[]);
    server.shutdown().unwrap();

    let (server, at) = start(&root, Some(&state));
    let mut c = RpcClient::connect(at);
    assert_eq!(c.read(&fh, 0, 10).1, b"kept", "deep file after restart");
    assert_eq!(c.read(&top, 0, 10).1, b"top");
    assert_eq!(c.status_of(GETATTR, &root_fh), ACCESS_OK);
    assert_eq!(c.mnt("/data").unwrap(), root_fh, "the same root handle");
    // New lookups after a restart give the same handles as before.
    assert_eq!(handle_of(at, &["sub", "deeper", "f"]), fh);
    server.shutdown().unwrap();

    // Without the state directory, the key is new: every handle is stale.
    let (server, at) = start(&root, None);
    let mut c = RpcClient::connect(at);
    assert_eq!(c.read(&fh, 0, 10).0, STALE);
    assert_eq!(c.status_of(GETATTR, &root_fh), STALE);
    server.shutdown().unwrap();
}

#[test]
fn a_deleted_and_recreated_file_is_not_the_same_file() {
    let (_dir, root) = tree();
    let (server, at) = start(&root, None);
    let mut c = RpcClient::connect(at);
    let path = root.join("top");
    let old_ino = std::fs::metadata(&path).unwrap().ino();
    let fh = handle_of(at, &["top"]);
    assert_eq!(c.read(&fh, 0, 3).1, b"top");

    // Delete it, and make files until one reuses the inode number (ext4
    // and tmpfs both hand a freed number out again soon), the last of them
    // under the old name.
    std::fs::remove_file(&path).unwrap();
    let mut reused = false;
    for i in 0..2000 {
        let p = root.join(format!("n{i}"));
        std::fs::write(&p, b"new").unwrap();
        if std::fs::metadata(&p).unwrap().ino() == old_ino {
            std::fs::rename(&p, &path).unwrap();
            reused = true;
            break;
        }
    }
    if !reused {
        eprintln!("note: the inode number was not reused; checking the name only");
        std::fs::write(&path, b"new").unwrap();
    }
    // Every procedure says STALE, READ through its open-file cache too.
    assert_eq!(c.read(&fh, 0, 3).0, STALE, "reused inode: {reused}");
    assert_eq!(c.status_of(GETATTR, &fh), STALE);
    // The new file has a handle of its own.
    let new = handle_of(at, &["top"]);
    assert_ne!(new, fh);
    assert_eq!(c.read(&new, 0, 3).1, b"new");
    server.shutdown().unwrap();
}

#[test]
fn a_file_renamed_over_goes_stale_for_every_procedure() {
    let (_dir, root) = tree();
    let (server, at) = start(&root, None);
    let mut c = RpcClient::connect(at);
    let fh = handle_of(at, &["top"]);
    // READ first, so the file sits in the open-file cache.
    assert_eq!(c.read(&fh, 0, 3).1, b"top");
    std::fs::write(root.join("other"), b"other").unwrap();
    std::fs::rename(root.join("other"), root.join("top")).unwrap();
    assert_eq!(c.read(&fh, 0, 3).0, STALE);
    assert_eq!(c.status_of(GETATTR, &fh), STALE);
    assert_eq!(c.read(&fh, 0, 3).0, STALE, "and stays so");
    server.shutdown().unwrap();
}

#[test]
fn a_cached_file_gets_one_verdict() {
    let (_dir, root) = tree();
    let (server, at) = start(&root, None);
    let mut c = RpcClient::connect(at);
    let fh = handle_of(at, &["top"]);
    assert_eq!(c.read(&fh, 0, 3).1, b"top");
    // Renamed within the export (still linked): the open file answers
    // for both GETATTR and READ, so they agree.
    std::fs::rename(root.join("top"), root.join("moved")).unwrap();
    let (getattr, read) = (c.status_of(GETATTR, &fh), c.read(&fh, 0, 3).0);
    assert_eq!(getattr, read, "GETATTR and READ agree");
    // Deleted: gone for both.
    std::fs::remove_file(root.join("moved")).unwrap();
    assert_eq!(c.read(&fh, 0, 3).0, STALE);
    assert_eq!(c.status_of(GETATTR, &fh), STALE);
    server.shutdown().unwrap();
}

/// A small ext4 file system on a loop device, mounted for one test and
/// unmounted when dropped. ext4 hands a freed inode number to the next
/// file created, so a reused number can be forced here.
struct LoopExt4 {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl LoopExt4 {
    /// `Err` says why it cannot be had (no loop devices, no mkfs.ext4).
    fn mount() -> Result<LoopExt4, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let img = dir.path().join("fs.img");
        std::fs::File::create(&img)
            .and_then(|f| f.set_len(32 << 20))
            .map_err(|e| e.to_string())?;
        let run = |cmd: &str, args: &[&std::ffi::OsStr]| -> Result<(), String> {
            let o = std::process::Command::new(cmd)
                .args(args)
                .output()
                .map_err(|e| format!("{cmd}: {e}"))?;
            match o.status.success() {
                true => Ok(()),
                false => Err(format!("{cmd}: {}", String::from_utf8_lossy(&o.stderr))),
            }
        };
        run(
            "mkfs.ext4",
            &["-q".as_ref(), "-F".as_ref(), img.as_os_str()],
        )?;
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        let loop_opt: &std::ffi::OsStr = "loop".as_ref();
        run(
            "mount",
            &["-o".as_ref(), loop_opt, img.as_os_str(), mnt.as_os_str()],
        )?;
        Ok(LoopExt4 { dir, mounted: true })
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("mnt")
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount")
                .arg(self.root())
                .status();
        }
    }
}

/// The file's birth time, as statx reports it.
fn born(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().created().unwrap()
}

#[test]
fn a_reused_inode_number_is_told_apart_by_its_birth_time() {
    const T: &str = "a_reused_inode_number_is_told_apart_by_its_birth_time";
    if !msgsplice_testkit::skip::require_root(T) {
        return;
    }
    let fs = match LoopExt4::mount() {
        Ok(fs) => fs,
        // Loop devices are not on every machine, even for root.
        Err(why) => return msgsplice_testkit::skip::skip_unsupported(T, why),
    };
    let root = fs.root();
    let path = root.join("victim");
    std::fs::write(&path, b"old").unwrap();
    let (server, at) = start(&root, None);
    let mut c = RpcClient::connect(at);
    let fh = handle_of(at, &["victim"]);
    // GETATTR, not READ: a READ would keep the file open in the server's
    // cache, and an open file's inode number is not free to reuse.
    assert_eq!(c.status_of(GETATTR, &fh), 0);

    // Birth times have the file system's clock granularity (a tick):
    // wait until a new file would be born in a later tick, looking at
    // birth times only.
    let probe = root.join("probe");
    for _ in 0..10_000 {
        std::fs::write(&probe, b"").unwrap();
        let later = born(&probe) != born(&path);
        std::fs::remove_file(&probe).unwrap();
        if later {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let old_ino = std::fs::metadata(&path).unwrap().ino();
    let old_born = born(&path);
    std::fs::remove_file(&path).unwrap();
    // Make files until one gets the freed number (ext4 hands it out again
    // within a few), and put it under the old name.
    let mut made = Vec::new();
    for i in 0..64 {
        let p = root.join(format!("new-{i}"));
        std::fs::write(&p, b"new").unwrap();
        if std::fs::metadata(&p).unwrap().ino() == old_ino {
            std::fs::rename(&p, &path).unwrap();
            break;
        }
        made.push(p);
    }
    for p in made {
        std::fs::remove_file(p).unwrap();
    }
    assert_eq!(
        std::fs::metadata(&path).map(|m| m.ino()).ok(),
        Some(old_ino),
        "ext4 reuses the freed inode number"
    );
    assert_ne!(born(&path), old_born, "born in a later tick");

    // Same name, same inode number, another file: stale everywhere.
    assert_eq!(c.status_of(GETATTR, &fh), STALE);
    assert_eq!(c.read(&fh, 0, 3).0, STALE);
    let new = handle_of(at, &["victim"]);
    assert_ne!(new, fh);
    assert_eq!(c.read(&new, 0, 3).1, b"new");
    server.shutdown().unwrap();
}
