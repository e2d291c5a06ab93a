//! nfs-ganesha, the user-space NFS server people deploy, as a server of
//! the `nfs` section.
//!
//! One `ganesha.nfsd` serves every row of a run of the section, as a
//! deployed ganesha serves for days (its start, a tenth of a second of
//! setting up threads and caches, would otherwise weigh on every run):
//! started in the foreground with a configuration written
//! here ([`Config`]: FSAL VFS, read-only, NFSv3 over TCP only, on
//! 127.0.0.1, free ports, no NLM, RQUOTA or UDP), and stopped (SIGTERM,
//! then SIGKILL) when the section is done. Its CPU time per row is the
//! difference of its process CPU-time clock (all its threads, in
//! nanoseconds; `/proc/PID/stat`'s clock ticks where the clock cannot be
//! read) before and after the row.
//!
//! ganesha 4.3 will not start without a portmapper: if nothing answers on
//! 127.0.0.1:111, an `rpcbind -f` is started for it and stopped after;
//! one the bench did not start is never stopped. Not `-w`: a warm start
//! would bring back the mappings of whatever rpcbind ran before, stale
//! ones included.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::client::{self, Target};
use crate::bench::peers;

/// How long ganesha may take to answer MOUNT and LOOKUP after its start.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The export's path as clients see it (`mount_path_pseudo`).
pub const PSEUDO: &str = "/export";
/// The portmapper's well-known address.
const PORTMAP: &str = "127.0.0.1:111";

/// What ganesha's configuration file says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The exported directory.
    pub dir: PathBuf,
    /// The NFS port.
    pub nfs_port: u16,
    /// The MOUNT port.
    pub mount_port: u16,
}

impl Config {
    /// The configuration file's text: one read-only VFS export of `dir`
    /// at [`PSEUDO`], NFSv3 over TCP on 127.0.0.1; NLM, RQUOTA and UDP off
    /// so that it opens only the two ports asked for.
    pub fn text(&self) -> String {
        format!(
            "NFS_Core_Param {{\n\
             \tNFS_Port = {nfs};\n\
             \tMNT_Port = {mnt};\n\
             \tBind_Addr = 127.0.0.1;\n\
             \tProtocols = 3;\n\
             \tEnable_NLM = false;\n\
             \tEnable_RQUOTA = false;\n\
             \tEnable_UDP = false;\n\
             \tmount_path_pseudo = true;\n\
             }}\n\
             EXPORT {{\n\
             \tExport_Id = 1;\n\
             \tPath = \"{dir}\";\n\
             \tPseudo = \"{PSEUDO}\";\n\
             \tAccess_Type = RO;\n\
             \tSquash = No_Root_Squash;\n\
             \tProtocols = 3;\n\
             \tTransports = TCP;\n\
             \tFSAL {{\n\t\tName = VFS;\n\t}}\n\
             }}\n",
            nfs = self.nfs_port,
            mnt = self.mount_port,
            dir = self.dir.display(),
        )
    }

    /// The `nfs://` URL of the export root, as `msgsplice nfs serve`
    /// prints its own.
    pub fn url(&self) -> String {
        format!(
            "nfs://127.0.0.1{PSEUDO}?nfsport={}&mountport={}&version=3",
            self.nfs_port, self.mount_port
        )
    }
}

/// Why ganesha cannot serve here: the reason of the row's absence.
pub fn unavailable(no_install: bool) -> Option<String> {
    for p in [peers::GANESHA, peers::GANESHA_VFS, peers::RPCBIND] {
        if !p.present() {
            return Some(p.advice(no_install));
        }
    }
    if !rustix::process::geteuid().is_root() {
        return Some("nfs-ganesha runs only as root here (it exports as root)".into());
    }
    None
}

/// A running ganesha (and the rpcbind started for it, if any), with its
/// files in a directory of its own; all stopped and removed on drop.
pub struct Ganesha {
    child: Child,
    rpcbind: Option<Child>,
    work: PathBuf,
    url: String,
}

impl Ganesha {
    /// Starts ganesha exporting `dir` and waits until MOUNT and LOOKUP of
    /// `probe` (a file in `dir`) succeed. On failure, says why with the
    /// tail of its log.
    pub fn start(dir: &Path, probe: &str) -> Result<Ganesha, String> {
        let program = peers::find_program("ganesha.nfsd")
            .ok_or("ganesha.nfsd not found (Debian package nfs-ganesha)")?;
        let work =
            std::env::temp_dir().join(format!("msgsplice-bench-ganesha-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir(&work).map_err(|e| format!("cannot make {}: {e}", work.display()))?;
        let config = Config {
            dir: dir.to_path_buf(),
            nfs_port: free_port()?,
            mount_port: free_port()?,
        };
        let conf = work.join("ganesha.conf");
        let rpcbind = std::fs::write(&conf, config.text())
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))
            .and_then(|()| start_rpcbind());
        let rpcbind = match rpcbind {
            Ok(r) => r,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&work);
                return Err(e);
            }
        };
        let child = Command::new(program)
            .arg("-F")
            .arg("-f")
            .arg(&conf)
            .arg("-L")
            .arg(work.join("ganesha.log"))
            .arg("-p")
            .arg(work.join("ganesha.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(r) = rpcbind {
                    stop(r);
                }
                let _ = std::fs::remove_dir_all(&work);
                return Err(format!("cannot start ganesha.nfsd: {e}"));
            }
        };
        let mut g = Ganesha {
            child,
            rpcbind,
            work,
            url: config.url(),
        };
        g.wait_ready(probe)?;
        Ok(g)
    }

    /// Polls MOUNT + LOOKUP of `probe` until they succeed, ganesha exits,
    /// or [`START_LIMIT`] passes.
    fn wait_ready(&mut self, probe: &str) -> Result<(), String> {
        let target = Target::from_url(&self.url).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let last = match client::file_handle(&target, probe, Duration::from_secs(2)) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "ganesha.nfsd exited ({status}); its log ends: {}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "ganesha did not answer MOUNT and LOOKUP within {START_LIMIT:?} ({last}); \
                     its log ends: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL of the export root.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// User + system time of ganesha so far (all its threads, including
    /// those that exited): its CPU-time clock, or `/proc/PID/stat` (10 ms
    /// ticks, too coarse for a short row) if that cannot be read.
    pub fn cpu(&self) -> Duration {
        let pid = self.child.id();
        msgsplice_testkit::cpu::process_cpu(pid)
            .or_else(|| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| stat_cpu(&s, rustix::param::clock_ticks_per_second()))
            })
            .unwrap_or_default()
    }

    /// The last lines of its log, joined by " / ".
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.work.join("ganesha.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(4).collect();
        if tail.is_empty() {
            return "(empty)".into();
        }
        tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        let pid = self.child.id();
        stop_pid(&mut self.child, pid);
        if let Some(r) = self.rpcbind.take() {
            stop(r);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// User + system time in a `/proc/PID/stat` line, whose fields 14 and 15
/// are utime and stime in clock ticks. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from its last `)`.
pub fn stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    let hz = ticks_per_sec.max(1);
    Some(Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz))
}

/// Starts `rpcbind -f` if nothing answers on 127.0.0.1:111, and waits
/// until it does. `None`: one was running already (not ours to stop).
fn start_rpcbind() -> Result<Option<Child>, String> {
    let addr: SocketAddr = PORTMAP.parse().map_err(|_| "bad portmapper address")?;
    let answers = || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
    if answers() {
        return Ok(None);
    }
    let program =
        peers::find_program("rpcbind").ok_or("rpcbind not found (Debian package rpcbind)")?;
    let mut child = Command::new(program)
        .arg("-f")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rpcbind: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !answers() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("rpcbind exited at once ({status})"));
        }
        if Instant::now() > deadline {
            stop(child);
            return Err("rpcbind did not listen on 127.0.0.1:111 within 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Some(child))
}

/// Stops a child we started: SIGTERM, SIGKILL after [`STOP_GRACE`].
fn stop(mut child: Child) {
    let pid = child.id();
    stop_pid(&mut child, pid);
}

fn stop_pid(child: &mut Child, pid: u32) {
    if let Ok(None) = child.try_wait() {
        if let Some(p) = i32::try_from(pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while let Ok(None) = child.try_wait() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.wait();
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_exports_read_only_nfsv3_over_tcp_on_loopback() {
        let c = Config {
            dir: "/tmp/x y".into(),
            nfs_port: 2050,
            mount_port: 2051,
        };
        let t = c.text();
        for line in [
            "NFS_Port = 2050;",
            "MNT_Port = 2051;",
            "Bind_Addr = 127.0.0.1;",
            "Enable_NLM = false;",
            "Enable_RQUOTA = false;",
            "mount_path_pseudo = true;",
            "Path = \"/tmp/x y\";",
            "Pseudo = \"/export\";",
            "Access_Type = RO;",
            "Squash = No_Root_Squash;",
            "Transports = TCP;",
            "Name = VFS;",
        ] {
            assert!(t.contains(line), "{line} missing from:\n{t}");
        }
        assert_eq!(t.matches("Protocols = 3;").count(), 2, "{t}");
        assert_eq!(t.matches('{').count(), t.matches('}').count(), "{t}");
        let target = Target::from_url(&c.url()).unwrap();
        assert_eq!(target.nfs.port(), 2050);
        assert_eq!(target.mount.port(), 2051);
        assert_eq!(target.export, "/export");
    }

    #[test]
    fn cpu_from_a_stat_line() {
        // A command name with a space and a parenthesis; utime 250 and
        // stime 50 ticks.
        let line = "42 (ganesha (x) d) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(stat_cpu(line, 100), Some(Duration::from_secs(3)));
        assert_eq!(stat_cpu(line, 1000), Some(Duration::from_millis(300)));
        assert_eq!(stat_cpu("42 (x) S 1", 100), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(stat_cpu(&own, rustix::param::clock_ticks_per_second()).is_some());
    }

    fn portmapper_answers() -> bool {
        TcpStream::connect_timeout(&PORTMAP.parse().unwrap(), Duration::from_millis(200)).is_ok()
    }

    /// A real ganesha: it serves the file byte for byte to the bench's own
    /// client, its CPU time is read, and dropping it ends it (and the
    /// rpcbind started for it).
    #[test]
    fn serves_a_file_and_stops_what_it_started() {
        const TEST: &str = "bench::nfs::ganesha::serves_a_file_and_stops_what_it_started";
        if let Some(why) = unavailable(true) {
            msgsplice_testkit::skip(TEST, why);
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..64u32 << 10)
            .map(|i| (i * 31 + i / 4096) as u8)
            .collect();
        let file = dir.path().join("f.bin");
        std::fs::write(&file, &data).unwrap();
        let had_portmapper = portmapper_answers();
        let g = Ganesha::start(dir.path(), "f.bin").unwrap();
        let target = Target::from_url(g.url()).unwrap();
        let spec = super::super::load::LoadSpec {
            conns: 2,
            depth: 4,
            read_size: 4096,
            pattern: super::super::load::Pattern::Random { seed: 5 },
            stop: super::super::load::Stop::Count(64),
            verify_every: 1,
            timeout: Duration::from_secs(10),
        };
        let r = super::super::load::run(&target, "f.bin", &file, &spec).unwrap();
        assert_eq!((r.reads, r.verified), (64, 64));
        assert!(g.cpu() > Duration::ZERO, "starting takes CPU time");
        let pid = g.child.id();
        drop(g);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "ganesha {pid} still there"
        );
        assert_eq!(
            portmapper_answers(),
            had_portmapper,
            "rpcbind left as found"
        );
    }
}
