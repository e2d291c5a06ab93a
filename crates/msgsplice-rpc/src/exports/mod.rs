//! The exports configuration, sans-IO: which directories are exported
//! under which names, to whom, and as whom.
//!
//! An exports file has one export a line, `NAME=DIR[,OPTION...]`; blank
//! lines and lines starting with `#` are ignored (there are no comments at
//! the end of a line: `#` may be part of a path). The repeated
//! `--export NAME=DIR[,OPTION...]` flag takes the same form. NAME becomes
//! the export path `/NAME` that MOUNT (RFC 1813 appendix I) is asked for.
//! Options, after Linux's exports(5):
//!
//! - `clients=ADDR[/BITS][;ADDR[/BITS]...]`: who may use the export, by
//!   IPv4 or IPv6 address or network. Without it, everyone who can reach
//!   the server may.
//! - `root_squash` (the default): uid 0 and gid 0 become the anonymous
//!   identity. `all_squash`: everyone does. `no_root_squash`: nobody does.
//! - `anonuid=N`, `anongid=N`: the anonymous identity (default 65534).
//!
//! Errors name the line (or flag) and the problem, as in
//! `line 3: unknown option "rw"`.
//!
//! With an [`Identity`] from [`Export::identity`], [`access()`](fn@access) and the
//! `may_*` functions decide, from a file's mode and owner, what an NFSv3
//! server may grant (see the [`access`](mod@access) module for the rules).

pub mod access;
mod client;
mod parse;

use std::net::IpAddr;
use std::path::PathBuf;

pub use access::{access, access_bits, may_list_dir, may_read, may_search_dir};
pub use access::{FileOwner, Groups, Identity, Squash};
pub use client::{ClientRule, ClientRuleError};
pub use parse::{parse_export, ExportErrorKind, ExportsError, Location};

/// The default anonymous uid and gid (`nobody`, `nogroup`).
pub const DEFAULT_ANON_ID: u32 = 65534;

/// One export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The name; the export path is `/name`. Never empty, never `.` or
    /// `..`, no `/`, `,`, white space or control characters.
    pub name: String,
    /// The directory exported, as written.
    pub dir: PathBuf,
    /// Who may use it; empty means everyone.
    pub clients: Vec<ClientRule>,
    /// How identities are mapped.
    pub squash: Squash,
    /// The anonymous uid.
    pub anon_uid: u32,
    /// The anonymous gid.
    pub anon_gid: u32,
}

impl Export {
    /// The path clients mount: `/name`.
    pub fn path(&self) -> String {
        format!("/{}", self.name)
    }

    /// True if a client at `addr` may use the export.
    pub fn admits(&self, addr: IpAddr) -> bool {
        self.clients.is_empty() || self.clients.iter().any(|r| r.matches(addr))
    }

    /// The identity a client claiming `uid`, `gid`, `gids` has here.
    pub fn identity(&self, uid: u32, gid: u32, gids: &[u32]) -> Identity {
        self.squash
            .apply(self.anon_uid, self.anon_gid, uid, gid, gids)
    }
}

/// The exports, in the order given, with unique names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exports {
    list: Vec<Export>,
}

impl Exports {
    /// No exports.
    pub fn new() -> Exports {
        Exports::default()
    }

    /// Reads an exports file's text.
    pub fn parse(text: &str) -> Result<Exports, ExportsError> {
        let mut all = Exports::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |kind| ExportsError {
                at: Location::Line(i + 1),
                kind,
            };
            all.push(parse_export(line).map_err(at)?).map_err(at)?;
        }
        Ok(all)
    }

    /// Reads the values of repeated `--export` flags.
    pub fn from_flags<'a>(
        flags: impl IntoIterator<Item = &'a str>,
    ) -> Result<Exports, ExportsError> {
        let mut all = Exports::new();
        for flag in flags {
            let at = |kind| ExportsError {
                at: Location::Flag(flag.to_owned()),
                kind,
            };
            all.push(parse_export(flag).map_err(at)?).map_err(at)?;
        }
        Ok(all)
    }

    /// Adds `e`, unless its name is taken.
    pub fn push(&mut self, e: Export) -> Result<(), ExportErrorKind> {
        if self.by_name(&e.name).is_some() {
            return Err(ExportErrorKind::Duplicate(e.name));
        }
        self.list.push(e);
        Ok(())
    }

    /// The exports in order.
    pub fn iter(&self) -> impl Iterator<Item = &Export> {
        self.list.iter()
    }

    /// Number of exports.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The export named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Export> {
        self.list.iter().find(|e| e.name == name)
    }

    /// The export whose path is exactly `path` (`/name`), as MOUNT
    /// receives it (bytes, not necessarily UTF-8).
    pub fn by_path(&self, path: &[u8]) -> Option<&Export> {
        let name = path.strip_prefix(b"/")?;
        self.list.iter().find(|e| e.name.as_bytes() == name)
    }

    /// The export that `path` is in, and the rest of the path below it
    /// (empty, or starting with `/`): `/data/sub/dir` gives the export
    /// `data` and `/sub/dir`.
    pub fn by_mount_path<'p>(&self, path: &'p [u8]) -> Option<(&Export, &'p [u8])> {
        let rest = path.strip_prefix(b"/")?;
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let e = self.by_path(&path[..end + 1])?;
        Some((e, &rest[end..]))
    }
}

#[cfg(test)]
mod tests;
