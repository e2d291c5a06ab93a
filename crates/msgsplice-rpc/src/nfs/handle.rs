//! File handles: opaque to clients, unforgeable, checked on every call.
//!
//! A handle names an entry of an export's [`HandleTable`]: the export's
//! number and the node's id, followed by a 128-bit SipHash-2-4 tag over
//! (layout version, export, id, device, inode) keyed with the server's
//! key. A client cannot make a valid handle without the key, cannot move a
//! handle to another export by changing its number, and a handle from
//! another server does not verify.
//!
//! The table records, for each node, its parent and its name, so the
//! server reaches a node again by walking names down from the export root,
//! one `openat(O_NOFOLLOW)` per component (see `export.rs`). The device,
//! inode and generation in the table are checked against what that walk
//! finds: a name that now points to another file makes the old handle
//! stale. The generation is the file's birth time: an inode number can be
//! reused by a new file as soon as the old one is deleted, and so can its
//! ctime be changed at will (by `chmod`, say), but a new file is born
//! later than the one it replaces, and its birth time never changes after.
//! Two limits: birth times have the file system's clock granularity (a
//! tick of a few milliseconds on ext4), so a file deleted and replaced
//! within one tick by a file that gets its inode number is not told apart
//! (an inode number is not reused while the server holds the file open,
//! as its READ cache does); and a file system without birth times (gen 0)
//! has only the inode number. Linux's nfsd uses the inode's generation
//! number instead, which needs `name_to_handle_at`.
//!
//! With a journal (see `state.rs`), every node registered is appended to
//! it, and a restarted server replays it: node ids, and so handles, stay
//! the same across restarts when the key does too.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;

use siphasher::sip128::SipHasher24;

/// Length of every handle this server makes: layout (4 bytes), export
/// number (4), node id (8), tag (16).
pub const FH_LEN: usize = 32;
const LAYOUT: [u8; 4] = *b"MSf2";
/// Where the tag starts in a handle.
const TAG_AT: usize = 16;

/// The export number a handle of this server's layout names, read without
/// verifying anything; `None` if `fh` is not of this layout. Used to route
/// a call to the export whose table then verifies the handle.
pub fn export_of(fh: &[u8]) -> Option<u32> {
    if fh.len() != FH_LEN || fh[..4] != LAYOUT {
        return None;
    }
    let mut b = [0u8; 4];
    b.copy_from_slice(&fh[4..8]);
    Some(u32::from_be_bytes(b))
}

/// The id of the export root in every table.
pub const ROOT_ID: u64 = 0;

/// Why a handle was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// Not a handle of this server's format (NFS3ERR_BADHANDLE).
    Malformed,
    /// Well-formed but unknown or not verifiable: forged, or from another
    /// server instance (NFS3ERR_STALE).
    Stale,
}

/// A file handle as sent to clients.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FileHandle([u8; FH_LEN]);

impl FileHandle {
    /// The handle's bytes (the `nfs_fh3` opaque).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for FileHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileHandle(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// A node of the exported tree, as the server first found it.
#[derive(Debug, Clone)]
pub struct Node {
    /// The parent directory's id (the root is its own parent).
    pub parent: u64,
    /// The name in the parent (empty for the root).
    pub name: Box<[u8]>,
    /// Device number found when the node was registered.
    pub dev: u64,
    /// Inode number found when the node was registered.
    pub ino: u64,
    /// Generation (birth time) found when the node was registered; 0 where
    /// the file system has none.
    pub gen: u64,
}

impl Node {
    /// True if a file with `dev`, `ino` and `gen` is this node's file.
    pub fn is(&self, dev: u64, ino: u64, gen: u64) -> bool {
        self.dev == dev && self.ino == ino && self.gen == gen
    }
}

/// The table was full: the server refuses to remember more nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableFull;

/// Every node the server has handed a handle for.
///
/// Memory: one entry per (parent, name, inode) looked up, bounded by
/// `max_nodes`.
#[derive(Debug)]
pub struct HandleTable {
    key: [u8; 16],
    export: u32,
    nodes: Vec<Node>,
    by_name: HashMap<(u64, Box<[u8]>), u64>,
    max_nodes: usize,
    journal: Option<File>,
}

impl HandleTable {
    /// The table of export number `export`, whose root is the file `root`
    /// (its name and parent are ignored), tagging handles with `key`.
    pub fn new(key: [u8; 16], export: u32, root: Node, max_nodes: usize) -> HandleTable {
        HandleTable {
            key,
            export,
            nodes: vec![Node {
                parent: ROOT_ID,
                name: Box::default(),
                ..root
            }],
            by_name: HashMap::new(),
            max_nodes: max_nodes.max(1),
            journal: None,
        }
    }

    /// Takes back the nodes of an earlier run, in their order (ids from 1),
    /// then appends every new node to `journal`. Stops at the first node
    /// that could not have been registered (a parent not before it, an
    /// empty name or one with a `/`), or when the table is full.
    pub fn restore(&mut self, nodes: Vec<Node>, journal: File) {
        for n in nodes {
            let id = self.nodes.len() as u64;
            let bad = n.parent >= id || n.name.is_empty() || n.name.contains(&b'/');
            if bad || self.nodes.len() >= self.max_nodes {
                break;
            }
            self.by_name.insert((n.parent, n.name.clone()), id);
            self.nodes.push(n);
        }
        self.journal = Some(journal);
    }

    fn tag(&self, id: u64, node: &Node) -> [u8; 16] {
        let mut msg = [0u8; 40];
        msg[..4].copy_from_slice(&LAYOUT);
        msg[4..8].copy_from_slice(&self.export.to_be_bytes());
        msg[8..16].copy_from_slice(&id.to_be_bytes());
        msg[16..24].copy_from_slice(&node.dev.to_be_bytes());
        msg[24..32].copy_from_slice(&node.ino.to_be_bytes());
        msg[32..40].copy_from_slice(&node.gen.to_be_bytes());
        SipHasher24::new_with_key(&self.key).hash(&msg).as_bytes()
    }

    /// A keyed 64-bit hash of `words`, for values a client must hand back
    /// unchanged and cannot guess (READDIR cookie verifiers).
    pub fn keyed(&self, words: &[u64]) -> u64 {
        let mut h = siphasher::sip::SipHasher24::new_with_key(&self.key);
        for w in words {
            std::hash::Hasher::write(&mut h, &w.to_be_bytes());
        }
        std::hash::Hasher::finish(&h)
    }

    /// The handle of node `id`.
    ///
    /// # Panics
    /// If `id` is not in the table.
    pub fn handle(&self, id: u64) -> FileHandle {
        let node = &self.nodes[id as usize];
        let mut fh = [0u8; FH_LEN];
        fh[..4].copy_from_slice(&LAYOUT);
        fh[4..8].copy_from_slice(&self.export.to_be_bytes());
        fh[8..TAG_AT].copy_from_slice(&id.to_be_bytes());
        fh[TAG_AT..].copy_from_slice(&self.tag(id, node));
        FileHandle(fh)
    }

    /// Checks a handle from a client and returns its node id.
    pub fn verify(&self, fh: &[u8]) -> Result<u64, HandleError> {
        match export_of(fh) {
            None => return Err(HandleError::Malformed),
            Some(e) if e != self.export => return Err(HandleError::Stale),
            Some(_) => {}
        }
        let mut idb = [0u8; 8];
        idb.copy_from_slice(&fh[8..TAG_AT]);
        let id = u64::from_be_bytes(idb);
        let node = self
            .nodes
            .get(usize::try_from(id).map_err(|_| HandleError::Stale)?)
            .ok_or(HandleError::Stale)?;
        let want = self.tag(id, node);
        // Constant time: how many bytes matched must not leak.
        let diff = want
            .iter()
            .zip(&fh[TAG_AT..])
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(HandleError::Stale);
        }
        Ok(id)
    }

    /// The node with this id.
    pub fn node(&self, id: u64) -> Option<&Node> {
        self.nodes.get(usize::try_from(id).ok()?)
    }

    /// The id for `name` in directory `parent` whose file has (`dev`,
    /// `ino`, `gen`), registering it if new. A name that now holds another
    /// file gets a new id; the old id's handle goes stale.
    ///
    /// Costs: with a journal, one `write` for a new node. A journal that
    /// cannot be written (disk full) does not stop the server: the node's
    /// handle then lasts until the server stops.
    pub fn register(
        &mut self,
        parent: u64,
        name: &[u8],
        dev: u64,
        ino: u64,
        gen: u64,
    ) -> Result<u64, TableFull> {
        let key = (parent, Box::<[u8]>::from(name));
        if let Some(&id) = self.by_name.get(&key) {
            if self.nodes[id as usize].is(dev, ino, gen) {
                return Ok(id);
            }
        }
        if self.nodes.len() >= self.max_nodes {
            return Err(TableFull);
        }
        let id = self.nodes.len() as u64;
        let node = Node {
            parent,
            name: key.1.clone(),
            dev,
            ino,
            gen,
        };
        if let Some(j) = &mut self.journal {
            let _ = j.write_all(&super::state::journal_record(&node));
        }
        self.nodes.push(node);
        self.by_name.insert(key, id);
        Ok(id)
    }

    /// The names from the root down to node `id` (empty for the root), in
    /// `out`, which is cleared first.
    pub fn path_into<'t>(&'t self, mut id: u64, out: &mut Vec<&'t [u8]>) {
        out.clear();
        while id != ROOT_ID {
            let n = &self.nodes[id as usize];
            out.push(&n.name);
            id = n.parent;
        }
        out.reverse();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn root(dev: u64, ino: u64) -> Node {
        Node {
            parent: 0,
            name: Box::default(),
            dev,
            ino,
            gen: 5,
        }
    }

    fn table() -> HandleTable {
        HandleTable::new([7; 16], 0, root(1, 2), 100)
    }

    #[test]
    fn handles_verify_and_name_their_node() {
        let mut t = table();
        let a = t.register(ROOT_ID, b"a", 1, 10, 0).unwrap();
        let b = t.register(a, b"b", 1, 11, 0).unwrap();
        assert_eq!(t.register(a, b"b", 1, 11, 0), Ok(b));
        assert_eq!(t.verify(t.handle(b).as_bytes()), Ok(b));
        assert_eq!(t.verify(t.handle(ROOT_ID).as_bytes()), Ok(ROOT_ID));
        let mut path = Vec::new();
        t.path_into(b, &mut path);
        assert_eq!(path, vec![&b"a"[..], &b"b"[..]]);
    }

    #[test]
    fn replaced_file_gets_a_new_id() {
        let mut t = table();
        let a = t.register(ROOT_ID, b"a", 1, 10, 0).unwrap();
        let a2 = t.register(ROOT_ID, b"a", 1, 99, 0).unwrap();
        assert_ne!(a, a2);
        // The same inode number born again: another file.
        let a3 = t.register(ROOT_ID, b"a", 1, 99, 7).unwrap();
        assert_ne!(a2, a3);
        assert!(t.node(a3).unwrap().is(1, 99, 7));
        assert!(!t.node(a2).unwrap().is(1, 99, 7));
        // Both handles still verify; the export's walk finds the old one stale.
        assert_eq!(t.verify(t.handle(a).as_bytes()), Ok(a));
    }

    #[test]
    fn malformed_and_forged_handles_are_refused() {
        let mut t = table();
        let a = t.register(ROOT_ID, b"a", 1, 10, 0).unwrap();
        let good = t.handle(a);
        assert_eq!(
            t.verify(&good.as_bytes()[..FH_LEN - 1]),
            Err(HandleError::Malformed)
        );
        assert_eq!(t.verify(&[0; FH_LEN]), Err(HandleError::Malformed));
        // Same id, another key: another server's handle.
        let other = HandleTable::new([8; 16], 0, root(1, 2), 100);
        assert_eq!(
            t.verify(other.handle(ROOT_ID).as_bytes()),
            Err(HandleError::Stale)
        );
        // An id the table does not have.
        let mut forged = good.as_bytes().to_vec();
        forged[15] = 50;
        assert_eq!(t.verify(&forged), Err(HandleError::Stale));
        // The same node of another export, with the same key: the export
        // number is under the tag.
        let sibling = HandleTable::new([7; 16], 1, root(1, 2), 100);
        let fh = sibling.handle(ROOT_ID);
        assert_eq!(export_of(fh.as_bytes()), Some(1));
        assert_eq!(t.verify(fh.as_bytes()), Err(HandleError::Stale));
        let mut moved = fh.as_bytes().to_vec();
        moved[7] = 0;
        assert_eq!(t.verify(&moved), Err(HandleError::Stale));
    }

    #[test]
    fn table_is_bounded() {
        let mut t = HandleTable::new([0; 16], 0, root(1, 2), 2);
        assert!(t.register(ROOT_ID, b"a", 1, 3, 0).is_ok());
        assert_eq!(t.register(ROOT_ID, b"b", 1, 4, 0), Err(TableFull));
    }

    proptest! {
        /// Flipping any bit of a valid handle makes it invalid.
        #[test]
        fn any_bit_flip_is_detected(bit in 0usize..FH_LEN * 8) {
            let mut t = table();
            let a = t.register(ROOT_ID, b"a", 1, 10, 0).unwrap();
            let mut fh = t.handle(a).as_bytes().to_vec();
            fh[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(t.verify(&fh).is_err());
        }
    }
}
