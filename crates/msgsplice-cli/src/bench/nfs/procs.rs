//! The processes of the `nfs` section: msgsplice's and nfsserve's servers
//! (each run starts a fresh one, so its CPU time is exactly that run's),
//! the run's view of any server ([`Serving`], which also covers the one
//! shared ganesha), the `nfs-cat` client, and finding or building the
//! nfsserve peer.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::super::Progress;
use super::ganesha::Ganesha;

/// How long a server may take to print its URL.
const START_LIMIT: Duration = Duration::from_secs(20);
/// How long one `nfs-cat` may take (1 GiB at a slow 50 MB/s).
const CLIENT_LIMIT: Duration = Duration::from_secs(120);

/// Where the peer example lands, relative to the directory of the
/// `msgsplice` binary (`target/<profile>/`).
const PEER_PATH: &str = "examples/nfsserve_peer";
/// How to build it by hand.
pub const PEER_BUILD: &str = "cargo build --release -p msgsplice-rpc --example nfsserve_peer";

pub use msgsplice_testkit::cpu::children_cpu;

/// A server process that printed its URL. Killed (by its PID) and reaped
/// on drop if not stopped before.
pub struct ServerProc {
    child: Option<Child>,
    url: String,
    errors: PathBuf,
}

impl ServerProc {
    /// Starts `program args...` with stderr to the file `errors` and waits
    /// for the URL on its first stdout line.
    pub fn start(program: &Path, args: &[&OsStr], errors: &Path) -> Result<ServerProc, String> {
        let err_file = std::fs::File::create(errors).map_err(|e| e.to_string())?;
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut server = ServerProc {
            child: Some(child),
            url: String::new(),
            errors: errors.to_path_buf(),
        };
        let line = rx.recv_timeout(START_LIMIT).unwrap_or_default();
        if !line.starts_with("nfs://") {
            return Err(format!(
                "{} printed no URL: {}",
                program.display(),
                server.stderr_tail()
            ));
        }
        server.url = line.trim().to_string();
        Ok(server)
    }

    /// The URL of the export root, as the server printed it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `name` in the export root.
    pub fn file_url(&self, name: &str) -> String {
        file_url(&self.url, name)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.errors).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        }
    }

    /// Kills the server and returns the CPU time it used, from start to end.
    pub fn stop(mut self) -> Duration {
        let Some(mut child) = self.child.take() else {
            return Duration::ZERO;
        };
        let before = children_cpu();
        let _ = child.kill();
        let _ = child.wait();
        children_cpu().saturating_sub(before)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The URL of `name` in the export root whose URL is `root`.
pub fn file_url(root: &str, name: &str) -> String {
    match root.split_once('?') {
        Some((base, query)) => format!("{base}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

/// The server of one run: a fresh process, or the section's one ganesha,
/// whose CPU time for the run is the difference of its total around it.
pub enum Serving<'a> {
    /// Started for this run, stopped after it.
    Fresh(ServerProc),
    /// Shared by every run.
    Shared {
        /// The server.
        ganesha: &'a Ganesha,
        /// Its CPU time when the run began.
        cpu_at_start: Duration,
    },
}

impl Serving<'_> {
    /// The URL of the export root.
    pub fn url(&self) -> &str {
        match self {
            Serving::Fresh(p) => p.url(),
            Serving::Shared { ganesha, .. } => ganesha.url(),
        }
    }

    /// The URL of `name` in the export root.
    pub fn file_url(&self, name: &str) -> String {
        file_url(self.url(), name)
    }

    /// Ends the run: stops a fresh server; returns the server's CPU time
    /// in this run.
    pub fn stop(self) -> Duration {
        match self {
            Serving::Fresh(p) => p.stop(),
            Serving::Shared {
                ganesha,
                cpu_at_start,
            } => ganesha.cpu().saturating_sub(cpu_at_start),
        }
    }
}

/// One `nfs-cat` run.
pub struct ClientRun {
    /// From spawning the client to its exit.
    pub elapsed: Duration,
    /// The client's CPU time.
    pub cpu: Duration,
}

/// Runs `nfs-cat url`, its output to /dev/null (`check` None) or compared
/// with the file `check` names, which must then arrive whole and equal.
pub fn nfs_cat(url: &str, check: Option<&Path>) -> Result<ClientRun, String> {
    let before = children_cpu();
    let start = Instant::now();
    let mut child = Command::new("nfs-cat")
        .arg(url)
        .stdin(Stdio::null())
        .stdout(if check.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nfs-cat: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel::<(std::io::Result<ExitStatus>, Instant)>();
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send((status, Instant::now()));
    });
    let compared = match (stdout, check) {
        (Some(out), Some(path)) => compare(out, path),
        _ => Ok(()),
    };
    let (status, end) = match rx.recv_timeout(CLIENT_LIMIT) {
        Ok((status, end)) => (status.map_err(|e| e.to_string())?, end),
        Err(_) => {
            if let Ok(pid) = i32::try_from(pid) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            return Err(format!("nfs-cat {url} took over {CLIENT_LIMIT:?}"));
        }
    };
    let cpu = children_cpu().saturating_sub(before);
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    if !status.success() {
        return Err(format!("nfs-cat {url} failed ({status}): {}", err.trim()));
    }
    compared?;
    Ok(ClientRun {
        elapsed: end - start,
        cpu,
    })
}

/// Reads `out` to its end and checks it equals the file at `path`.
fn compare(mut out: impl Read, path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let (mut got, mut want) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut pos = 0u64;
    loop {
        let n = out.read(&mut got).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if pos + n as u64 > len {
            return Err(format!("nfs-cat printed more than the file's {len} bytes"));
        }
        file.read_exact_at(&mut want[..n], pos)
            .map_err(|e| e.to_string())?;
        if got[..n] != want[..n] {
            return Err(format!(
                "nfs-cat printed wrong bytes between {pos} and {}",
                pos + n as u64
            ));
        }
        pos += n as u64;
    }
    if pos != len {
        return Err(format!("nfs-cat printed {pos} of the file's {len} bytes"));
    }
    Ok(())
}

/// True if `nfs-cat` can be started.
pub fn nfs_cat_available() -> bool {
    Command::new("nfs-cat")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The `msgsplice` binary that serves our side: `MSGSPLICE_BIN` if set,
/// else this program when it is `msgsplice`.
pub fn msgsplice_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MSGSPLICE_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    if exe.file_name().is_some_and(|n| n == "msgsplice") {
        Ok(exe)
    } else {
        Err(format!(
            "{} is not the msgsplice binary; set MSGSPLICE_BIN",
            exe.display()
        ))
    }
}

/// The nfsserve peer: `MSGSPLICE_NFSSERVE_PEER` if set; else
/// `examples/nfsserve_peer` beside this binary's directory; else built
/// there with cargo (once; the progress line says so) from the workspace
/// this binary was built from, in the same profile.
pub fn nfsserve_peer(progress: &mut Progress) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("MSGSPLICE_NFSSERVE_PEER") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let Some(bin_dir) = exe.parent() else {
        return Err("cannot tell where this binary is".into());
    };
    let peer = bin_dir.join(PEER_PATH);
    if peer.is_file() {
        return Ok(peer);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let (Some(target), true) = (
        bin_dir.parent(),
        workspace
            .join("crates/msgsplice-rpc/examples/nfsserve_peer.rs")
            .is_file(),
    ) else {
        return Err(format!(
            "the nfsserve peer is not built and its source is not at hand: \
             build it with `{PEER_BUILD}` and set MSGSPLICE_NFSSERVE_PEER to it"
        ));
    };
    let release = bin_dir.file_name().is_some_and(|n| n == "release");
    progress.note(format_args!(
        "building the nfsserve peer once ({}), about a minute",
        if release { PEER_BUILD } else { "debug profile" }
    ));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "msgsplice-rpc",
            "--example",
            "nfsserve_peer",
        ])
        .env("CARGO_TARGET_DIR", target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build the nfsserve peer ({PEER_BUILD}): {e}"))?;
    if !out.status.success() || !peer.is_file() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(format!(
            "building the nfsserve peer failed ({PEER_BUILD}): {}",
            last.trim()
        ));
    }
    Ok(peer)
}
