//! `msgsplice`: the command-line front of the msgsplice workspace.
//!
//! `msgsplice bench` runs the side-by-side benchmark (`cargo run --release
//! -- bench`); `msgsplice nfs serve DIR` exports a directory read-only over
//! NFSv3. The command line is [`msgsplice_cli::cli::Cli`]; a subcommand is
//! one arm of the match in [`main`].
#![deny(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use msgsplice_cli::alloc_count::CountingAlloc;
use msgsplice_cli::cli::{Cli, Command, NfsCommand};
use msgsplice_cli::{bench, nfs};

/// Counts heap allocations per thread, for the benchmark's "allocs/msg".
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    // On a mistake clap prints what is wrong and exits with status 2.
    match Cli::parse().command {
        Command::Bench(args) => bench::main(args),
        Command::Nfs(NfsCommand::Serve(args)) => nfs::serve(&args),
    }
}
