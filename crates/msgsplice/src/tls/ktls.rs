//! Handing a session's transmit keys to the kernel (kTLS), and what to say
//! when it cannot take them.

use std::fmt;
use std::os::fd::BorrowedFd;

use rustls::ConnectionTrafficSecrets;

use super::record::{ContentType, Secrets, Version};
use crate::send::SocketKind;
use crate::sys::ktls::{self, CryptoInfo, TLS_1_3_VERSION};

/// Whether a connection's records are sealed by the kernel (kTLS) or by
/// msgsplice in user space, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KtlsStatus {
    /// The kernel seals this connection's records: Msgs go as plaintext,
    /// file ranges by `sendfile`.
    Active,
    /// Not tried ([`Ktls::Off`](super::Ktls::Off)).
    Off,
    /// The kernel has no TLS layer for TCP: `setsockopt(TCP_ULP, "tls")`
    /// failed with this errno (`ENOENT`: no `tls` module built or loadable;
    /// `EOPNOTSUPP`/`ENOPROTOOPT`: no ULP support).
    NoKernelSupport(i32),
    /// The kernel has the TLS layer but refused this session's keys:
    /// `setsockopt(SOL_TLS, TLS_TX)` failed with this errno (`EINVAL`,
    /// `EOPNOTSUPP`: a cipher it does not implement).
    KeysRefused(i32),
    /// The session is TLS 1.2: msgsplice hands only TLS 1.3 keys to the
    /// kernel, because the kernel counts TLS 1.2 AES-GCM explicit nonces
    /// differently from the sender rustls started the session with, and
    /// that could repeat a nonce.
    Tls12,
    /// The socket is not TCP (kTLS is a TCP upper layer).
    NotTcp,
}

impl KtlsStatus {
    /// True when the kernel seals the records.
    pub fn is_active(self) -> bool {
        self == KtlsStatus::Active
    }
}

/// The symbolic name of the errnos this module reports.
fn errno_name(e: i32) -> String {
    let name = match e {
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOPROTOOPT => "ENOPROTOOPT",
        libc::EINVAL => "EINVAL",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTCONN => "ENOTCONN",
        libc::EPERM => "EPERM",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

impl fmt::Display for KtlsStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KtlsStatus::Active => f.write_str("active: the kernel seals the records"),
            KtlsStatus::Off => f.write_str("off by configuration"),
            KtlsStatus::NoKernelSupport(e) => write!(
                f,
                "setsockopt(TCP_ULP, \"tls\") failed with {}: this kernel has no kTLS{}",
                errno_name(e),
                if e == libc::ENOENT {
                    " (no tls module)"
                } else {
                    ""
                }
            ),
            KtlsStatus::KeysRefused(e) => write!(
                f,
                "setsockopt(SOL_TLS, TLS_TX) failed with {}: the kernel refused the session's cipher",
                errno_name(e)
            ),
            KtlsStatus::Tls12 => f.write_str("the session is TLS 1.2; only TLS 1.3 goes to the kernel"),
            KtlsStatus::NotTcp => f.write_str("the socket is not TCP"),
        }
    }
}

fn raw_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EINVAL)
}

/// The errno of the first `TCP_ULP` attempt that showed the kernel has no
/// TLS layer. Later connections do not ask again: each failed attempt can
/// make the kernel run `modprobe` (as root), which costs milliseconds.
static NO_ULP: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

/// Asks whether this kernel has kTLS, without a connection: attaching the
/// `tls` upper layer to an unconnected TCP socket fails with `ENOTCONN`
/// when the layer exists (its init wants an established socket) and with
/// `ENOENT` when it does not. One `socket`, one `setsockopt`, one `close`.
///
/// `Ok(())`: connections made with [`Ktls::Auto`](super::Ktls::Auto) will
/// try the kernel (it can still refuse a cipher). `Err`: why not.
pub fn probe_ktls() -> Result<(), KtlsStatus> {
    use rustix::net::{socket, AddressFamily, SocketType};
    let sock = socket(AddressFamily::INET, SocketType::STREAM, None)
        .map_err(|e| KtlsStatus::NoKernelSupport(e.raw_os_error()))?;
    match ktls::set_ulp_tls(std::os::fd::AsFd::as_fd(&sock)) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        Err(e) => {
            let e = raw_errno(e);
            if matches!(e, libc::ENOENT | libc::EOPNOTSUPP | libc::ENOPROTOOPT) {
                let _ = NO_ULP.set(e);
            }
            Err(KtlsStatus::NoKernelSupport(e))
        }
    }
}

/// Gives the kernel the transmit keys (`tx`, next record `seq`) of a
/// connected socket. Fails without side effects when the kernel has no
/// TLS layer; when it has one but refuses the keys, the layer stays
/// attached but passes bytes through unchanged until `TLS_TX` is set, so
/// user-space records still work.
///
/// A kernel without the TLS layer is asked once per process (see
/// [`NO_ULP`]).
pub(crate) fn enable(
    fd: BorrowedFd<'_>,
    kind: SocketKind,
    version: Version,
    tx: &ConnectionTrafficSecrets,
    seq: u64,
) -> KtlsStatus {
    if kind != SocketKind::Tcp {
        return KtlsStatus::NotTcp;
    }
    if version != Version::Tls13 {
        return KtlsStatus::Tls12;
    }
    if let Some(&e) = NO_ULP.get() {
        return KtlsStatus::NoKernelSupport(e);
    }
    if let Err(e) = ktls::set_ulp_tls(fd) {
        let e = raw_errno(e);
        if matches!(e, libc::ENOENT | libc::EOPNOTSUPP | libc::ENOPROTOOPT) {
            let _ = NO_ULP.set(e);
        }
        return KtlsStatus::NoKernelSupport(e);
    }
    match set_keys(fd, tx, seq) {
        Ok(()) => KtlsStatus::Active,
        Err(e) => KtlsStatus::KeysRefused(e),
    }
}

/// `TLS_TX` with these secrets (also after a key update).
pub(crate) fn set_keys(
    fd: BorrowedFd<'_>,
    tx: &ConnectionTrafficSecrets,
    seq: u64,
) -> Result<(), i32> {
    let Secrets { cipher, key, iv } = Secrets::of(tx).map_err(|_| libc::EINVAL)?;
    let info = CryptoInfo::new(TLS_1_3_VERSION, cipher, key, &iv, seq).ok_or(libc::EINVAL)?;
    ktls::set_tx(fd, &info).map_err(raw_errno)
}

/// Sends one control record (an alert, a handshake message) through the
/// kernel.
pub(crate) fn send_control(
    fd: BorrowedFd<'_>,
    ty: ContentType,
    data: &[u8],
) -> std::io::Result<()> {
    let n = ktls::send_record(fd, ty.byte(), data)?;
    if n == data.len() {
        Ok(())
    } else {
        // A record is all or nothing for the kernel on a blocking socket.
        Err(std::io::Error::from(std::io::ErrorKind::WriteZero))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_the_errno() {
        let s = KtlsStatus::NoKernelSupport(libc::ENOENT).to_string();
        assert!(s.contains("ENOENT") && s.contains("TCP_ULP"), "{s}");
        assert!(KtlsStatus::KeysRefused(libc::EINVAL)
            .to_string()
            .contains("EINVAL"));
    }

    #[test]
    fn probe_answers() {
        // Either answer is fine; what matters is that it answers and says why.
        if let Err(s) = probe_ktls() {
            assert!(matches!(s, KtlsStatus::NoKernelSupport(_)), "{s}");
        }
    }
}
