//! Pages sent by the io_uring engine are never recycled while the kernel
//! may still read them, registered folios included.
//!
//! Two network namespaces joined by a veth pair whose sending side is
//! throttled (`tc tbf`), so zero-copy pages wait in a slow queue. The
//! sender allocates every message from a cache that poisons each recycled
//! folio and drops its handles right after the send; the receiver checks
//! every byte. A folio recycled before its notification would put poison
//! (or newer data) on the wire. Needs root, `ip` and `tc`; skipped with a
//! message otherwise. Traffic stays between 10.214.0.1 and 10.214.0.2
//! inside the namespaces, which are removed at the end (also on panic).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::{ConnId, UringBuilder, UringError};
use msgsplice::{FragCache, Msg};

const POISON: u8 = 0xEE;
const PAYLOAD: usize = 24 << 10;
const MESSAGES: u32 = 400;

/// Two namespaces `NAMEa` and `NAMEb` with a throttled veth between them.
struct Link {
    name: String,
}

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Link {
    fn up() -> Result<Link, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root for network namespaces".into());
        }
        let link = Link {
            name: format!("msu{}", std::process::id() % 1_000_000),
        };
        let (a, b) = (format!("{}a", link.name), format!("{}b", link.name));
        run(&["ip", "netns", "add", &a])?;
        run(&["ip", "netns", "add", &b])?;
        run(&[
            "ip", "-n", &a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b,
        ])?;
        run(&["ip", "-n", &a, "addr", "add", "10.214.0.1/24", "dev", "va"])?;
        run(&["ip", "-n", &b, "addr", "add", "10.214.0.2/24", "dev", "vb"])?;
        for (ns, dev) in [(&a, "va"), (&b, "vb"), (&a, "lo"), (&b, "lo")] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        run(&[
            "tc", "-n", &a, "qdisc", "add", "dev", "va", "root", "tbf", "rate", "200mbit", "burst",
            "64kb", "latency", "500ms",
        ])?;
        Ok(link)
    }

    /// Runs `f` on a new thread inside namespace `NAME{side}`.
    fn in_ns<T: Send + 'static>(
        &self,
        side: char,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}{side}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open netns");
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("setns");
            f()
        })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for side in ['a', 'b'] {
            let _ = run(&["ip", "netns", "del", &format!("{}{side}", self.name)]);
        }
    }
}

/// Byte `j` of message `i`'s payload: never the poison byte.
fn pattern(i: u32, j: usize) -> u8 {
    let v = (i as usize)
        .wrapping_mul(131)
        .wrapping_add(j.wrapping_mul(7))
        % 251;
    if v as u8 == POISON {
        1
    } else {
        v as u8
    }
}

#[test]
fn registered_pages_outlive_a_slow_link() {
    let link = match Link::up() {
        Ok(l) => l,
        Err(why) => {
            eprintln!("SKIP registered_pages_outlive_a_slow_link: {why}");
            return;
        }
    };
    let (tx, rx) = mpsc::channel();
    let receiver = link.in_ns('b', move || {
        let l = TcpListener::bind((Ipv4Addr::new(10, 214, 0, 2), 0)).unwrap();
        tx.send(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let mut bad = 0u64;
        let mut buf = vec![0u8; 8 + PAYLOAD];
        for i in 0..MESSAGES {
            s.read_exact(&mut buf).unwrap();
            assert_eq!(buf[..4], i.to_be_bytes(), "header of message {i}");
            bad += buf[8..]
                .iter()
                .enumerate()
                .filter(|&(j, &b)| b != pattern(i, j))
                .count() as u64;
        }
        bad
    });
    let addr: SocketAddr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let sender = link.in_ns('a', move || {
        let cache = FragCache::builder()
            .poison_recycled(POISON)
            .build()
            .unwrap();
        let policy = Builder::new()
            .on_copied(OnCopied::Keep)
            .skip_zerocopy_to_local_peers(false)
            .drain_timeout(Duration::from_secs(20));
        let b = UringBuilder::new().policy(policy).bind_cache(cache.clone());
        let sock = TcpStream::connect(addr).unwrap();
        let mut u = match b.build(sock) {
            Ok(u) => u,
            Err(e @ UringError::Unsupported { .. }) => {
                eprintln!("SKIP registered_pages_outlive_a_slow_link: {e}");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        for i in 0..MESSAGES {
            let mut head = cache.alloc(8, 8).unwrap();
            head[..4].copy_from_slice(&i.to_be_bytes());
            head[4..].fill(0);
            let mut body = cache.alloc(PAYLOAD, 64).unwrap();
            for (j, b) in body.iter_mut().enumerate() {
                *b = pattern(i, j);
            }
            let mut m = Msg::new();
            m.push(head.freeze()).push(body.freeze());
            u.send(&mut m).unwrap();
            // The message's handles go now: only the splicer holds them.
        }
        let st = u.stats(ConnId::FIRST);
        let us = u.uring_stats();
        assert!(u.wait(Duration::from_secs(20)).unwrap(), "notifications");
        drop(u);
        cache.drain();
        Some((st, us, cache.stats()))
    });
    let sent = sender.join().unwrap();
    let bad = receiver.join().unwrap();
    drop(link);
    let Some((st, us, fs)) = sent else { return };
    eprintln!("{st:?}\n{us:?}\n{fs:?}");
    assert_eq!(bad, 0, "bytes from recycled folios reached the wire");
    assert!(st.zerocopy_sends > 0, "zero-copy was used");
    assert!(us.fixed_sends > 0, "registered folios were used");
    assert!(fs.recycled > 0, "folios were recycled meanwhile");
}
