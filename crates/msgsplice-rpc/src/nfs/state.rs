//! [`StateDir`]: what a server keeps across restarts so that its file
//! handles stay valid: the handle key, and each export's journal of nodes.
//!
//! The directory is made 0700 on first start (its parent must exist), the
//! key file (`handle-key`, 16 random bytes) 0600; both are owned by the
//! user running the server, who should be the only one able to read
//! them: whoever has the key can forge handles. Each export has a journal
//! `NAME.nodes`, to which every node the server hands a handle for is
//! appended (see [`HandleTable::register`](super::handle::HandleTable::register)).
//! Deleting the directory makes every handle stale; clients then mount
//! again.
//!
//! Journal format: the 4 bytes `MSj1`, then records of parent id, device,
//! inode and generation (big-endian `u64`s), the name's length (`u16`)
//! and the name. A record cut short (the server died while writing it), or
//! one that names a parent not before it, ends the journal: the file is
//! cut back to the last good record. The journal is locked (`flock`) while
//! a server uses it: two servers cannot share a state directory.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::handle::Node;

const KEY_FILE: &str = "handle-key";
const JOURNAL_MAGIC: [u8; 4] = *b"MSj1";
/// Bytes of a record before its name.
const RECORD_HEAD: usize = 4 * 8 + 2;

/// A server's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Creating or reading something in it failed.
    #[error("state directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The key file is not 16 bytes: not ours, or damaged.
    #[error("{0}: not a handle key (expected 16 bytes); move it away to start with a new key, which makes clients mount again")]
    BadKey(PathBuf),
    /// Another server holds the journal.
    #[error("{0} is in use by another server; give each server its own --state-dir")]
    InUse(PathBuf),
    /// The directory is open to others: the key could be read.
    #[error("{0}: readable or writable by group or others; chmod 700 it")]
    Exposed(PathBuf),
}

impl From<StateError> for io::Error {
    fn from(e: StateError) -> io::Error {
        match &e {
            StateError::Io { source, .. } => io::Error::new(source.kind(), e.to_string()),
            _ => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
        }
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

impl StateDir {
    /// Opens `path`, creating it 0700 if it does not exist. An existing
    /// directory that group or others may use is refused.
    pub fn open(path: impl AsRef<Path>) -> Result<StateDir, StateError> {
        let path = path.as_ref().to_owned();
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(at(&path)(e)),
        }
        let meta = std::fs::metadata(&path).map_err(at(&path))?;
        if !meta.is_dir() {
            let e = io::Error::new(io::ErrorKind::NotADirectory, "not a directory");
            return Err(at(&path)(e));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(StateError::Exposed(path));
        }
        Ok(StateDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle key: read from `handle-key`, or made and written there
    /// (0600) on first start.
    pub fn key(&self) -> Result<[u8; 16], StateError> {
        let file = self.path.join(KEY_FILE);
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file);
        match created {
            Ok(mut f) => {
                let key = super::export::random_key().map_err(at(&file))?;
                f.write_all(&key)
                    .and_then(|()| f.sync_all())
                    .map_err(at(&file))?;
                Ok(key)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&file).map_err(at(&file))?;
                bytes.try_into().map_err(|_| StateError::BadKey(file))
            }
            Err(e) => Err(at(&file)(e)),
        }
    }

    /// The journal of export `name`: the nodes recorded so far, and the
    /// file open for appending more.
    pub fn journal(&self, name: &str) -> Result<(Vec<Node>, File), StateError> {
        let file = self.path.join(format!("{name}.nodes"));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&file)
            .map_err(at(&file))?;
        let locked = rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if locked.is_err() {
            return Err(StateError::InUse(file));
        }
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).map_err(at(&file))?;
        let (nodes, good) = match bytes.len() {
            0 => {
                f.write_all(&JOURNAL_MAGIC).map_err(at(&file))?;
                (Vec::new(), JOURNAL_MAGIC.len())
            }
            _ if bytes.starts_with(&JOURNAL_MAGIC) => read_journal(&bytes),
            _ => {
                let e = io::Error::new(io::ErrorKind::InvalidData, "not a journal of nodes");
                return Err(at(&file)(e));
            }
        };
        f.set_len(good as u64).map_err(at(&file))?;
        f.seek(SeekFrom::End(0)).map_err(at(&file))?;
        Ok((nodes, f))
    }
}

/// The whole records of a journal, and where the last one ends.
fn read_journal(bytes: &[u8]) -> (Vec<Node>, usize) {
    let mut nodes = Vec::new();
    let mut at = JOURNAL_MAGIC.len();
    let word = |b: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_be_bytes(w)
    };
    while let Some(head) = bytes.get(at..at + RECORD_HEAD) {
        let len = usize::from(u16::from_be_bytes([head[32], head[33]]));
        let Some(name) = bytes.get(at + RECORD_HEAD..at + RECORD_HEAD + len) else {
            break;
        };
        // A record no run could have written ends the journal here, so
        // that the ids of what follows match the records' places.
        let id = nodes.len() as u64 + 1;
        if word(head, 0) >= id || name.is_empty() || name.contains(&b'/') {
            break;
        }
        nodes.push(Node {
            parent: word(head, 0),
            dev: word(head, 1),
            ino: word(head, 2),
            gen: word(head, 3),
            name: name.into(),
        });
        at += RECORD_HEAD + len;
    }
    (nodes, at)
}

/// The journal record of `node` (names are at most 255 bytes).
pub(super) fn journal_record(node: &Node) -> Vec<u8> {
    let mut v = Vec::with_capacity(RECORD_HEAD + node.name.len());
    for w in [node.parent, node.dev, node.ino, node.gen] {
        v.extend_from_slice(&w.to_be_bytes());
    }
    let len = node.name.len().min(usize::from(u16::MAX));
    v.extend_from_slice(&(len as u16).to_be_bytes());
    v.extend_from_slice(&node.name[..len]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(parent: u64, name: &[u8]) -> Node {
        Node {
            parent,
            name: name.into(),
            dev: 1,
            ino: 2,
            gen: 3,
        }
    }

    #[test]
    fn key_is_made_once_and_kept_private() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state");
        let s = StateDir::open(&path).unwrap();
        let k = s.key().unwrap();
        assert_eq!(StateDir::open(&path).unwrap().key().unwrap(), k);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(KEY_FILE)), 0o600);
        std::fs::write(path.join(KEY_FILE), b"short").unwrap();
        assert!(matches!(s.key(), Err(StateError::BadKey(_))));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(matches!(StateDir::open(&path), Err(StateError::Exposed(_))));
    }

    #[test]
    fn journal_replays_whole_records_and_drops_a_torn_one() {
        let d = tempfile::tempdir().unwrap();
        let s = StateDir::open(d.path().join("s")).unwrap();
        let (nodes, mut f) = s.journal("data").unwrap();
        assert!(nodes.is_empty());
        f.write_all(&journal_record(&node(0, b"a"))).unwrap();
        f.write_all(&journal_record(&node(1, b"bb"))).unwrap();
        f.write_all(&journal_record(&node(2, b"ccc"))[..20])
            .unwrap();
        drop(f);
        let (nodes, mut f) = s.journal("data").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[1].parent, &*nodes[1].name), (1, &b"bb"[..]));
        f.write_all(&journal_record(&node(2, b"d"))).unwrap();
        drop(f);
        let (nodes, mut f) = s.journal("data").unwrap();
        assert_eq!(nodes.len(), 3, "the torn record was cut away");
        assert_eq!(&*nodes[2].name, b"d");
        // A second user of the same journal is refused while it is open.
        assert!(matches!(s.journal("data"), Err(StateError::InUse(_))));
        // A record with a parent after it ends the journal there.
        f.write_all(&journal_record(&node(9, b"e"))).unwrap();
        f.write_all(&journal_record(&node(1, b"f"))).unwrap();
        drop(f);
        let (nodes, _) = s.journal("data").unwrap();
        assert_eq!(nodes.len(), 3);
    }
}
