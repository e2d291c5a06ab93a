//! Kernel TLS (kTLS): the socket options that hand a TLS session's transmit
//! keys to the kernel, and `sendmsg` of a record of a chosen content type.
//!
//! References: `Documentation/networking/tls.rst` (Linux 4.13 and later),
//! `include/uapi/linux/tls.h` (`struct tls12_crypto_info_*`, `TLS_TX`,
//! `TLS_SET_RECORD_TYPE`), `tcp(7)` (`TCP_ULP`). The constants and structs
//! are spelled out here because the `libc` crate does not export them for
//! every target.
//!
//! Once `TLS_TX` is set, every byte written to the socket is plaintext that
//! the kernel seals into TLS records; a control record (an alert, a
//! handshake message) is sent with a `TLS_SET_RECORD_TYPE` control message.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use super::sendmsg::{sendmsg_slices, Cmsg, MSG_NOSIGNAL};
use crate::tls::Cipher;

/// `TCP_ULP` (`linux/tcp.h`): attach an upper-layer protocol to a TCP socket.
const TCP_ULP: libc::c_int = 31;
/// `SOL_TLS` (`linux/socket.h`).
const SOL_TLS: libc::c_int = 282;
/// `TLS_TX` (`linux/tls.h`): the transmit direction's crypto state.
const TLS_TX: libc::c_int = 1;
/// `TLS_SET_RECORD_TYPE` (`linux/tls.h`): control-message type naming the
/// content type of the record a `sendmsg` writes.
const TLS_SET_RECORD_TYPE: libc::c_int = 1;

/// `TLS_1_3_VERSION` (`linux/tls.h`).
pub(crate) const TLS_1_3_VERSION: u16 = 0x0304;
/// `TLS_CIPHER_AES_GCM_128`.
const TLS_CIPHER_AES_GCM_128: u16 = 51;
/// `TLS_CIPHER_AES_GCM_256`.
const TLS_CIPHER_AES_GCM_256: u16 = 52;
/// `TLS_CIPHER_CHACHA20_POLY1305`.
const TLS_CIPHER_CHACHA20_POLY1305: u16 = 54;

/// `struct tls_crypto_info`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Info {
    version: u16,
    cipher_type: u16,
}

/// `struct tls12_crypto_info_aes_gcm_128`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct AesGcm128 {
    info: Info,
    iv: [u8; 8],
    key: [u8; 16],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

/// `struct tls12_crypto_info_aes_gcm_256`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct AesGcm256 {
    info: Info,
    iv: [u8; 8],
    key: [u8; 32],
    salt: [u8; 4],
    rec_seq: [u8; 8],
}

/// `struct tls12_crypto_info_chacha20_poly1305` (its salt is empty).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct Chacha20Poly1305 {
    info: Info,
    iv: [u8; 12],
    key: [u8; 32],
    rec_seq: [u8; 8],
}

/// The transmit state handed to the kernel: cipher, key, IV and the next
/// record sequence number. The key bytes are wiped when this is dropped.
pub(crate) enum CryptoInfo {
    AesGcm128(AesGcm128),
    AesGcm256(AesGcm256),
    Chacha20Poly1305(Chacha20Poly1305),
}

impl CryptoInfo {
    /// Builds the state for `version` (msgsplice uses `TLS_1_3_VERSION`).
    /// `iv` is the 12-byte per-connection IV as TLS 1.3 defines it (for
    /// AES-GCM the kernel splits it into a 4-byte salt and an 8-byte IV);
    /// `seq` the sequence number of the next record. Returns `None` if the
    /// key length does not match the cipher.
    pub(crate) fn new(
        version: u16,
        cipher: Cipher,
        key: &[u8],
        iv: &[u8; 12],
        seq: u64,
    ) -> Option<CryptoInfo> {
        let rec_seq = seq.to_be_bytes();
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&iv[..4]);
        let mut iv8 = [0u8; 8];
        iv8.copy_from_slice(&iv[4..]);
        Some(match cipher {
            Cipher::AesGcm128 => CryptoInfo::AesGcm128(AesGcm128 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_AES_GCM_128,
                },
                iv: iv8,
                key: key.try_into().ok()?,
                salt,
                rec_seq,
            }),
            Cipher::AesGcm256 => CryptoInfo::AesGcm256(AesGcm256 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_AES_GCM_256,
                },
                iv: iv8,
                key: key.try_into().ok()?,
                salt,
                rec_seq,
            }),
            Cipher::Chacha20Poly1305 => CryptoInfo::Chacha20Poly1305(Chacha20Poly1305 {
                info: Info {
                    version,
                    cipher_type: TLS_CIPHER_CHACHA20_POLY1305,
                },
                iv: *iv,
                key: key.try_into().ok()?,
                rec_seq,
            }),
        })
    }

    /// The struct's address and size, for `setsockopt`.
    fn as_raw(&self) -> (*const libc::c_void, libc::socklen_t) {
        fn raw<T>(t: &T) -> (*const libc::c_void, libc::socklen_t) {
            (
                (t as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        }
        match self {
            CryptoInfo::AesGcm128(c) => raw(c),
            CryptoInfo::AesGcm256(c) => raw(c),
            CryptoInfo::Chacha20Poly1305(c) => raw(c),
        }
    }
}

impl Drop for CryptoInfo {
    fn drop(&mut self) {
        let key: &mut [u8] = match self {
            CryptoInfo::AesGcm128(c) => &mut c.key,
            CryptoInfo::AesGcm256(c) => &mut c.key,
            CryptoInfo::Chacha20Poly1305(c) => &mut c.key,
        };
        for b in key.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; a
            // volatile write keeps the compiler from dropping the wipe.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls")`: attaches the TLS upper
/// layer to a connected TCP socket (Linux 4.13). `ENOENT` means the kernel
/// has no `tls` module (not built, or not loadable); `EOPNOTSUPP` or
/// `ENOPROTOOPT` a kernel or socket without ULP support; `ENOTCONN` a
/// socket that is not connected; `EEXIST` a socket that has one already.
pub(crate) fn set_ulp_tls(fd: BorrowedFd<'_>) -> io::Result<()> {
    const NAME: &[u8] = b"tls";
    // SAFETY: passes a pointer to a live byte string and its exact length;
    // the kernel copies at most that many bytes.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_ULP,
            NAME.as_ptr().cast(),
            NAME.len() as libc::socklen_t,
        )
    })
}

/// `setsockopt(fd, SOL_TLS, TLS_TX, info)`: from now on the kernel seals
/// every byte written to the socket into TLS records with these keys.
/// `EINVAL` or `EOPNOTSUPP` mean a version or cipher the kernel does not
/// know; an error on a second call (a TLS 1.3 key update) means a kernel
/// that cannot rekey a socket (support for that is recent).
pub(crate) fn set_tx(fd: BorrowedFd<'_>, info: &CryptoInfo) -> io::Result<()> {
    let (ptr, len) = info.as_raw();
    // SAFETY: `ptr` points at a live `repr(C)` struct of `len` bytes laid
    // out as `linux/tls.h` declares it; the kernel only reads it.
    check(unsafe { libc::setsockopt(fd.as_raw_fd(), SOL_TLS, TLS_TX, ptr, len) })
}

/// Sends `data` as one record of content type `record_type` (21 alert,
/// 22 handshake) on a socket whose `TLS_TX` is set: `sendmsg` with a
/// `TLS_SET_RECORD_TYPE` control message, `MSG_NOSIGNAL`. Returns the
/// bytes taken (all of them on a blocking socket).
pub(crate) fn send_record(fd: BorrowedFd<'_>, record_type: u8, data: &[u8]) -> io::Result<usize> {
    let cmsg = Cmsg::new(SOL_TLS, TLS_SET_RECORD_TYPE, &[record_type]);
    sendmsg_slices(fd, &[IoSlice::new(data)], None, Some(&cmsg), MSG_NOSIGNAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_uapi() {
        // linux/tls.h: 4 + 8 + 16 + 4 + 8, 4 + 8 + 32 + 4 + 8, 4 + 12 + 32 + 0 + 8.
        assert_eq!(std::mem::size_of::<AesGcm128>(), 40);
        assert_eq!(std::mem::size_of::<AesGcm256>(), 56);
        assert_eq!(std::mem::size_of::<Chacha20Poly1305>(), 56);
    }

    /// Without kTLS the control message is ignored by TCP (it handles only
    /// SOL_SOCKET ones), so this checks that the message is well formed
    /// and the bytes go out whole.
    #[test]
    fn send_record_builds_a_valid_message() {
        use std::io::Read;
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut b, _) = l.accept().unwrap();
        assert_eq!(send_record(a.as_fd(), 21, &[1, 0]).unwrap(), 2);
        let mut got = [0u8; 2];
        b.read_exact(&mut got).unwrap();
        assert_eq!(got, [1, 0]);
    }

    #[test]
    fn key_length_must_match() {
        let iv = [7u8; 12];
        assert!(CryptoInfo::new(TLS_1_3_VERSION, Cipher::AesGcm128, &[0; 32], &iv, 0).is_none());
        let Some(CryptoInfo::AesGcm128(c)) =
            CryptoInfo::new(TLS_1_3_VERSION, Cipher::AesGcm128, &[1; 16], &iv, 5)
        else {
            panic!("AES-128-GCM with a 16-byte key")
        };
        assert_eq!(c.salt, [7; 4]);
        assert_eq!(c.rec_seq, 5u64.to_be_bytes());
    }
}
