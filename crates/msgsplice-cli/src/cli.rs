//! The command line of `msgsplice`, read by clap: [`Cli`] picks the
//! subcommand, whose options live beside the code that uses them
//! ([`BenchArgs`], [`ServeArgs`]). This module also holds the value parsers
//! the subcommands share: counts and byte sizes such as `1500`, `16K`,
//! `256KiB` or `1M`.
//!
//! A mistake on the command line makes clap print what is wrong and exit
//! with status 2; `--help` prints the help and exits with 0.

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::nfs::ServeArgs;

/// `msgsplice`, as written on the command line.
#[derive(Parser, Debug)]
#[command(
    name = "msgsplice",
    version,
    about = "msgsplice: side-by-side benchmarks and a read-only NFSv3 export"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure msgsplice against the usual ways, side by side
    #[command(
        long_about = "Measures msgsplice against the usual ways, side by side, and \
                            prints one table per section: median and min..max over several \
                            runs, and the ratio against the section's baseline (above 1.00x: \
                            better than the baseline)."
    )]
    Bench(BenchArgs),
    /// Export a directory read-only over NFSv3
    #[command(subcommand, after_help = crate::nfs::EXAMPLE)]
    Nfs(NfsCommand),
}

/// The subcommands of `msgsplice nfs`.
#[derive(Subcommand, Debug)]
pub enum NfsCommand {
    /// Export DIR read-only over NFSv3, print its nfs:// URL, serve until Ctrl-C
    Serve(ServeArgs),
}

/// Payload sizes, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SizeList(pub Vec<usize>);

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
pub fn parse_sizes(s: &str) -> Result<SizeList, String> {
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
    Ok(SizeList(v))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn subcommands() {
        let c = Cli::try_parse_from(["msgsplice", "bench", "--quick"]).unwrap();
        assert!(matches!(c.command, Command::Bench(_)));
        let c = Cli::try_parse_from(["msgsplice", "nfs", "serve", "/srv"]).unwrap();
        assert!(matches!(c.command, Command::Nfs(NfsCommand::Serve(_))));
        let e = Cli::try_parse_from(["msgsplice", "frobnicate"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["msgsplice"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn counts() {
        assert_eq!(parse_count("3"), Ok(3));
        assert_eq!(parse_count("0"), Err("must be at least 1".into()));
        assert!(parse_count("x").is_err());
        assert!(parse_count("-1").is_err());
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
        assert_eq!(
            parse_sizes("1K, 16K,256K"),
            Ok(SizeList(vec![1024, 16384, 262144]))
        );
        assert!(parse_sizes("").is_err());
        assert!(parse_sizes("0").is_err());
    }
}
