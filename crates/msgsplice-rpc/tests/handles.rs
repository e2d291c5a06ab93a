//! File handles that stay true: valid across a restart with a state
//! directory, and never naming another file than the one they were made
//! for (deleted and recreated, inode number reused, renamed over), with
//! the same verdict from every procedure.

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
