//! `msgsplice nfs serve DIR`: a read-only NFSv3 export of one directory.
//!
//! The export is `msgsplice_rpc::NfsServer` (MOUNT v3 and NFSv3, replies
//! through a Splicer). The command prints the `nfs://` URL a libnfs client
//! uses (`nfs-ls`, `nfs-cat`, `nfs-cp`) on stdout, one line, then serves
//! until it is interrupted (Ctrl-C) or killed: on the tokio driver by
//! default, which shuts down gracefully on SIGINT and SIGTERM, or with
//! `--driver threads` on one thread per connection. It listens on 127.0.0.1
//! unless `--bind` says otherwise.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use msgsplice_rpc::server::TokioConfig;
use msgsplice_rpc::NfsServer;

/// The example under the help of `msgsplice nfs` and `msgsplice nfs serve`.
pub const EXAMPLE: &str = "\
Example:
  msgsplice nfs serve /srv/data --port 2049 --mount-port 2049
  nfs-cat 'nfs://127.0.0.1/export/file.txt?nfsport=2049&mountport=2049&version=3'";

/// What `msgsplice nfs serve` was asked to do.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
#[command(
    long_about = "Exports DIR read-only over NFSv3 (with its MOUNT v3 service, no \
                  portmapper), prints the nfs:// URL of the export on stdout and serves \
                  until Ctrl-C. The export is named /export: a file DIR/a/b is \
                  nfs://HOST/export/a/b?...",
    after_help = EXAMPLE
)]
pub struct ServeArgs {
    /// The directory to export
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// NFS port (0: a free port, shown in the URL)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_port)]
    pub port: u16,
    /// MOUNT port (0: a free port; may equal --port)
    #[arg(long = "mount-port", value_name = "M", default_value_t = 0, value_parser = parse_port)]
    pub mount_port: u16,
    /// Address to listen on. Anything but a loopback address exposes DIR to
    /// the network, with no access control beyond file permissions and
    /// AUTH_SYS
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_ip)]
    pub bind: IpAddr,
    /// Server driver: tokio (tasks, flood-proof connection limits, graceful
    /// shutdown on SIGTERM/SIGINT) or threads (one thread per connection)
    #[arg(long, value_name = "DRIVER", value_enum, default_value_t = Driver::Tokio)]
    pub driver: Driver,
}

/// Which of msgsplice-rpc's drivers serves the export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// One tokio task per connection (`msgsplice_rpc::server::TokioServer`)
    Tokio,
    /// One thread per connection (`msgsplice_rpc::server::RpcServer`)
    Threads,
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a port number (0 to 65535)"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address (like 127.0.0.1 or ::1)"))
}

/// `msgsplice nfs serve`: binds, prints the URL, serves until killed.
pub fn serve(o: &ServeArgs) -> ExitCode {
    let nfs = SocketAddr::new(o.bind, o.port);
    let mount = SocketAddr::new(o.bind, o.mount_port);
    match std::fs::metadata(&o.dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            eprintln!(
                "msgsplice nfs serve: {} is not a directory",
                o.dir.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!(
                "msgsplice nfs serve: cannot export {}: {e}",
                o.dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    let server = match NfsServer::bind(&o.dir, nfs, mount) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "msgsplice nfs serve: cannot serve {} on {nfs} (MOUNT {mount}): {e}",
                o.dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", server.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    eprintln!(
        "msgsplice nfs: serving {} read-only as {} (NFS port {}, MOUNT port {}); Ctrl-C stops",
        o.dir.display(),
        server.export_name(),
        server.nfs_port(),
        server.mount_port()
    );
    if !o.bind.is_loopback() {
        eprintln!(
            "msgsplice nfs: warning: listening on {}, reachable from other hosts; \
             anyone who can connect can read the export",
            o.bind
        );
    }
    let served = match o.driver {
        Driver::Threads => server.serve(),
        Driver::Tokio => server
            .into_tokio(TokioConfig::default())
            .serve_until_signal()
            .map(|report| {
                if report.aborted > 0 {
                    eprintln!(
                        "msgsplice nfs: {} connections did not finish in time",
                        report.aborted
                    );
                }
            }),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msgsplice nfs serve: stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use std::net::Ipv4Addr;

    use super::*;

    /// `msgsplice nfs serve` alone, for parsing its options in tests.
    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(words: &[&str]) -> Result<ServeArgs, clap::Error> {
        Serve::try_parse_from(std::iter::once("serve").chain(words.iter().copied())).map(|s| s.args)
    }

    #[test]
    fn defaults_and_options_in_any_order() {
        let o = parse(&["/srv"]).unwrap();
        assert_eq!(o.dir, PathBuf::from("/srv"));
        assert_eq!((o.port, o.mount_port), (0, 0));
        assert_eq!(o.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(o.driver, Driver::Tokio);
        assert_eq!(
            parse(&["/srv", "--driver", "threads"]).unwrap().driver,
            Driver::Threads
        );
        assert!(parse(&["/srv", "--driver", "fibers"]).is_err());
        let o = parse(&[
            "--port",
            "2049",
            "/srv",
            "--mount-port=20048",
            "--bind",
            "::1",
        ])
        .unwrap();
        assert_eq!((o.port, o.mount_port), (2049, 20048));
        assert_eq!(o.bind, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn double_dash_ends_options() {
        let o = parse(&["--port", "7", "--", "--odd-dir"]).unwrap();
        assert_eq!(o.dir, PathBuf::from("--odd-dir"));
        assert_eq!(o.port, 7);
    }

    #[test]
    fn mistakes() {
        let e = parse(&[]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(e.exit_code(), 2);
        assert!(parse(&["/a", "/b"]).is_err());
        let e = parse(&["/a", "--port", "70000"]).unwrap_err();
        assert!(e.to_string().contains("is not a port number"), "{e}");
        assert!(parse(&["/a", "--bind", "localhost"]).is_err());
        assert!(parse(&["/a", "--nope"]).is_err());
        assert_eq!(
            parse(&["-h"]).unwrap_err().kind(),
            clap::error::ErrorKind::DisplayHelp
        );
    }
}
