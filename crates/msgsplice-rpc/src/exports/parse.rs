//! The exports syntax: `NAME=DIR[,OPTION...]`, one export a line.

use std::path::PathBuf;

use super::client::{ClientRule, ClientRuleError};
use super::{Export, Squash, DEFAULT_ANON_ID};

/// Where a bad export came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A line of an exports file (counted from 1).
    Line(usize),
    /// An `--export` flag, as given.
    Flag(String),
}

/// What is wrong with an export.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExportErrorKind {
    /// No `=` between name and directory.
    #[error("expected NAME=DIR[,options], found no \"=\"")]
    NoEquals,
    /// The name cannot be an export path component.
    #[error("export name {name:?} {why}")]
    BadName {
        /// The name as written.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Nothing between `=` and the options.
    #[error("export {0:?} has no directory")]
    NoDir(String),
    /// An option this parser does not know.
    #[error("unknown option {0:?} (known: clients=, root_squash, all_squash, no_root_squash, anonuid=, anongid=)")]
    UnknownOption(String),
    /// Two commas in a row, or a trailing comma.
    #[error("empty option (two commas in a row, or a trailing comma)")]
    EmptyOption,
    /// The same option twice.
    #[error("option {0:?} is given twice")]
    Repeated(&'static str),
    /// Two options that contradict each other.
    #[error("options {0:?} and {1:?} contradict each other; keep one")]
    Conflict(&'static str, &'static str),
    /// A number that is not one.
    #[error("{option}={value:?} is not a number from 0 to 4294967295")]
    BadNumber {
        /// The option.
        option: &'static str,
        /// The value as written.
        value: String,
    },
    /// `clients=` with nothing after it, or an empty entry.
    #[error("clients= needs ADDR[/BITS] entries separated by \";\"")]
    NoClients,
    /// A bad `clients=` entry.
    #[error("bad client {0}")]
    BadClient(#[from] ClientRuleError),
    /// Two exports with one name.
    #[error("export name {0:?} is used twice")]
    Duplicate(String),
}

/// An export that could not be read: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExportsError {
    /// The line or flag.
    pub at: Location,
    /// The problem.
    pub kind: ExportErrorKind,
}

impl std::fmt::Display for ExportsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            Location::Line(n) => write!(f, "line {n}: {}", self.kind),
            Location::Flag(s) => write!(f, "--export {s}: {}", self.kind),
        }
    }
}

fn check_name(name: &str) -> Result<(), ExportErrorKind> {
    let why = if name.is_empty() {
        "is empty"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name.contains('/') {
        "contains \"/\" (the export path is /NAME)"
    } else if name.contains(',') {
        "contains \",\""
    } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains white space or control characters"
    } else {
        return Ok(());
    };
    Err(ExportErrorKind::BadName {
        name: name.to_owned(),
        why,
    })
}

/// Options read so far; each field remembers whether it was given.
#[derive(Default)]
struct Options {
    clients: Option<Vec<ClientRule>>,
    squash: Option<(Squash, &'static str)>,
    anon_uid: Option<u32>,
    anon_gid: Option<u32>,
}

fn number(option: &'static str, value: &str) -> Result<u32, ExportErrorKind> {
    match value.parse::<u32>() {
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(ExportErrorKind::BadNumber {
            option,
            value: value.to_owned(),
        }),
    }
}

fn set<T>(slot: &mut Option<T>, name: &'static str, v: T) -> Result<(), ExportErrorKind> {
    if slot.is_some() {
        return Err(ExportErrorKind::Repeated(name));
    }
    *slot = Some(v);
    Ok(())
}

impl Options {
    fn add(&mut self, opt: &str) -> Result<(), ExportErrorKind> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("", None) => Err(ExportErrorKind::EmptyOption),
            ("clients", Some(v)) => {
                let rules = v
                    .split(';')
                    .map(|r| match r {
                        "" => Err(ExportErrorKind::NoClients),
                        r => Ok(ClientRule::parse(r)?),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                set(&mut self.clients, "clients", rules)
            }
            ("anonuid", Some(v)) => set(&mut self.anon_uid, "anonuid", number("anonuid", v)?),
            ("anongid", Some(v)) => set(&mut self.anon_gid, "anongid", number("anongid", v)?),
            ("root_squash", None) => self.squash(Squash::Root, "root_squash"),
            ("all_squash", None) => self.squash(Squash::All, "all_squash"),
            ("no_root_squash", None) => self.squash(Squash::None, "no_root_squash"),
            _ => Err(ExportErrorKind::UnknownOption(opt.to_owned())),
        }
    }

    fn squash(&mut self, s: Squash, name: &'static str) -> Result<(), ExportErrorKind> {
        match self.squash {
            None => {
                self.squash = Some((s, name));
                Ok(())
            }
            Some((_, prev)) if prev == name => Err(ExportErrorKind::Repeated(name)),
            Some((_, prev)) => Err(ExportErrorKind::Conflict(prev, name)),
        }
    }
}

/// Reads one export, `NAME=DIR[,OPTION...]`. DIR runs to the first comma
/// (so it cannot contain one) and is taken as written: a relative DIR is
/// relative to wherever the caller resolves it.
pub fn parse_export(text: &str) -> Result<Export, ExportErrorKind> {
    let (name, rest) = text.split_once('=').ok_or(ExportErrorKind::NoEquals)?;
    let name = name.trim();
    check_name(name)?;
    let mut parts = rest.split(',');
    let dir = parts.next().unwrap_or("").trim();
    if dir.is_empty() {
        return Err(ExportErrorKind::NoDir(name.to_owned()));
    }
    let mut opts = Options::default();
    for opt in parts {
        opts.add(opt.trim())?;
    }
    Ok(Export {
        name: name.to_owned(),
        dir: PathBuf::from(dir),
        clients: opts.clients.unwrap_or_default(),
        squash: opts.squash.map_or(Squash::default(), |(s, _)| s),
        anon_uid: opts.anon_uid.unwrap_or(DEFAULT_ANON_ID),
        anon_gid: opts.anon_gid.unwrap_or(DEFAULT_ANON_ID),
    })
}
