//! What a send can report.

use std::io;
use std::net::SocketAddr;

/// What can go wrong when creating a [`Splicer`](super::Splicer) or sending
/// a [`Msg`](crate::Msg).
///
/// After an error in the middle of a message, [`Msg::sent`](crate::Msg::sent)
/// says how many bytes went; on a stream socket the peer has received a
/// partial message, so the connection should normally be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The socket is full and not a byte could be sent now (non-blocking
    /// socket, or a send timeout). Wait until it is writable and send the
    /// same `Msg` again: it resumes at its cursor.
    #[error("the socket's send buffer is full; wait until it is writable and resend the same Msg")]
    WouldBlock,
    /// The peer reset the connection (`ECONNRESET`).
    #[error("the peer reset the connection")]
    PeerReset,
    /// The connection is closed for sending (`EPIPE`): the peer went away
    /// or this side shut down writing.
    #[error("broken pipe: the connection is closed for sending")]
    BrokenPipe,
    /// The socket is not connected (`ENOTCONN`, `EDESTADDRREQ`).
    #[error("the socket is not connected")]
    NotConnected,
    /// The message does not fit in one datagram or record (`EMSGSIZE`).
    /// On UDP this is checked before anything is sent: at most
    /// [`MAX_UDP_PAYLOAD_V4`](super::MAX_UDP_PAYLOAD_V4) bytes to an IPv4
    /// destination, [`MAX_UDP_PAYLOAD_V6`](super::MAX_UDP_PAYLOAD_V6) to an
    /// IPv6 one, with or without GSO.
    #[error("a message of {len} bytes is too large for one record on this socket")]
    MessageTooLarge {
        /// The message's length.
        len: u64,
    },
    /// With UDP GSO, the message would leave as more segments than the
    /// kernel builds from one send ([`MAX_GSO_SEGMENTS`](super::MAX_GSO_SEGMENTS)).
    /// Checked before anything is sent. Use a larger segment size or a
    /// shorter message.
    #[error("a message of {len} bytes needs more than {max} GSO segments of {segment} bytes")]
    TooManySegments {
        /// The message's length.
        len: u64,
        /// The GSO segment size.
        segment: u16,
        /// The most segments one send may produce.
        max: u64,
    },
    /// With UDP GSO, one segment and its IP and UDP headers do not fit the
    /// path MTU, so the kernel refused the datagram (nothing was sent). Use
    /// a segment size of at most the MTU minus 28 bytes (IPv4) or 48
    /// (IPv6).
    #[error("a GSO segment of {segment} bytes does not fit the path MTU{}", mtu_text(*.mtu))]
    SegmentTooLarge {
        /// The GSO segment size.
        segment: u16,
        /// The path MTU, when the socket is connected and could tell.
        mtu: Option<u32>,
    },
    /// The peer's port was closed when an earlier datagram arrived (an ICMP
    /// port-unreachable, reported on a connected UDP socket by the next
    /// send, `ECONNREFUSED`). This datagram was not sent; the next send is
    /// tried again.
    #[error("the peer refused an earlier datagram (port unreachable); this one was not sent")]
    ConnectionRefused,
    /// The operation needs a UDP socket (a destination per message, GSO).
    #[error("{what} needs a UDP socket")]
    UdpOnly {
        /// What was asked for.
        what: &'static str,
    },
    /// The destination's address family cannot be reached from this
    /// socket: an IPv6 address given to an IPv4 socket. (An IPv6 socket
    /// reaches IPv4 addresses as IPv4-mapped ones, unless it is
    /// `IPV6_V6ONLY`.)
    #[error("{addr} cannot be reached from a socket of the other address family")]
    WrongAddressFamily {
        /// The destination given.
        addr: SocketAddr,
    },
    /// The file descriptor is not a socket (`ENOTSOCK`).
    #[error("the file descriptor is not a socket")]
    NotASocket,
    /// A socket kind the Splicer does not drive (yet): only TCP, UDP and
    /// Unix stream, datagram and seqpacket sockets are supported.
    #[error("unsupported socket (family {family}, type {ty}): use TCP, UDP or a Unix socket")]
    UnsupportedSocket {
        /// `SO_DOMAIN`.
        family: u16,
        /// `SO_TYPE`.
        ty: u32,
    },
    /// A file range reaches past the end of its file. Detected before any
    /// byte of the message is sent, unless the file shrank during the send.
    #[error("file range {offset}+{len} reaches past the end of the file ({file_len} bytes)")]
    PastEof {
        /// Offset of the range.
        offset: u64,
        /// Length of the range.
        len: u64,
        /// Size of the file when it was checked.
        file_len: u64,
    },
    /// File ranges need a stream socket: on a datagram or seqpacket socket
    /// (UDP included) a message must be one record, and `sendfile` would cut
    /// it into several. Reading the range inside the send would hide a copy
    /// and a disk read in a call that promises neither, so the Splicer
    /// refuses: read the range into a fragment yourself (for instance
    /// `FileExt::read_exact_at` into a [`FragMut`](crate::FragMut)) and push
    /// that; it is then spliced like any other fragment.
    #[error("file ranges can only be sent on stream sockets (TCP, Unix stream)")]
    FileOnRecordSocket,
    /// Any other error from the kernel.
    #[error("send failed: {0}")]
    Io(#[from] io::Error),
}

impl SendError {
    /// Classifies an error from `sendmsg`/`sendfile`.
    pub(crate) fn from_os(e: io::Error, msg_len: u64) -> SendError {
        match e.raw_os_error() {
            Some(libc::EAGAIN) => SendError::WouldBlock,
            Some(libc::ECONNRESET) => SendError::PeerReset,
            Some(libc::ECONNREFUSED) => SendError::ConnectionRefused,
            Some(libc::EPIPE) => SendError::BrokenPipe,
            Some(libc::ENOTCONN | libc::EDESTADDRREQ) => SendError::NotConnected,
            Some(libc::EMSGSIZE) => SendError::MessageTooLarge { len: msg_len },
            Some(libc::ENOTSOCK) => SendError::NotASocket,
            _ => SendError::Io(e),
        }
    }
}

impl From<SendError> for io::Error {
    fn from(e: SendError) -> io::Error {
        let kind = match &e {
            SendError::WouldBlock => io::ErrorKind::WouldBlock,
            SendError::PeerReset => io::ErrorKind::ConnectionReset,
            SendError::BrokenPipe => io::ErrorKind::BrokenPipe,
            SendError::NotConnected => io::ErrorKind::NotConnected,
            SendError::ConnectionRefused => io::ErrorKind::ConnectionRefused,
            SendError::PastEof { .. } => io::ErrorKind::UnexpectedEof,
            SendError::Io(_) => {
                if let SendError::Io(inner) = e {
                    return inner;
                }
                io::ErrorKind::Other
            }
            _ => io::ErrorKind::InvalidInput,
        };
        io::Error::new(kind, e)
    }
}

fn mtu_text(mtu: Option<u32>) -> String {
    mtu.map(|m| format!(" ({m} bytes)")).unwrap_or_default()
}
