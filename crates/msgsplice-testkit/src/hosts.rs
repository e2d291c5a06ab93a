//! Two test hosts in network namespaces, joined by a veth pair whose
//! sending side can deliver, drop or throttle.
//!
//! `NAMEa` (the sender: 10.213.0.1, fd00:213::1) and `NAMEb` (the
//! receiver: 10.213.0.2, fd00:213::2) are made with iproute2 (`ip`, `tc`).
//! The sender has a permanent neighbour entry for each receiver address,
//! so no packet waits for address resolution, and the IPv6 addresses skip
//! duplicate address detection (`nodad`), so they work at once. The link's
//! [`LinkMode`] is set on the sender's side of the veth:
//!
//! - [`LinkMode::Deliver`]: packets reach `NAMEb`. The kernel copies
//!   zero-copy data on local delivery (completions say COPIED).
//! - [`LinkMode::Drop`]: the queue holds nothing (`pfifo limit 0`), so
//!   every packet is built and dropped before delivery, as a NIC would
//!   take it: completions are not COPIED, nothing arrives.
//! - [`LinkMode::Throttle`]: packets wait in a slow queue (`tbf`, 200
//!   Mbit/s), so spliced pages stay in flight for a long time.
//!
//! Each [`Hosts`] has a name unique on the machine (process id and a
//! counter; interface names fit 15 bytes) and removes its namespaces when
//! dropped, also when a test panics. A program that can be interrupted
//! (the benchmark) calls [`remove_on_signal`] once: SIGINT, SIGTERM and
//! SIGHUP then remove every live [`Hosts`] before the process ends.
//! Namespaces left by a process that was killed outright are removed by
//! the next [`Hosts::up`]. Traffic never leaves the two namespaces.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;

/// The sender's IPv4 address, in `NAMEa`.
pub const SENDER_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The receiver's IPv4 address, in `NAMEb`.
pub const RECEIVER_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
/// The sender's IPv6 address, in `NAMEa`.
pub const SENDER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, 0, 1);
/// The receiver's IPv6 address, in `NAMEb`.
pub const RECEIVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, 0, 2);

/// Start of every namespace name this module makes (then the process id).
const PREFIX: &str = "mst";

/// The receiver's address of the given family.
pub fn receiver(v6: bool) -> IpAddr {
    if v6 {
        RECEIVER_V6.into()
    } else {
        RECEIVER_V4.into()
    }
}

/// The sender's address of the given family.
pub fn sender(v6: bool) -> IpAddr {
    if v6 {
        SENDER_V6.into()
    } else {
        SENDER_V4.into()
    }
}

/// One of the two hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `NAMEa`, behind the shaped side of the link.
    Sender,
    /// `NAMEb`.
    Receiver,
}

impl Side {
    fn suffix(self) -> char {
        match self {
            Side::Sender => 'a',
            Side::Receiver => 'b',
        }
    }
}

/// What the sender's side of the link does with packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// Packets reach the receiver.
    Deliver,
    /// Every packet is dropped by the sender's queue, before delivery.
    Drop,
    /// Packets wait in a 200 Mbit/s token bucket (up to 2 s of queue).
    Throttle,
}

/// Why the hosts could not be made or changed.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// Namespaces and qdiscs need root.
    #[error("needs root (it creates network namespaces); run as root")]
    NotRoot,
    /// `ip` or `tc` is not installed.
    #[error("{tool} not found: install iproute2 (apt-get install iproute2)")]
    ToolMissing {
        /// The missing program.
        tool: String,
    },
    /// A command failed; its stderr says why.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Running a command or opening a namespace failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The names of the hosts alive in this process, for [`remove_all`].
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Two namespaces joined by a veth pair; removed on drop.
#[derive(Debug)]
pub struct Hosts {
    name: String,
}

impl Hosts {
    /// Creates both hosts with the link in [`LinkMode::Deliver`]. Runs
    /// about twenty `ip` commands. On failure nothing is left behind.
    pub fn up() -> Result<Hosts, HostsError> {
        if !crate::skip::is_root() {
            return Err(HostsError::NotRoot);
        }
        static STALE: Once = Once::new();
        STALE.call_once(remove_stale);
        static N: AtomicU32 = AtomicU32::new(0);
        // pid <= 7 digits: "mst" + pid + "x" + 3 digits + the interface's
        // one-byte suffix fits the 15 bytes of an interface name.
        let name = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed) % 1000
        );
        // Registered first, so a signal during the build removes the part
        // already made.
        lock_live().push(name.clone());
        let hosts = Hosts { name };
        hosts.build()?;
        Ok(hosts)
    }

    /// [`Hosts::up`] for a test: on failure reports a [`crate::skip()`] of
    /// `test` with the reason (a failure in CI as root) and returns `None`.
    pub fn for_test(test: &str) -> Option<Hosts> {
        match Hosts::up() {
            Ok(h) => Some(h),
            Err(e) => {
                crate::skip(test, format!("no test hosts: {e}"));
                None
            }
        }
    }

    /// The namespace name of `side`.
    pub fn namespace(&self, side: Side) -> String {
        format!("{}{}", self.name, side.suffix())
    }

    fn build(&self) -> Result<(), HostsError> {
        let (a, b) = (self.namespace(Side::Sender), self.namespace(Side::Receiver));
        let (va, vb) = (format!("{}0", self.name), format!("{}1", self.name));
        run(&["ip", "netns", "add", &a])?;
        run(&["ip", "netns", "add", &b])?;
        #[rustfmt::skip]
        run(&["ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b])?;
        for (ns, dev, v4, v6) in [
            (&a, &va, "10.213.0.1/24", "fd00:213::1/64"),
            (&b, &vb, "10.213.0.2/24", "fd00:213::2/64"),
        ] {
            run(&["ip", "-n", ns, "addr", "add", v4, "dev", dev])?;
            run(&["ip", "-n", ns, "-6", "addr", "add", v6, "dev", dev, "nodad"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        let mac = run(&["ip", "-n", &b, "-br", "link", "show", &vb])?
            .split_whitespace()
            .nth(2)
            .map(str::to_string)
            .ok_or_else(|| HostsError::Command {
                command: format!("ip -n {b} -br link show {vb}"),
                stderr: "no MAC address in the output".into(),
            })?;
        for ip in ["10.213.0.2", "fd00:213::2"] {
            #[rustfmt::skip]
            run(&["ip", "-n", &a, "neigh", "replace", ip, "lladdr", &mac, "dev", &va, "nud", "permanent"])?;
        }
        Ok(())
    }

    /// Shapes the sender's side of the link (replacing the previous mode).
    /// Two `tc` commands.
    pub fn set_mode(&self, mode: LinkMode) -> Result<(), HostsError> {
        let a = self.namespace(Side::Sender);
        let va = format!("{}0", self.name);
        // Deleting a root qdisc that was never added fails; that is fine.
        let _ = run(&["tc", "-n", &a, "qdisc", "del", "dev", &va, "root"]);
        let mut cmd = vec!["tc", "-n", &a, "qdisc", "add", "dev", &va, "root"];
        match mode {
            LinkMode::Deliver => return Ok(()),
            LinkMode::Drop => cmd.extend(["pfifo", "limit", "0"]),
            LinkMode::Throttle => {
                cmd.extend(["tbf", "rate", "200mbit", "burst", "64kb", "latency", "2s"]);
            }
        }
        run(&cmd).map(drop)
    }

    /// Moves the calling thread into `side`'s namespace: sockets it makes
    /// afterwards live there. (The thread cannot come back; use a thread
    /// of its own, or [`Hosts::spawn_in`].)
    pub fn enter(&self, side: Side) -> io::Result<()> {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.namespace(side)))?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }

    /// Runs `f` on a new thread inside `side`'s namespace. The thread
    /// panics (seen at `join`) if it cannot enter the namespace.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/run/netns/{}", self.namespace(side));
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        remove(&self.name);
        lock_live().retain(|n| n != &self.name);
    }
}

/// Removes every [`Hosts`] alive in this process. Safe to call from a
/// cleanup thread at any time: a host removed twice is no error. Live
/// `Hosts` values then refer to nothing; call it only on the way out.
pub fn remove_all() {
    let names = std::mem::take(&mut *lock_live());
    for n in &names {
        remove(n);
    }
}

/// Installs (once per process) handlers for SIGINT, SIGTERM and SIGHUP
/// that run [`remove_all`] on a cleanup thread and then end the process as
/// the signal would have. Costs one thread that sleeps until a signal.
pub fn remove_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *installed {
        return Ok(());
    }
    // The handler only writes to a self-pipe; the work happens here, on a
    // normal thread, where running `ip` is allowed.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("hosts-cleanup".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                remove_all();
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        })?;
    *installed = true;
    Ok(())
}

/// Removes namespaces of this module whose process is gone (killed before
/// it could clean up).
fn remove_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !pid.is_empty() && !alive {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}

fn remove(name: &str) {
    for side in ['a', 'b'] {
        let _ = run(&["ip", "netns", "del", &format!("{name}{side}")]);
    }
}

fn lock_live() -> std::sync::MutexGuard<'static, Vec<String>> {
    // A panic while holding the list leaves it valid: keep using it.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `cmd`, returning its stdout.
fn run(cmd: &[&str]) -> Result<String, HostsError> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => HostsError::ToolMissing {
                tool: cmd[0].into(),
            },
            _ => HostsError::Io(e),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HostsError::Command {
            command: cmd.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hosts come up, reach each other in deliver mode, and are gone
    /// after drop.
    #[test]
    fn hosts_come_up_talk_and_go() {
        let Some(h) = Hosts::for_test("hosts_come_up_talk_and_go") else {
            return;
        };
        let names = [h.namespace(Side::Sender), h.namespace(Side::Receiver)];
        assert!(names.iter().all(|n| n.len() < 15));
        let rx = h
            .spawn_in(Side::Receiver, || {
                std::net::UdpSocket::bind((RECEIVER_V6, 0)).expect("bind")
            })
            .join()
            .unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let to = rx.local_addr().unwrap();
        h.spawn_in(Side::Sender, move || {
            let s = std::net::UdpSocket::bind((SENDER_V6, 0)).expect("bind");
            s.send_to(b"hello", to).expect("send");
        })
        .join()
        .unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(rx.recv(&mut buf).expect("delivered"), 5);
        h.set_mode(LinkMode::Drop).unwrap();
        h.set_mode(LinkMode::Throttle).unwrap();
        drop(h);
        let list = run(&["ip", "netns", "list"]).unwrap();
        assert!(names.iter().all(|n| !list.contains(n.as_str())), "{list}");
        assert!(lock_live().is_empty());
    }

    /// Run by `a_signal_removes_live_hosts` in a child process: makes
    /// hosts, says their name, and sends itself SIGTERM.
    #[test]
    #[ignore = "run as a child process by a_signal_removes_live_hosts"]
    fn child_hosts_then_sigterm() {
        let h = Hosts::up().expect("hosts");
        remove_on_signal().expect("signal handler");
        eprintln!("HOSTS {}", h.namespace(Side::Sender));
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, rustix::process::Signal::TERM).expect("kill");
        std::thread::sleep(std::time::Duration::from_secs(20));
        panic!("still alive after SIGTERM");
    }

    /// SIGTERM to a process holding hosts removes them and still ends the
    /// process by that signal.
    #[test]
    fn a_signal_removes_live_hosts() {
        use std::os::unix::process::ExitStatusExt;
        if !crate::require_root("a_signal_removes_live_hosts") {
            return;
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "hosts::tests::child_hosts_then_sigterm",
            ])
            .args(["--nocapture"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let name = err
            .lines()
            .find_map(|l| l.strip_prefix("HOSTS "))
            .unwrap_or_else(|| panic!("no hosts made: {err}"));
        assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{err}");
        let list = run(&["ip", "netns", "list"]).unwrap();
        assert!(!list.contains(name), "{name} left behind: {list}");
    }
}
