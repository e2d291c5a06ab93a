//! [`ExportSet`]: the exports a server serves, found by handle or by
//! MOUNT path.
//!
//! Every handle carries its export's number (its place in the set), so an
//! NFS call is routed to one export before anything else is decoded, and
//! that export's table verifies the handle and its `clients=` decide
//! whether the caller may use it.

use std::io;
use std::sync::Arc;

use siphasher::sip::SipHasher24;

use super::export::Export;
use super::handle::export_of;
use crate::exports::Exports;

/// The number the handles of export `name` carry: 32 bits of a keyed
/// hash of the name. Collisions are found when the set is opened.
pub fn export_number(key: &[u8; 16], name: &str) -> u32 {
    let h = SipHasher24::new_with_key(key).hash(name.as_bytes());
    (h >> 32) as u32
}

/// The exports of a server, each with the number its handles carry.
#[derive(Debug)]
pub struct ExportSet {
    list: Vec<Arc<Export>>,
}

impl ExportSet {
    /// A set of one export, whatever number it was opened with.
    pub fn single(export: Arc<Export>) -> ExportSet {
        ExportSet { list: vec![export] }
    }

    /// Opens every export of `exports`, tagging their handles with `key`,
    /// each with room for `max_nodes` handles. An export's number is
    /// derived from its name and the key (see [`export_number`]), so that
    /// reordering or adding exports leaves the handles of the others valid.
    ///
    /// Fails if there is no export, or a directory cannot be opened (the
    /// error names it).
    pub fn open(exports: &Exports, key: [u8; 16], max_nodes: usize) -> io::Result<ExportSet> {
        if exports.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to export: give at least one NAME=DIR",
            ));
        }
        let mut list = Vec::with_capacity(exports.len());
        for e in exports.iter() {
            let number = export_number(&key, &e.name);
            if let Some(other) = list.iter().find(|x: &&Arc<Export>| x.number() == number) {
                let why = format!(
                    "exports {} and {} collide: rename one",
                    other.name(),
                    e.name
                );
                return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
            }
            let ex =
                Export::open_with(number, &e.path(), e.clone(), key, max_nodes).map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!("export {}: {}: {err}", e.name, e.dir.display()),
                    )
                })?;
            list.push(Arc::new(ex));
        }
        Ok(ExportSet { list })
    }

    /// The exports in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Export>> {
        self.list.iter()
    }

    /// The first export (every set has one).
    pub fn first(&self) -> &Arc<Export> {
        &self.list[0]
    }

    /// The export a handle names by its number, if there is one; the
    /// export's own table still has to verify the handle.
    pub fn by_handle(&self, fh: &[u8]) -> Option<&Arc<Export>> {
        let n = export_of(fh)?;
        self.list.iter().find(|e| e.number() == n)
    }

    /// The export that MOUNT path `path` is in: the export whose name
    /// `path` is, or starts with followed by `/` (the longest such name).
    pub fn for_mount(&self, path: &[u8]) -> Option<&Arc<Export>> {
        self.list
            .iter()
            .filter(|e| {
                let name = e.name().trim_end_matches('/').as_bytes();
                match path.strip_prefix(name) {
                    Some(rest) => rest.is_empty() || rest[0] == b'/',
                    None => false,
                }
            })
            .max_by_key(|e| e.name().len())
    }
}
