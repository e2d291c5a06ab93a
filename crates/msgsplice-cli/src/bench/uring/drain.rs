//! The TCP receiver of the `uring` section: one thread in the receiving
//! namespace that accepts every connection and reads and discards what
//! arrives, counting the bytes, so that the senders never wait for a
//! reader. It runs in the benchmark's own process, so the sending side
//! subtracts its CPU time ([`Drain::cpu`]) from the process's.

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use msgsplice_testkit::hosts::{self, Hosts, Side};
use rustix::event::{poll, PollFd, PollFlags};

/// How long one `poll` waits before looking at the stop flag.
const POLL_WAIT: Duration = Duration::from_millis(20);

/// The shared state of the drain thread.
#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    bytes: AtomicU64,
}

/// A drain listening at [`Drain::addr`] in the receiving namespace; stops
/// when dropped.
pub struct Drain {
    /// Where to connect (the receiver's IPv4 address).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// The drain thread's CPU time, as the scheduler counts it.
    schedstat: String,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Drain {
    /// Starts the drain thread in `hosts`' receiving namespace.
    pub fn start(hosts: &Hosts) -> Result<Drain, String> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let s = shared.clone();
        let thread = hosts.spawn_in(Side::Receiver, move || {
            let l = TcpListener::bind((hosts::receiver(false), 0))
                .and_then(|l| l.set_nonblocking(true).map(|()| l));
            match l {
                Ok(l) => {
                    let tid = rustix::thread::gettid().as_raw_nonzero().get();
                    let _ = tx.send(l.local_addr().map(|a| (a, tid)));
                    drain(&l, &s)
                }
                Err(e) => {
                    let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    Err(e)
                }
            }
        });
        let (addr, tid) = rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the TCP receiver did not start".to_string())?
            .map_err(|e| format!("the TCP receiver cannot listen: {e}"))?;
        let d = Drain {
            addr,
            shared,
            schedstat: format!("/proc/self/task/{tid}/schedstat"),
            thread: Some(thread),
        };
        d.read_cpu()
            .map_err(|e| format!("cannot read the TCP receiver's CPU time: {e}"))?;
        Ok(d)
    }

    /// Bytes read so far, over every connection.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::Relaxed)
    }

    /// The drain thread's CPU time so far (0 if it cannot be read; [`start`](Drain::start)
    /// checked that it can).
    pub fn cpu(&self) -> Duration {
        self.read_cpu().unwrap_or_default()
    }

    /// The thread's run time in nanoseconds, the first field of its
    /// `schedstat` (`proc(5)`): exact whether it sleeps or runs, as the
    /// process's CPU-time clock is.
    fn read_cpu(&self) -> io::Result<Duration> {
        let s = std::fs::read_to_string(&self.schedstat)?;
        s.split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .map(Duration::from_nanos)
            .ok_or_else(|| io::Error::other(format!("{}: unexpected {s:?}", self.schedstat)))
    }

    /// Waits up to `timeout` until `want` bytes have been read; true if
    /// they have.
    pub fn wait_for(&self, want: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.bytes() < want {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts and reads until told to stop.
fn drain(l: &TcpListener, s: &Shared) -> io::Result<()> {
    let mut conns: Vec<TcpStream> = Vec::new();
    let mut buf = vec![0u8; 256 << 10];
    let wait = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: POLL_WAIT.as_nanos() as _,
    };
    while !s.stop.load(Ordering::Relaxed) {
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(l, PollFlags::IN))
                .chain(conns.iter().map(|c| PollFd::new(c, PollFlags::IN)))
                .collect();
            match poll(&mut fds, Some(&wait)) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|f| !f.revents().is_empty()).collect()
        };
        let mut closed = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            if ready[i + 1] && !read_all(c, &mut buf, &s.bytes)? {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            conns.swap_remove(i);
        }
        if ready[0] {
            accept_all(l, &mut conns)?;
        }
    }
    Ok(())
}

/// Takes every pending connection.
fn accept_all(l: &TcpListener, conns: &mut Vec<TcpStream>) -> io::Result<()> {
    loop {
        match l.accept() {
            Ok((c, _)) => {
                c.set_nonblocking(true)?;
                conns.push(c);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reads what `c` holds; false once the peer has closed (or reset) it.
fn read_all(c: &mut TcpStream, buf: &mut [u8], total: &AtomicU64) -> io::Result<bool> {
    loop {
        match c.read(buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                total.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}
