//! Sends UDP datagrams (one 48 KiB fragment each) to
//! `ADDR:PORT` four ways and prints the sender's CPU time per GiB of each:
//! `sendmsg` copying, `MSG_ZEROCOPY` (the Splicer), `SENDMSG_ZC` (the
//! UringSplicer) and `SENDMSG_ZC` from registered folios.
//!
//! Meant for a drop sink, where the kernel really transmits from the
//! pages and no completion says COPIED: a veth pair, sending to an address
//! nobody has through a static neighbour entry, so that every datagram
//! crosses the veth and is dropped by the peer's IP layer (as root)
//!
//! ```sh
//! ip netns add ms-sink
//! ip -n ms-sink link add va type veth peer name vb
//! ip -n ms-sink addr add 10.77.0.1/24 dev va
//! ip -n ms-sink addr add 10.77.0.2/24 dev vb
//! ip -n ms-sink link set va up; ip -n ms-sink link set vb up
//! ip -n ms-sink link set va mtu 65535
//! ip -n ms-sink neigh add 10.77.0.9 lladdr 02:00:00:00:00:09 dev va
//! ip netns exec ms-sink cargo run --release -p msgsplice --features uring \
//!     --example uring_udp_sink -- 10.77.0.9:9 20000
//! ip netns del ms-sink
//! ```
//!
//! On loopback every zero-copy completion says COPIED and the numbers
//! mean little.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use msgsplice::send::{Builder, OnCopied};
use msgsplice::uring::UringBuilder;
use msgsplice::{FragCache, Msg, UringSplicer};

type Error = Box<dyn std::error::Error>;

/// User and system CPU time of the whole process, io_uring's worker
/// threads included (`/proc/self/stat`, in clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after_name
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the line; 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn policy(splice: bool) -> Builder {
    Builder::new()
        .splice(splice)
        .on_copied(OnCopied::Keep)
        .skip_zerocopy_to_local_peers(false)
}

fn socket(to: SocketAddr) -> Result<UdpSocket, Error> {
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.connect(to)?;
    Ok(s)
}

fn report(name: &str, n: u64, bytes: u64, wall: Duration, cpu: Duration) {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    println!(
        "{name:<22} {n:>7} datagrams  {:>8.0} MB/s  cpu {:>6.3} s/GiB",
        bytes as f64 / wall.as_secs_f64() / 1e6,
        cpu.as_secs_f64() / gib
    );
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let to: SocketAddr = args
        .next()
        .ok_or("usage: uring_udp_sink ADDR:PORT [COUNT]")?
        .parse()?;
    let n: u64 = args.next().map_or(Ok(20_000), |s| s.parse())?;
    let payload = vec![42u8; 48 << 10];
    let len = payload.len() as u64;

    for (name, splice) in [("sendmsg (copy)", false), ("MSG_ZEROCOPY", true)] {
        let cache = FragCache::builder().folio_size(256 << 10).build()?;
        let body = cache.memdup(&payload)?;
        let mut sp = policy(splice)
            .frag_cache(cache.clone())
            .build(socket(to)?)?;
        let (t0, c0) = (Instant::now(), cpu_time());
        for _ in 0..n {
            let mut m = Msg::new();
            m.push(body.clone());
            sp.send(&mut m)?;
        }
        drop(sp);
        report(name, n, n * len, t0.elapsed(), cpu_time() - c0);
    }

    for (name, bind) in [("SENDMSG_ZC", false), ("SENDMSG_ZC registered", true)] {
        let cache = FragCache::builder().folio_size(256 << 10).build()?;
        let mut b = UringBuilder::new().policy(policy(true).frag_cache(cache.clone()));
        if bind {
            b = b.bind_cache(cache.clone());
        }
        let mut u: UringSplicer<UdpSocket> = b.build(socket(to)?)?;
        let body = cache.memdup(&payload)?;
        let (t0, c0) = (Instant::now(), cpu_time());
        for _ in 0..n {
            let mut m = Msg::new();
            m.push(body.clone());
            u.send(&mut m)?;
        }
        u.wait(Duration::from_secs(5))?;
        let (st, us) = (u.stats(msgsplice::uring::ConnId::FIRST), u.uring_stats());
        drop(u);
        report(name, n, n * len, t0.elapsed(), cpu_time() - c0);
        println!(
            "    zero-copy sends {}, copied {}, from registered folios {}",
            st.zerocopy_sends, st.completions_copied, us.fixed_sends
        );
    }
    Ok(())
}
