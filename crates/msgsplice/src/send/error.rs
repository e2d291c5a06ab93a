//! What a send can report.

use std::io;

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
    #[error("a message of {len} bytes is too large for one record on this socket")]
    MessageTooLarge {
        /// The message's length.
        len: u64,
    },
    /// The file descriptor is not a socket (`ENOTSOCK`).
    #[error("the file descriptor is not a socket")]
    NotASocket,
    /// A socket kind the Splicer does not drive (yet): only TCP and Unix
    /// stream, datagram and seqpacket sockets are supported.
    #[error("unsupported socket (family {family}, type {ty}): use TCP or a Unix socket")]
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
    /// File ranges need a stream socket: on a datagram or seqpacket socket a
    /// message must be one record, and `sendfile` would cut it into several.
    /// Read the range into memory and send that instead.
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
