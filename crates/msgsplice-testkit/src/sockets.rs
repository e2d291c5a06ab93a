//! Connected socket pairs over every transport the library sends on.
//! Each call makes fresh sockets on loopback (or a Unix socket pair): a
//! few system calls, no threads.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// The stream and record transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TCP over IPv4 loopback.
    Tcp4,
    /// TCP over IPv6 loopback.
    Tcp6,
    /// A Unix stream socket pair.
    UnixStream,
    /// A Unix seqpacket socket pair (records, not a stream).
    UnixSeqpacket,
}

impl Transport {
    /// True if the transport keeps record boundaries.
    pub fn is_record(self) -> bool {
        self == Transport::UnixSeqpacket
    }
}

/// A connected pair `(sending side, receiving side)` of transport `t`.
/// TCP senders have `TCP_NODELAY` set.
pub fn pair(t: Transport) -> io::Result<(OwnedFd, OwnedFd)> {
    match t {
        Transport::Tcp4 => tcp_pair(false).map(|(a, b)| (a.into(), b.into())),
        Transport::Tcp6 => tcp_pair(true).map(|(a, b)| (a.into(), b.into())),
        Transport::UnixStream => {
            let (a, b) = UnixStream::pair()?;
            Ok((a.into(), b.into()))
        }
        Transport::UnixSeqpacket => Ok(rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )?),
    }
}

/// The loopback address of the family (`::1` or `127.0.0.1`), port 0.
pub fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }
}

/// A connected TCP pair `(client, accepted)` over loopback, the client
/// with `TCP_NODELAY`. Fails on a host without that family's loopback.
pub fn tcp_pair(v6: bool) -> io::Result<(TcpStream, TcpStream)> {
    let l = TcpListener::bind(loopback(v6))?;
    let a = TcpStream::connect(l.local_addr()?)?;
    let (b, _) = l.accept()?;
    a.set_nodelay(true)?;
    Ok((a, b))
}

/// A UDP pair `(sender, receiver)` over loopback, the sender connected to
/// the receiver.
pub fn udp_pair(v6: bool) -> io::Result<(UdpSocket, UdpSocket)> {
    let rx = UdpSocket::bind(loopback(v6))?;
    let tx = UdpSocket::bind(loopback(v6))?;
    tx.connect(rx.local_addr()?)?;
    Ok((tx, rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn every_pair_carries_bytes() {
        for t in [
            Transport::Tcp4,
            Transport::Tcp6,
            Transport::UnixStream,
            Transport::UnixSeqpacket,
        ] {
            let Ok((a, b)) = pair(t) else {
                assert_eq!(t, Transport::Tcp6, "{t:?}");
                crate::skip::skip_unsupported("every_pair_carries_bytes", "no IPv6 loopback");
                continue;
            };
            std::fs::File::from(a).write_all(b"abc").unwrap();
            let mut got = [0u8; 3];
            std::fs::File::from(b).read_exact(&mut got).unwrap();
            assert_eq!(&got, b"abc", "{t:?}");
        }
        let (tx, rx) = udp_pair(false).unwrap();
        tx.send(b"d").unwrap();
        assert_eq!(rx.recv(&mut [0u8; 4]).unwrap(), 1);
    }
}
