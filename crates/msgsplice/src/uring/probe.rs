//! What this kernel's io_uring can do for sends, asked once when a
//! [`UringSplicer`](super::UringSplicer) is built.

use std::fmt;
use std::net::UdpSocket;
use std::os::fd::AsFd;

use super::UringError;
use crate::sys::uring::{Cqe, How, Ring};

/// A capability the probe can be told to treat as missing, to exercise the
/// fallbacks without an older kernel (see
/// [`UringBuilder::pretend_missing`](super::UringBuilder::pretend_missing)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `io_uring_setup` itself (as when `kernel.io_uring_disabled` is set).
    Ring,
    /// `IORING_OP_SENDMSG_ZC` (Linux 6.1).
    SendMsgZc,
    /// Registered buffers with `SENDMSG_ZC` (`IORING_RECVSEND_FIXED_BUF`
    /// on the vectored send, Linux 6.15).
    FixedSendMsg,
}

/// What the probe found. `Display` prints one line per capability.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UringProbe {
    /// `IORING_OP_SENDMSG` (Linux 5.3).
    pub sendmsg: bool,
    /// `IORING_OP_SEND_ZC` (Linux 6.0).
    pub send_zc: bool,
    /// `IORING_OP_SENDMSG_ZC` (Linux 6.1).
    pub sendmsg_zc: bool,
    /// The kernel took a `SENDMSG_ZC` from a registered buffer in a trial
    /// send (Linux 6.15); without it registered folios are not used. When false,
    /// `fixed_why` says what failed.
    pub fixed_sendmsg_zc: bool,
    /// Why registered-buffer sends are not used, when they are not.
    pub fixed_why: Option<String>,
    /// `RLIMIT_MEMLOCK` (soft) in bytes, `None` when unlimited.
    pub memlock_limit: Option<u64>,
    /// The process has `CAP_IPC_LOCK`, so registered buffers are not
    /// charged to `RLIMIT_MEMLOCK`.
    pub memlock_exempt: bool,
}

impl UringProbe {
    /// Bytes of folios that may be registered: unlimited (`None`) with
    /// `CAP_IPC_LOCK` or no limit, otherwise half the `RLIMIT_MEMLOCK`
    /// (the other half is left to the rest of the process).
    pub fn registration_budget(&self) -> Option<u64> {
        if self.memlock_exempt {
            return None;
        }
        self.memlock_limit.map(|l| l / 2)
    }
}

impl fmt::Display for UringProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yn = |b: bool| if b { "yes" } else { "no" };
        writeln!(f, "IORING_OP_SENDMSG: {}", yn(self.sendmsg))?;
        writeln!(f, "IORING_OP_SEND_ZC: {}", yn(self.send_zc))?;
        writeln!(f, "IORING_OP_SENDMSG_ZC: {}", yn(self.sendmsg_zc))?;
        write!(
            f,
            "SENDMSG_ZC from registered buffers: {}",
            yn(self.fixed_sendmsg_zc)
        )?;
        if let Some(why) = &self.fixed_why {
            write!(f, " ({why})")?;
        }
        writeln!(f)?;
        match self.memlock_limit {
            None => write!(f, "RLIMIT_MEMLOCK: unlimited")?,
            Some(l) => write!(f, "RLIMIT_MEMLOCK: {} KiB", l >> 10)?,
        }
        if self.memlock_exempt {
            write!(f, " (CAP_IPC_LOCK: not charged)")?;
        }
        Ok(())
    }
}

/// Sets up a ring of `entries` and probes it. Fails with
/// [`UringError::Unsupported`] when the ring, `SENDMSG` or `SENDMSG_ZC` is
/// missing (or pretended missing); registered-buffer support is only
/// reported. Costs `io_uring_setup` and one `io_uring_register`; the first
/// time in the process also the registered-buffer trial: a second small
/// ring, a UDP socket and a send that fails before any packet is made.
pub(crate) fn probe(
    entries: u32,
    missing: &[Capability],
) -> Result<(Ring, UringProbe), UringError> {
    let unsupported = |what, why: String| UringError::Unsupported { what, why };
    if missing.contains(&Capability::Ring) {
        return Err(unsupported("io_uring", "pretended missing (test)".into()));
    }
    let ring = Ring::new(entries).map_err(|e| {
        unsupported(
            "io_uring",
            format!("io_uring_setup failed: {e} (disabled by kernel.io_uring_disabled, a seccomp filter, or a kernel before 5.1)"),
        )
    })?;
    let ops = ring
        .opcodes()
        .map_err(|e| unsupported("IORING_REGISTER_PROBE", format!("{e} (kernel before 5.6)")))?;
    let mut p = UringProbe {
        sendmsg: ops.sendmsg,
        send_zc: ops.send_zc,
        sendmsg_zc: ops.sendmsg_zc && !missing.contains(&Capability::SendMsgZc),
        ..UringProbe::default()
    };
    if !p.sendmsg {
        return Err(unsupported(
            "IORING_OP_SENDMSG",
            "not in the kernel's opcode probe (kernel before 5.3)".into(),
        ));
    }
    if !p.sendmsg_zc {
        let why = if ops.sendmsg_zc {
            "pretended missing (test)".to_string()
        } else {
            "not in the kernel's opcode probe (kernel before 6.1)".to_string()
        };
        return Err(unsupported("IORING_OP_SENDMSG_ZC", why));
    }
    let lim = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    p.memlock_limit = lim.current;
    p.memlock_exempt = rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::IPC_LOCK)
    });
    if missing.contains(&Capability::FixedSendMsg) {
        p.fixed_why = Some("pretended missing (test)".into());
    } else {
        match fixed_send_once() {
            Ok(()) => p.fixed_sendmsg_zc = true,
            Err(why) => p.fixed_why = Some(why.clone()),
        }
    }
    Ok((ring, p))
}

/// [`try_fixed_send`], made once per process: what the kernel can do does
/// not change while it runs, and a server building a splicer per
/// connection should not pay a second ring and a socket for each.
fn fixed_send_once() -> &'static Result<(), String> {
    static TRIAL: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    TRIAL.get_or_init(try_fixed_send)
}

/// One `SENDMSG_ZC` of one byte from a registered buffer, on a ring of its
/// own (a ring's buffer table is registered once), through a UDP socket
/// with no destination: the kernel imports the registered buffer first and
/// then fails the send with `EDESTADDRREQ`, whereas a kernel without
/// registered buffers for this opcode refuses the entry with `EINVAL`. No
/// packet leaves, and no interface (not even loopback) needs to be up.
fn try_fixed_send() -> Result<(), String> {
    match trial_send(0)? {
        r if r == -libc::EDESTADDRREQ => Ok(()),
        r if r < 0 => Err(format!(
            "the trial send failed: {} (kernel before 6.15)",
            std::io::Error::from_raw_os_error(-r)
        )),
        r => Err(format!("the trial send returned {r}")),
    }
}

/// The trial send of [`try_fixed_send`] from slot `slot` of a table of
/// one; returns the send completion's result.
fn trial_send(slot: u16) -> Result<i32, String> {
    let e = |what: &str, err: std::io::Error| format!("{what}: {err}");
    let ring_err = |err| e("a second ring", err);
    let mut ring = Ring::new(4).map_err(ring_err)?;
    ring.register_sparse(1)
        .map_err(|err| e("a sparse buffer table (kernel before 5.13?)", err))?;
    let table = ring.table_handle().map_err(ring_err)?;
    let buf = vec![7u8; 4096];
    table
        .set(0, Some((buf.as_ptr(), buf.len())))
        .map_err(|err| e("registering a buffer (RLIMIT_MEMLOCK?)", err))?;
    let tx = UdpSocket::bind("0.0.0.0:0").map_err(|err| e("a UDP socket", err))?;
    let mut cqes: Vec<Cqe> = Vec::new();
    let res = {
        let mut b = ring.batch();
        b.push(
            tx.as_fd(),
            std::iter::once(&buf[..1]),
            0,
            How::Fixed(slot),
            false,
            1,
        )
        .map_err(|err| e("queueing the trial send", err))?;
        while !cqes.iter().any(|c| !c.notif) {
            b.submit_and_reap(&mut cqes)
                .map_err(|err| e("io_uring_enter", err))?;
        }
        cqes.iter().find(|c| !c.notif).map_or(0, |c| c.res)
    };
    // The notification, if one was promised, before the ring goes.
    if cqes.iter().any(|c| c.more) && !cqes.iter().any(|c| c.notif) {
        let _ = ring.reap(&mut cqes, Some(std::time::Duration::from_millis(200)));
    }
    let _ = table.set(0, None);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trial tells a registered buffer the kernel took from one it
    /// refused: a slot that does not exist fails before the missing
    /// destination is noticed (on a kernel that has fixed-buffer sends).
    #[test]
    fn the_trial_fails_on_a_buffer_the_kernel_refuses() {
        const T: &str = "the_trial_fails_on_a_buffer_the_kernel_refuses";
        let good = match trial_send(0) {
            Ok(good) => good,
            Err(e) => return msgsplice_testkit::skip::skip_unsupported(T, e),
        };
        if good != -libc::EDESTADDRREQ {
            let why = format!("no fixed-buffer SENDMSG_ZC here ({good})");
            return msgsplice_testkit::skip::skip_unsupported(T, why);
        }
        let bad = trial_send(3).unwrap();
        assert!(bad < 0 && bad != -libc::EDESTADDRREQ, "{bad}");
    }
}
