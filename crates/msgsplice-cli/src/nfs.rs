//! `msgsplice nfs serve DIR`: a read-only NFSv3 export of one directory.
//!
//! The export is `msgsplice_rpc::NfsServer` (MOUNT v3 and NFSv3, replies
//! through a Splicer). The command prints the `nfs://` URL a libnfs client
//! uses (`nfs-ls`, `nfs-cat`, `nfs-cp`) on stdout, one line, then serves
//! until it is interrupted (Ctrl-C) or killed. It listens on 127.0.0.1
//! unless `--bind` says otherwise.

use std::ffi::OsString;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use msgsplice_rpc::NfsServer;

use crate::args::{Arg, ArgError, Args};

/// The help text of `msgsplice nfs`.
pub const USAGE: &str = "\
usage: msgsplice nfs serve DIR [--port N] [--mount-port M] [--bind ADDR]

Exports DIR read-only over NFSv3 (with its MOUNT v3 service, no portmapper),
prints the nfs:// URL of the export on stdout and serves until Ctrl-C.
The export is named /export: a file DIR/a/b is nfs://HOST/export/a/b?...

options:
  --port N          NFS port (default: a free port, shown in the URL)
  --mount-port M    MOUNT port (default: a free port; may equal --port)
  --bind ADDR       address to listen on (default 127.0.0.1). Anything but a
                    loopback address exposes DIR to the network, with no
                    access control beyond file permissions and AUTH_SYS.
  -h, --help        this text

example:
  msgsplice nfs serve /srv/data --port 2049 --mount-port 2049
  nfs-cat 'nfs://127.0.0.1/export/file.txt?nfsport=2049&mountport=2049&version=3'
";

/// What `msgsplice nfs serve` was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    /// The directory to export.
    pub dir: PathBuf,
    /// NFS port (0: any free port).
    pub port: u16,
    /// MOUNT port (0: any free port).
    pub mount_port: u16,
    /// Address to listen on.
    pub bind: IpAddr,
}

impl ServeOptions {
    /// Parses the words after `serve`. `Ok(None)` means help was asked for.
    pub fn parse(words: Vec<OsString>) -> Result<Option<ServeOptions>, ArgError> {
        let mut dir = None;
        let mut port = 0;
        let mut mount_port = 0;
        let mut bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut a = Args::new(words);
        while let Some(arg) = a.next_arg()? {
            let opt = match arg {
                Arg::Word(w) if dir.is_none() => {
                    dir = Some(PathBuf::from(w));
                    continue;
                }
                Arg::Word(w) => {
                    return Err(ArgError::Unknown(w.to_string_lossy().into_owned()));
                }
                Arg::Opt(o) => o,
            };
            match opt.name.as_str() {
                "-h" | "--help" => return Ok(None),
                "--port" => port = a.parsed(&opt, parse_port)?,
                "--mount-port" => mount_port = a.parsed(&opt, parse_port)?,
                "--bind" => {
                    bind = a.parsed(&opt, |s| {
                        s.parse().map_err(|_| {
                            format!("{s:?} is not an IP address (like 127.0.0.1 or ::1)")
                        })
                    })?
                }
                _ => return Err(ArgError::Unknown(opt.name)),
            }
        }
        let Some(dir) = dir else {
            return Err(ArgError::BadValue {
                option: "serve".into(),
                problem: "which directory? (msgsplice nfs serve DIR)".into(),
            });
        };
        Ok(Some(ServeOptions {
            dir,
            port,
            mount_port,
            bind,
        }))
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a port number (0 to 65535)"))
}

/// `msgsplice nfs ARGS...`.
pub fn main(words: Vec<OsString>) -> ExitCode {
    let mut words = words.into_iter();
    match words.next().as_ref().and_then(|w| w.to_str()) {
        Some("serve") => {}
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => {
            eprintln!("msgsplice nfs: unknown command {other:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("msgsplice nfs: which command?\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    match ServeOptions::parse(words.collect()) {
        Ok(Some(o)) => serve(&o),
        Ok(None) => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("msgsplice nfs serve: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Binds, prints the URL, serves until killed.
fn serve(o: &ServeOptions) -> ExitCode {
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
    match server.serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("msgsplice nfs serve: stopped: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Option<ServeOptions>, ArgError> {
        ServeOptions::parse(words.iter().map(OsString::from).collect())
    }

    #[test]
    fn defaults_and_options_in_any_order() {
        let o = parse(&["/srv"]).unwrap().unwrap();
        assert_eq!(o.dir, PathBuf::from("/srv"));
        assert_eq!((o.port, o.mount_port), (0, 0));
        assert_eq!(o.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        let o = parse(&[
            "--port",
            "2049",
            "/srv",
            "--mount-port=20048",
            "--bind",
            "::1",
        ])
        .unwrap()
        .unwrap();
        assert_eq!((o.port, o.mount_port), (2049, 20048));
        assert_eq!(o.bind, "::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn mistakes() {
        assert!(matches!(parse(&[]), Err(ArgError::BadValue { .. })));
        assert!(parse(&["/a", "/b"]).is_err());
        assert!(parse(&["/a", "--port", "70000"]).is_err());
        assert!(parse(&["/a", "--bind", "localhost"]).is_err());
        assert!(parse(&["/a", "--nope"]).is_err());
        assert_eq!(parse(&["-h"]), Ok(None));
    }
}
