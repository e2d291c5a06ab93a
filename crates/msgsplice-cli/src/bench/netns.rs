//! A drop sink: a path on which packets leave without local delivery, the
//! only place on these machines where `MSG_ZEROCOPY` can be seen to save
//! work (DESIGN.md; locally delivered data is copied and reported COPIED).
//!
//! Two network namespaces, `NAMEa` (10.213.0.1, fd00:213::1) and `NAMEb`
//! (10.213.0.2, fd00:213::2), joined by a veth pair whose sending side has a
//! queue that holds nothing (`pfifo limit 0`) and a permanent neighbour
//! entry, so every packet is built and dropped by the sender, as a NIC would
//! take it, and nothing is resolved or delivered. The same topology as the
//! project's `shared/netns-sink.sh` in `drop` mode, built here so that the
//! binary needs only iproute2. Needs root. The namespaces are removed when
//! the [`DropSink`] is dropped; traffic never leaves them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The receiving side's IPv4 address (nothing listens; packets never get
/// there).
pub const RECEIVER_V4: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);
/// The receiving side's IPv6 address.
pub const RECEIVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x213, 0, 0, 0, 0, 0, 2);

/// The receiving side's address of the given family.
pub fn receiver(v6: bool) -> IpAddr {
    if v6 {
        RECEIVER_V6.into()
    } else {
        RECEIVER_V4.into()
    }
}

/// Two namespaces joined by a dropping veth pair; removed on drop.
#[derive(Debug)]
pub struct DropSink {
    name: String,
}

impl DropSink {
    /// Creates the namespaces, or says why it cannot (not root, iproute2
    /// missing, a command failed); nothing is left behind on failure.
    pub fn up() -> Result<DropSink, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root (it creates network namespaces); run as root".into());
        }
        static N: AtomicU32 = AtomicU32::new(0);
        // At most 13 bytes, so that NAME + "0" fits an interface name.
        let name = format!(
            "msb{}x{}",
            std::process::id() % 1_000_000,
            N.fetch_add(1, Ordering::Relaxed) % 100
        );
        let sink = DropSink { name };
        sink.build()?;
        Ok(sink)
    }

    fn build(&self) -> Result<(), String> {
        let (a, b) = (format!("{}a", self.name), format!("{}b", self.name));
        let (va, vb) = (format!("{}0", self.name), format!("{}1", self.name));
        let steps: Vec<Vec<&str>> = vec![
            vec!["ip", "netns", "add", &a],
            vec!["ip", "netns", "add", &b],
            vec![
                "ip", "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb,
                "netns", &b,
            ],
            vec!["ip", "-n", &a, "addr", "add", "10.213.0.1/24", "dev", &va],
            vec!["ip", "-n", &b, "addr", "add", "10.213.0.2/24", "dev", &vb],
            vec![
                "ip",
                "-n",
                &a,
                "-6",
                "addr",
                "add",
                "fd00:213::1/64",
                "dev",
                &va,
                "nodad",
            ],
            vec![
                "ip",
                "-n",
                &b,
                "-6",
                "addr",
                "add",
                "fd00:213::2/64",
                "dev",
                &vb,
                "nodad",
            ],
            vec!["ip", "-n", &a, "link", "set", &va, "up"],
            vec!["ip", "-n", &b, "link", "set", &vb, "up"],
            vec![
                "tc", "-n", &a, "qdisc", "add", "dev", &va, "root", "pfifo", "limit", "0",
            ],
        ];
        for s in &steps {
            run(s)?;
        }
        // A permanent neighbour entry for each receiver address: no
        // resolution is ever needed, so every packet reaches the queue.
        let mac = output(&["ip", "-n", &b, "-br", "link", "show", &vb])?
            .split_whitespace()
            .nth(2)
            .map(str::to_string)
            .ok_or("cannot read the veth's MAC address")?;
        for ip in ["10.213.0.2", "fd00:213::2"] {
            run(&[
                "ip",
                "-n",
                &a,
                "neigh",
                "replace",
                ip,
                "lladdr",
                &mac,
                "dev",
                &va,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Moves the calling thread into the sending namespace: sockets it
    /// creates afterwards send through the dropping link.
    pub fn enter(&self) -> io::Result<()> {
        let ns = std::fs::File::open(format!("/run/netns/{}a", self.name))?;
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }
}

impl Drop for DropSink {
    fn drop(&mut self) {
        for side in ['a', 'b'] {
            let ns = format!("{}{side}", self.name);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}

fn output(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                format!("{} not found (apt-get install iproute2)", cmd[0])
            }
            _ => format!("{}: {e}", cmd.join(" ")),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn run(cmd: &[&str]) -> Result<(), String> {
    output(cmd).map(drop)
}
