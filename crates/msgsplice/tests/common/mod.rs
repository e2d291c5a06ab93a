//! Shared parts of the integration tests: socket pairs over every
//! transport, a source of random bytes, message specs that turn into real
//! `Msg`s and receivers. Socket pairs, payloads, test hosts and skips
//! come from `msgsplice-testkit`.
#![allow(dead_code)]

use std::io::{self, Read};
use std::net::{IpAddr, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use msgsplice::{FragCache, Msg, SendError, Splicer};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::net::RecvFlags;

#[allow(unused_imports)] // not every test binary uses each
pub use msgsplice_testkit::payload::source;
#[allow(unused_imports)]
pub use msgsplice_testkit::sockets::{pair, Transport};

/// A random segment of every kind, its length drawn from `len`, a fragment
/// at a random offset in its folio, data from a random place in `source`.
pub fn seg_of(
    len: impl proptest::strategy::Strategy<Value = usize>,
) -> impl proptest::strategy::Strategy<Value = SegSpec> {
    use proptest::prelude::*;
    (len, 0usize..4096, any::<usize>(), 0u8..5).prop_map(|(len, off, at, k)| match k {
        0 => SegSpec::Frag { len, off, at },
        1 => SegSpec::Bytes { len, off, at },
        2 => SegSpec::FragBytes { len, at },
        3 => SegSpec::Borrowed { len, at },
        _ => SegSpec::Owned { len, at },
    })
}

/// How one segment is made.
#[derive(Clone, Debug)]
pub enum SegSpec {
    /// A fragment `off` bytes into an allocation (odd folio offsets).
    Frag {
        len: usize,
        off: usize,
        at: usize,
    },
    /// `Bytes` from a `Vec`, sliced at `off`.
    Bytes {
        len: usize,
        off: usize,
        at: usize,
    },
    /// `Bytes` wrapping a fragment.
    FragBytes {
        len: usize,
        at: usize,
    },
    Borrowed {
        len: usize,
        at: usize,
    },
    Owned {
        len: usize,
        at: usize,
    },
}

impl SegSpec {
    pub fn data(&self) -> &'static [u8] {
        let (len, at) = match *self {
            SegSpec::Frag { len, at, .. }
            | SegSpec::Bytes { len, at, .. }
            | SegSpec::FragBytes { len, at }
            | SegSpec::Borrowed { len, at }
            | SegSpec::Owned { len, at } => (len, at),
        };
        let src = source();
        let at = at % (src.len() - len);
        &src[at..at + len]
    }
}

/// Builds the message of `specs`. Fragments come from `cache`.
pub fn build<'a>(specs: &'a [SegSpec], cache: &FragCache) -> Msg<'a> {
    let mut m = Msg::new();
    for s in specs {
        let d = s.data();
        match *s {
            SegSpec::Frag { off, len, .. } => {
                let mut f = cache.alloc(off + len, 1).expect("alloc");
                f[off..].copy_from_slice(d);
                m.push(f.freeze().slice(off..));
            }
            SegSpec::Bytes { off, .. } => {
                let mut v = vec![0xA5u8; off];
                v.extend_from_slice(d);
                m.push(Bytes::from(v).slice(off..));
            }
            SegSpec::FragBytes { .. } => {
                m.push(Bytes::from(cache.memdup(d).expect("memdup")));
            }
            SegSpec::Borrowed { .. } => {
                m.push(d);
            }
            SegSpec::Owned { .. } => {
                m.push(d.to_vec());
            }
        }
    }
    m
}

pub fn concat(specs: &[SegSpec]) -> Vec<u8> {
    specs
        .iter()
        .flat_map(|s| s.data().iter().copied())
        .collect()
}

/// Waits until `fd` is writable (or 5 s).
pub fn wait_writable(fd: impl AsFd) {
    let mut fds = [PollFd::new(&fd, PollFlags::OUT)];
    let ts = Timespec {
        tv_sec: 5,
        tv_nsec: 0,
    };
    let _ = poll(&mut fds, Some(&ts));
}

/// Sends `msg` to the end, waiting for room on a non-blocking socket.
/// Returns the number of calls that stopped early (short writes seen).
pub fn send_all<S: AsFd>(sp: &mut Splicer<S>, msg: &mut Msg<'_>) -> Result<u64, SendError> {
    let mut stops = 0;
    loop {
        match sp.send(msg) {
            Ok(_) if msg.is_sent() => return Ok(stops),
            Ok(_) | Err(SendError::WouldBlock) => {
                stops += 1;
                wait_writable(sp.get_ref());
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a stream to EOF on a thread.
pub fn read_to_end(fd: OwnedFd) -> JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut s = std::fs::File::from(fd);
        let mut v = Vec::new();
        s.read_to_end(&mut v)?;
        Ok(v)
    })
}

/// Squeezes a stream so a large send must stop: the sender is made
/// non-blocking with a 4 KiB send buffer and the returned reader reads
/// nothing until its gate is opened. A test sends once before opening the
/// gate, so a message larger than the receiver's default buffer (128 KiB
/// for TCP) stops short whatever the scheduler does; a reader that keeps up
/// from the first byte can otherwise absorb a whole megabyte on loopback.
/// (Shrinking the receive buffer too would make the rest of the transfer
/// crawl through a tiny window.)
pub fn squeezed(tx: &OwnedFd, rx: OwnedFd) -> (Gate, JoinHandle<io::Result<Vec<u8>>>) {
    rustix::io::ioctl_fionbio(tx, true).expect("non-blocking");
    rustix::net::sockopt::set_socket_send_buffer_size(tx, 4096).expect("sndbuf");
    let (open, wait) = std::sync::mpsc::channel::<()>();
    let h = std::thread::spawn(move || {
        // A dropped gate opens it too, so a failing test cannot hang here.
        let _ = wait.recv();
        let mut s = std::fs::File::from(rx);
        let mut v = Vec::new();
        s.read_to_end(&mut v)?;
        Ok(v)
    });
    (Gate(Some(open)), h)
}

/// Holds a [`squeezed`] reader back until [`Gate::open`] or drop.
pub struct Gate(Option<std::sync::mpsc::Sender<()>>);

impl Gate {
    /// Lets the reader start.
    pub fn open(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.send(());
        }
    }
}

/// Sends `msg` once with the reader held back, checks the send stopped
/// short (so resuming is really exercised), opens the gate and sends the
/// rest.
pub fn send_squeezed<S: AsFd>(
    sp: &mut Splicer<S>,
    msg: &mut Msg<'_>,
    gate: &mut Gate,
) -> Result<(), SendError> {
    match sp.send(msg) {
        Ok(_) | Err(SendError::WouldBlock) => {}
        Err(e) => return Err(e),
    }
    assert!(
        !msg.is_sent(),
        "with nobody reading, a 4 KiB buffer cannot take the whole message"
    );
    gate.open();
    send_all(sp, msg).map(drop)
}

/// Reads `n` records on a thread, each whole (MSG_TRUNC would show a cut).
pub fn read_records(fd: OwnedFd, n: usize) -> JoinHandle<io::Result<Vec<Vec<u8>>>> {
    std::thread::spawn(move || {
        rustix::net::sockopt::set_socket_timeout(
            &fd,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_secs(20)),
        )?;
        let mut buf = vec![0u8; 1 << 20];
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (_, len) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::TRUNC)?;
            assert!(len <= buf.len(), "record of {len} bytes was cut");
            out.push(buf[..len].to_vec());
        }
        Ok(out)
    })
}

/// Makes `fd`'s receive buffer large (8 MiB; as root beyond `rmem_max`),
/// so a burst of datagrams or GSO segments is not dropped by the receiver.
pub fn big_rcvbuf(fd: impl AsFd) {
    let size = 8 << 20;
    if rustix::process::geteuid().is_root() {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(&fd, size);
    } else {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&fd, size);
    }
}

/// A UDP socket bound to `ip` (port chosen by the kernel), with a large
/// receive buffer and a 5 s receive timeout.
pub fn udp_receiver(ip: IpAddr) -> io::Result<UdpSocket> {
    let r = UdpSocket::bind((ip, 0))?;
    big_rcvbuf(&r);
    r.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(r)
}

/// Receives `n` datagrams, each whole (a datagram longer than 64 KiB, cut
/// by the buffer, fails the test).
pub fn recv_datagrams(sock: &UdpSocket, n: usize) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1 << 17];
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        // EINTR is a wake-up, not an error: io_uring interrupts a blocking
        // call of the thread that owns a ring to run its completions'
        // task work, and with a receive timeout the call is not restarted.
        let len = match rustix::net::recv(sock, &mut buf[..], RecvFlags::TRUNC) {
            Ok((_, len)) => len,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        assert!(len <= buf.len(), "datagram of {len} bytes was cut");
        out.push(buf[..len].to_vec());
    }
    Ok(out)
}

/// The datagrams already queued on `sock`, without waiting.
pub fn queued_datagrams(sock: &UdpSocket) -> usize {
    let mut buf = vec![0u8; 1 << 17];
    let mut n = 0;
    while rustix::net::recv(sock, &mut buf[..], RecvFlags::DONTWAIT).is_ok() {
        n += 1;
    }
    n
}

/// A [`UringSplicer`](msgsplice::UringSplicer) over `sock` built by `b`,
/// or `None` where the kernel lacks what the engine needs (a counted skip
/// named `tag`, which never fails: root cannot provide it).
#[cfg(feature = "uring")]
pub fn uring_or_skip<S: AsFd>(
    b: msgsplice::uring::UringBuilder,
    sock: S,
    tag: &str,
) -> Option<msgsplice::UringSplicer<S>> {
    match b.build(sock) {
        Ok(u) => Some(u),
        Err(e @ msgsplice::uring::UringError::Unsupported { .. }) => {
            msgsplice_testkit::skip::skip_unsupported(tag, e);
            None
        }
        Err(e) => panic!("{tag}: {e}"),
    }
}
