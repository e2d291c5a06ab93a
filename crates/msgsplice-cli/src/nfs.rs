//! `msgsplice nfs serve`: a read-only NFSv3 export of one directory, or of
//! several named ones.
//!
//! The export is `msgsplice_rpc::NfsServer` (MOUNT v3 and NFSv3, replies
//! through a Splicer). `msgsplice nfs serve DIR` exports DIR as `/export`;
//! `--export NAME=DIR[,options]` (repeated) and `--exports FILE` export
//! several directories as `/NAME` each, with per-export clients and
//! squashing (see `msgsplice_rpc::exports`). The command prints the
//! `nfs://` URL of the first export on stdout, one line, then serves
//! until SIGINT (Ctrl-C) or SIGTERM, when it unregisters from the
//! portmapper, finishes the replies in flight (up to a timeout) and prints
//! its counters; SIGUSR1 prints them too. It runs on the tokio driver by
//! default (one task per connection, limits that hold under a flood of
//! connections), or with `--driver threads` on one thread per connection.
//! `--engine uring` sends the replies through msgsplice's io_uring engine
//! (threads driver only; the default then) instead of `sendmsg`. It
//! listens on 127.0.0.1 unless `--bind` says otherwise.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use msgsplice_rpc::exports::{self, Exports, Squash, DEFAULT_ANON_ID};
use msgsplice_rpc::nfs::{NfsConfig, NfsServer};
use msgsplice_rpc::portmap::{PortmapMode, Portmapper};
use msgsplice_rpc::server::{log_to_stderr_as, LogFormat, ServerConfig, TokioConfig};
use msgsplice_rpc::transport::SendEngine;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};

/// The example under the help of `msgsplice nfs` and `msgsplice nfs serve`.
pub const EXAMPLE: &str = "\
Examples:
  msgsplice nfs serve /srv/data --port 2049 --mount-port 2049 --portmap off
  nfs-cat 'nfs://127.0.0.1/export/file.txt?nfsport=2049&mountport=2049&version=3'

  msgsplice nfs serve --export 'media=/srv/media,clients=192.0.2.0/24' \\
      --export 'docs=/srv/docs,all_squash,anonuid=1000' --state-dir /var/lib/msgsplice
  showmount -e 127.0.0.1; nfs-cat nfs://127.0.0.1/docs/readme.txt";

/// Which portmapper to use (see `msgsplice_rpc::portmap::Portmapper`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortmapChoice {
    /// The system's rpcbind if it answers, else a built-in one on port 111
    /// if it can be bound, else none
    Auto,
    /// Register with the system's rpcbind; fail without one
    System,
    /// Serve a built-in portmapper on port 111; fail if it cannot
    Builtin,
    /// No portmapper: clients must be told the ports
    Off,
}

impl From<PortmapChoice> for PortmapMode {
    fn from(c: PortmapChoice) -> PortmapMode {
        match c {
            PortmapChoice::Auto => PortmapMode::Auto,
            PortmapChoice::System => PortmapMode::System,
            PortmapChoice::Builtin => PortmapMode::BuiltIn,
            PortmapChoice::Off => PortmapMode::Off,
        }
    }
}

/// How the log lines on stderr are written.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogChoice {
    /// For people
    Text,
    /// One JSON object a line
    Json,
}

/// What `msgsplice nfs serve` was asked to do.
#[derive(Args, Clone, Debug, PartialEq, Eq)]
#[command(
    long_about = "Exports DIR read-only over NFSv3 as /export, or several directories \
                  given with --export or --exports as /NAME each, with their MOUNT v3 \
                  service; makes them findable through a portmapper (--portmap); prints \
                  the nfs:// URL of the first export on stdout and serves until Ctrl-C. \
                  One log line per connection and mount on stderr; SIGUSR1 prints the \
                  counters.",
    after_help = EXAMPLE
)]
pub struct ServeArgs {
    /// The directory to export as /export (or use --export / --exports)
    #[arg(value_name = "DIR", required_unless_present_any = ["export", "exports"])]
    pub dir: Option<PathBuf>,
    /// Export DIR as /NAME; options: clients=ADDR[/BITS][;...], root_squash
    /// (default), all_squash, no_root_squash, anonuid=N, anongid=N. Repeat
    /// for more exports
    #[arg(long, value_name = "NAME=DIR[,OPTIONS]")]
    pub export: Vec<String>,
    /// Read exports from FILE, one NAME=DIR[,OPTIONS] a line (# comments)
    #[arg(long, value_name = "FILE")]
    pub exports: Option<PathBuf>,
    /// NFS port (0: a free port, shown in the URL)
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = parse_port)]
    pub port: u16,
    /// MOUNT port (0: a free port; may equal --port)
    #[arg(long = "mount-port", value_name = "M", default_value_t = 0, value_parser = parse_port)]
    pub mount_port: u16,
    /// Address to listen on. Anything but a loopback address exposes the
    /// exports to the network, limited only by clients=, squashing and file
    /// permissions under AUTH_SYS
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1", value_parser = parse_ip)]
    pub bind: IpAddr,
    /// Keep the file handle key and node journals here (made 0700), so
    /// handles stay valid across restarts; without it clients must mount
    /// again after a restart
    #[arg(long = "state-dir", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Which portmapper makes the exports findable by rpcinfo, showmount
    /// and clients given no ports
    #[arg(long, value_enum, default_value_t = PortmapChoice::Auto)]
    pub portmap: PortmapChoice,
    /// Format of the log lines on stderr
    #[arg(long = "log-format", value_enum, default_value_t = LogChoice::Text)]
    pub log_format: LogChoice,
    /// Server driver: tokio (tasks, flood-proof connection limits, graceful
    /// shutdown on SIGTERM/SIGINT) or threads (one thread per connection)
    /// [default: tokio; threads with --engine uring]
    #[arg(long, value_name = "DRIVER", value_enum)]
    pub driver: Option<Driver>,
    /// How replies are sent: sendmsg (msgsplice's Splicer: sendmsg with
    /// MSG_ZEROCOPY where it pays, sendfile for READ data) or uring
    /// (msgsplice's io_uring engine, one ring per connection; threads
    /// driver only). Where the kernel does not allow io_uring, the export
    /// says why on stderr and sends with sendmsg
    #[arg(long, value_name = "ENGINE", value_enum, default_value_t = EngineChoice::Sendmsg)]
    pub engine: EngineChoice,
}

/// Which send engine the replies go through.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// msgsplice's Splicer: sendmsg (MSG_ZEROCOPY where it pays) and sendfile
    Sendmsg,
    /// msgsplice's io_uring engine (SENDMSG_ZC, completions read from the
    /// ring) and sendfile; threads driver only
    Uring,
}

/// Options of `msgsplice nfs serve` that cannot go together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// `--engine uring` with `--driver tokio`.
    #[error(
        "--engine uring needs --driver threads: the tokio driver sends through an \
         asynchronous Splicer, and the io_uring engine has no asynchronous form (each send \
         waits for its completions, which would stall a runtime worker); drop --driver tokio \
         or use --engine sendmsg"
    )]
    UringNeedsThreads,
}

impl ServeArgs {
    /// The driver: as given, else tokio, or threads with `--engine uring`.
    pub fn driver(&self) -> Result<Driver, ServeError> {
        match (self.driver, self.engine) {
            (Some(Driver::Tokio), EngineChoice::Uring) => Err(ServeError::UringNeedsThreads),
            (Some(d), _) => Ok(d),
            (None, EngineChoice::Uring) => Ok(Driver::Threads),
            (None, EngineChoice::Sendmsg) => Ok(Driver::Tokio),
        }
    }

    /// The blocking driver's send engine.
    fn send_engine(&self) -> SendEngine {
        match self.engine {
            EngineChoice::Sendmsg => SendEngine::Sendmsg,
            EngineChoice::Uring => SendEngine::uring(),
        }
    }
}

/// Which of msgsplice-rpc's drivers serves the export.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// One tokio task per connection (`msgsplice_rpc::server::TokioServer`)
    Tokio,
    /// One thread per connection (`msgsplice_rpc::server::RpcServer`)
    Threads,
}

/// A running server of either driver.
enum Running {
    Threads(msgsplice_rpc::server::ServerHandle),
    Tokio(msgsplice_rpc::server::TokioHandle),
}

impl Running {
    /// Stops accepting, finishes what is in flight, and closes.
    fn shutdown(self) -> std::io::Result<()> {
        match self {
            Running::Threads(h) => h.shutdown(),
            Running::Tokio(h) => h.shutdown().map(|report| {
                if report.aborted > 0 {
                    eprintln!(
                        "msgsplice nfs: {} connections did not finish in time",
                        report.aborted
                    );
                }
            }),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a port number (0 to 65535)"))
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an IP address (like 127.0.0.1 or ::1)"))
}

/// The exports asked for: DIR as `export`, then each `--export`, then the
/// lines of `--exports FILE`. An error says what to fix.
pub fn exports_of(o: &ServeArgs) -> Result<Exports, String> {
    let mut all = Exports::new();
    if let Some(dir) = &o.dir {
        check_dir(dir)?;
        let e = exports::Export {
            name: "export".into(),
            dir: dir.clone(),
            clients: Vec::new(),
            squash: Squash::Root,
            anon_uid: DEFAULT_ANON_ID,
            anon_gid: DEFAULT_ANON_ID,
        };
        all.push(e).map_err(|e| e.to_string())?;
    }
    let flags =
        Exports::from_flags(o.export.iter().map(String::as_str)).map_err(|e| e.to_string())?;
    let file = match &o.exports {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Exports::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Exports::new(),
    };
    for e in flags.iter().chain(file.iter()) {
        check_dir(&e.dir)?;
        all.push(e.clone()).map_err(|k| k.to_string())?;
    }
    Ok(all)
}

fn check_dir(dir: &std::path::Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} is not a directory", dir.display())),
        Err(e) => Err(format!("cannot export {}: {e}", dir.display())),
    }
}

/// `msgsplice nfs serve`: binds, registers, prints the URL, serves until
/// SIGINT or SIGTERM.
pub fn serve(o: &ServeArgs) -> ExitCode {
    let fail = |what: String| {
        eprintln!("msgsplice nfs serve: {what}");
        ExitCode::FAILURE
    };
    let exports = match exports_of(o) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    let driver = match o.driver() {
        Ok(d) => d,
        Err(e) => return fail(e.to_string()),
    };
    let nfs = SocketAddr::new(o.bind, o.port);
    let mount = SocketAddr::new(o.bind, o.mount_port);
    let format = match o.log_format {
        LogChoice::Text => LogFormat::Text,
        LogChoice::Json => LogFormat::Json,
    };
    let config = NfsConfig {
        state_dir: o.state_dir.clone(),
        server: ServerConfig {
            events: log_to_stderr_as(format),
            engine: o.send_engine(),
            ..ServerConfig::default()
        },
        ..NfsConfig::default()
    };
    let tokio_config = TokioConfig {
        events: log_to_stderr_as(format),
        ..TokioConfig::default()
    };
    let server = match NfsServer::bind_exports(&exports, nfs, mount, config) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot serve on {nfs} (MOUNT {mount}): {e}")),
    };
    // Signals are caught before anything is registered, so that a Ctrl-C
    // from now on always unregisters.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR1]) {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot catch signals: {e}")),
    };
    let portmap = match Portmapper::start(o.portmap.into(), server.nfs_addr(), server.mount_addr())
    {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{}", server.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    announce(&server, &portmap, o.bind);
    let nfs_stats = server.nfs_stats();
    let rpc_stats = server.stats();
    let running = match driver {
        Driver::Threads => server.spawn().map(Running::Threads),
        Driver::Tokio => server.into_tokio(tokio_config).spawn().map(Running::Tokio),
    };
    let handle = match running {
        Ok(h) => h,
        Err(e) => return fail(format!("cannot start serving: {e}")),
    };
    let print_stats = || {
        let r = rpc_stats.snapshot();
        eprintln!(
            "msgsplice nfs: counters: connections={} calls={} replies={} reply_bytes={}; {}",
            r.connections,
            r.records,
            r.replies,
            r.reply_bytes,
            nfs_stats.snapshot()
        )
    };
    for sig in signals.forever() {
        match sig {
            SIGUSR1 => print_stats(),
            _ => break,
        }
    }
    let unregistered = portmap.stop();
    let stopped = handle.shutdown();
    print_stats();
    match (unregistered, stopped) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(e), _) => fail(format!("unregistering from the portmapper: {e}")),
        (_, Err(e)) => fail(format!("stopped: {e}")),
    }
}

/// Says on stderr what is served where, and how it is found.
fn announce(server: &NfsServer, portmap: &Portmapper, bind: IpAddr) {
    for e in server.exports().iter() {
        let o = e.options();
        let clients = match o.clients.is_empty() {
            true => "everyone".to_owned(),
            false => o
                .clients
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        };
        eprintln!(
            "msgsplice nfs: serving {} read-only as {} to {clients}",
            o.dir.display(),
            e.name()
        );
    }
    eprintln!(
        "msgsplice nfs: NFS port {}, MOUNT port {}; {}; Ctrl-C stops, SIGUSR1 prints counters",
        server.nfs_port(),
        server.mount_port(),
        portmap.outcome()
    );
    if !bind.is_loopback() {
        eprintln!(
            "msgsplice nfs: warning: listening on {bind}, reachable from other hosts; \
             limit each export with clients="
        );
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
        assert_eq!(o.dir, Some(PathBuf::from("/srv")));
        assert_eq!(o.portmap, PortmapChoice::Auto);
        assert_eq!(o.log_format, LogChoice::Text);
        assert_eq!((o.port, o.mount_port), (0, 0));
        assert_eq!(o.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(o.driver(), Ok(Driver::Tokio));
        assert_eq!(o.engine, EngineChoice::Sendmsg);
        assert_eq!(
            parse(&["/srv", "--driver", "threads"]).unwrap().driver(),
            Ok(Driver::Threads)
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
    fn the_uring_engine_goes_with_the_threads_driver() {
        let o = parse(&["/srv", "--engine", "uring"]).unwrap();
        assert_eq!(o.engine, EngineChoice::Uring);
        assert_eq!(o.driver(), Ok(Driver::Threads));
        assert!(matches!(o.send_engine(), SendEngine::Uring(_)));
        let o = parse(&["/srv", "--engine=uring", "--driver", "threads"]).unwrap();
        assert_eq!(o.driver(), Ok(Driver::Threads));
        let o = parse(&["/srv", "--driver", "tokio", "--engine", "uring"]).unwrap();
        let e = o.driver().unwrap_err();
        assert_eq!(e, ServeError::UringNeedsThreads);
        assert!(e.to_string().contains("--driver threads"), "{e}");
        let o = parse(&["/srv", "--engine", "sendmsg", "--driver", "tokio"]).unwrap();
        assert_eq!(o.driver(), Ok(Driver::Tokio));
        assert!(matches!(o.send_engine(), SendEngine::Sendmsg));
        assert!(parse(&["/srv", "--engine", "epoll"]).is_err());
    }

    #[test]
    fn double_dash_ends_options() {
        let o = parse(&["--port", "7", "--", "--odd-dir"]).unwrap();
        assert_eq!(o.dir, Some(PathBuf::from("--odd-dir")));
        assert_eq!(o.port, 7);
    }

    #[test]
    fn several_exports_and_the_deployment_options() {
        let o = parse(&[
            "--export",
            "a=/x,clients=10.0.0.0/8",
            "--export=b=/y,all_squash",
            "--exports",
            "/etc/msgsplice.exports",
            "--state-dir",
            "/var/lib/m",
            "--portmap",
            "builtin",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(o.dir, None);
        assert_eq!(o.export, ["a=/x,clients=10.0.0.0/8", "b=/y,all_squash"]);
        assert_eq!(o.exports, Some(PathBuf::from("/etc/msgsplice.exports")));
        assert_eq!(o.state_dir, Some(PathBuf::from("/var/lib/m")));
        assert_eq!(o.portmap, PortmapChoice::Builtin);
        assert_eq!(o.log_format, LogChoice::Json);
        assert!(parse(&["/a", "--portmap", "maybe"]).is_err());
    }

    #[test]
    fn exports_are_checked_before_serving() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().to_str().unwrap();
        let o = parse(&[dir, "--export", &format!("two={dir},no_root_squash")]).unwrap();
        let names: Vec<_> = exports_of(&o).unwrap().iter().map(|e| e.path()).collect();
        assert_eq!(names, ["/export", "/two"]);
        let o = parse(&["--export", &format!("export={dir}"), dir]).unwrap();
        assert!(exports_of(&o).unwrap_err().contains("used twice"));
        let o = parse(&["--export", "x=/nonexistent/msgsplice"]).unwrap();
        assert!(exports_of(&o).unwrap_err().contains("cannot export"));
        let o = parse(&["--export", &format!("x={dir},rw")]).unwrap();
        assert!(exports_of(&o).unwrap_err().contains("unknown option"));
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
