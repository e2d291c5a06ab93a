//! Command-line words, read by hand (the options are few and flat).
//!
//! [`Args`] yields options (`--name`, `--name=value`, `-h`) and their
//! values; each subcommand matches the names it knows. [`parse_size`] reads
//! byte sizes such as `1500`, `16K`, `256KiB` or `1M`.

use std::ffi::OsString;

/// A command-line mistake, worded for the user.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgError {
    /// An option that the subcommand does not know.
    #[error("unknown option {0}")]
    Unknown(String),
    /// An option given without its value.
    #[error("{0} needs a value")]
    MissingValue(String),
    /// A value that does not parse.
    #[error("{option}: {problem}")]
    BadValue {
        /// The option.
        option: String,
        /// What is wrong with its value.
        problem: String,
    },
    /// A word that is not valid UTF-8.
    #[error("arguments must be valid UTF-8")]
    NotUtf8,
}

/// One option as written: its name and, for `--name=value`, the value.
#[derive(Debug, PartialEq, Eq)]
pub struct Opt {
    /// `--runs`, `-h`, ...
    pub name: String,
    inline: Option<String>,
}

/// The words after the subcommand.
pub struct Args {
    words: std::vec::IntoIter<OsString>,
}

impl Args {
    /// Wraps the words after the subcommand's name.
    pub fn new(words: Vec<OsString>) -> Args {
        Args {
            words: words.into_iter(),
        }
    }

    /// The next option, or `None` at the end. A word that is not an option
    /// is an error (no subcommand takes positional words yet).
    pub fn next_opt(&mut self) -> Result<Option<Opt>, ArgError> {
        let Some(w) = self.words.next() else {
            return Ok(None);
        };
        let w = w.into_string().map_err(|_| ArgError::NotUtf8)?;
        if !w.starts_with('-') {
            return Err(ArgError::Unknown(w));
        }
        Ok(Some(match w.split_once('=') {
            Some((n, v)) if n.starts_with("--") => Opt {
                name: n.to_string(),
                inline: Some(v.to_string()),
            },
            _ => Opt {
                name: w,
                inline: None,
            },
        }))
    }

    /// The value of `opt`: after its `=`, or the next word.
    pub fn value(&mut self, opt: &Opt) -> Result<String, ArgError> {
        if let Some(v) = &opt.inline {
            return Ok(v.clone());
        }
        self.words
            .next()
            .ok_or_else(|| ArgError::MissingValue(opt.name.clone()))?
            .into_string()
            .map_err(|_| ArgError::NotUtf8)
    }

    /// The value of `opt` parsed by `parse`, its error worded for `opt`.
    pub fn parsed<T>(
        &mut self,
        opt: &Opt,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ArgError> {
        let v = self.value(opt)?;
        parse(&v).map_err(|problem| ArgError::BadValue {
            option: opt.name.clone(),
            problem,
        })
    }

    /// Fails if `opt` came with a value it does not take (`--quick=1`).
    pub fn flag(&self, opt: &Opt) -> Result<(), ArgError> {
        match opt.inline {
            None => Ok(()),
            Some(_) => Err(ArgError::BadValue {
                option: opt.name.clone(),
                problem: "takes no value".into(),
            }),
        }
    }
}

/// A positive whole number.
pub fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

/// A byte size: digits with an optional unit K, KB, KiB, M, MB, MiB (any
/// case; all binary, 1K = 1024) or B.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 1500, 16K, 1MiB)"))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K or M)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Comma-separated sizes, at least one, none zero.
pub fn parse_sizes(s: &str) -> Result<Vec<usize>, String> {
    let v = s
        .split(',')
        .filter(|w| !w.trim().is_empty())
        .map(|w| match parse_size(w)? {
            0 => Err("sizes must be at least 1 byte".to_string()),
            n => Ok(n),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if v.is_empty() {
        return Err("give at least one size".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Args {
        Args::new(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn options_and_values() {
        let mut a = args(&["--runs", "3", "--sizes=1K,2K", "--quick", "stray"]);
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(o.name, "--runs");
        assert_eq!(a.parsed(&o, parse_count), Ok(3));
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(o.name, "--sizes");
        assert_eq!(a.parsed(&o, parse_sizes), Ok(vec![1024, 2048]));
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(a.flag(&o), Ok(()));
        assert_eq!(a.next_opt(), Err(ArgError::Unknown("stray".into())));
        assert_eq!(a.next_opt(), Ok(None));
    }

    #[test]
    fn missing_and_bad_values() {
        let mut a = args(&["--runs"]);
        let o = a.next_opt().unwrap().unwrap();
        assert_eq!(a.value(&o), Err(ArgError::MissingValue("--runs".into())));
        let mut a = args(&["--runs=0"]);
        let o = a.next_opt().unwrap().unwrap();
        let e = a.parsed(&o, parse_count).unwrap_err();
        assert_eq!(e.to_string(), "--runs: must be at least 1");
        let mut a = args(&["--quick=yes"]);
        let o = a.next_opt().unwrap().unwrap();
        assert!(a.flag(&o).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1500"), Ok(1500));
        assert_eq!(parse_size("16K"), Ok(16384));
        assert_eq!(parse_size("256kib"), Ok(256 << 10));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64B"), Ok(64));
        assert!(parse_size("1G").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("-1").is_err());
        assert_eq!(parse_sizes("1K, 16K,256K"), Ok(vec![1024, 16384, 262144]));
        assert!(parse_sizes("").is_err());
        assert!(parse_sizes("0").is_err());
    }
}
