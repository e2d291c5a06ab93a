//! `msgsplice`: the command-line front of the msgsplice workspace.
//!
//! `msgsplice bench` runs the side-by-side benchmark (the README's main
//! command: `cargo run --release -- bench`); `msgsplice nfs serve DIR`
//! exports a directory read-only over NFSv3. A subcommand is one arm of the
//! match in [`main`] and a module with `main(words) -> ExitCode`.
#![deny(unsafe_code)]

use std::process::ExitCode;

use msgsplice_cli::alloc_count::CountingAlloc;
use msgsplice_cli::{bench, nfs};

/// Counts heap allocations per thread, for the benchmark's "allocs/msg".
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const USAGE: &str = "\
usage: msgsplice <command> [options]

commands:
  bench    measure msgsplice against the usual ways, side by side
           (msgsplice bench --help for its options)
  nfs      nfs serve DIR: export DIR read-only over NFSv3 and print its URL
           (msgsplice nfs --help for its options)
";

fn main() -> ExitCode {
    let mut words = std::env::args_os().skip(1);
    let command = words.next();
    let rest: Vec<_> = words.collect();
    match command.as_ref().and_then(|c| c.to_str()) {
        Some("bench") => bench::main(rest),
        Some("nfs") => nfs::main(rest),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("msgsplice {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        other => {
            match other {
                Some(c) => eprintln!("msgsplice: unknown command {c:?}\n"),
                None => eprintln!("msgsplice: which command?\n"),
            }
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
