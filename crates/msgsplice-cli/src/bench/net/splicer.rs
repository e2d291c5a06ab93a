//! The msgsplice rows of the send sections: a [`Splicer`] with SPLICE off,
//! on (the default policy), and on with zero-copy kept regardless of COPIED
//! reports (the measurement behind the default policy).
//!
//! For file payloads: the default Splicer (a range of up to 32 KiB read
//! into a fragment and sent with the header and trailer in one `sendmsg`; a
//! longer one through the tail pipe with `SPLICE_F_MORE`, as the trailer
//! follows) and the same with every range spliced, whatever its size: the
//! two sides of the read threshold.
//!
//! One Splicer per connection (over a duplicate of the socket's descriptor,
//! so that the harness keeps its own). A message is one [`Msg`]: the header
//! and trailer borrowed (copied), the payload a [`Frag`](msgsplice::Frag)
//! reference (spliceable) or a file range. System calls are the
//! Splicer's own count ([`msgsplice::SendStats::syscalls`]).

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use msgsplice::send::{Builder, OnCopied};
use msgsplice::{Msg, Splicer};

use super::strategy::{Message, Payload, SendStrategy, Sock, SyscallCount};

/// How a [`SplicerRow`] is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// SPLICE off: everything copied by the kernel.
    Off,
    /// SPLICE on with the default policy.
    On,
    /// SPLICE on, and zero-copy kept even when every completion is COPIED.
    OnKeep,
    /// File payloads: the default, but with no range read into memory
    /// ([`Builder::read_file_ranges_up_to`] 0): every range spliced.
    SpliceAlways,
}

/// A send strategy backed by a [`Splicer`].
pub struct SplicerRow {
    mode: Mode,
    name: &'static str,
    /// Which payloads this row is for (each list measures one kind).
    file: bool,
    sp: Option<Splicer<OwnedFd>>,
}

impl SplicerRow {
    /// A row for memory payloads (`file` false) or file payloads.
    pub fn new(mode: Mode, file: bool) -> SplicerRow {
        let name = match (mode, file) {
            (Mode::Off, false) => "Splicer, SPLICE off",
            (Mode::On, false) => "Splicer, SPLICE on",
            (Mode::OnKeep, false) => "Splicer, SPLICE on, zero-copy kept",
            (Mode::SpliceAlways, _) => "Splicer, ranges always spliced",
            (_, true) => "Splicer",
        };
        SplicerRow {
            mode,
            name,
            file,
            sp: None,
        }
    }
}

impl SendStrategy for SplicerRow {
    fn name(&self) -> &str {
        self.name
    }

    fn connected(&mut self, sock: &dyn Sock) -> io::Result<()> {
        let fd = sock.as_fd().try_clone_to_owned()?;
        let b = Builder::new().splice(self.mode != Mode::Off);
        let b = match self.mode {
            Mode::OnKeep => b.on_copied(OnCopied::Keep),
            Mode::SpliceAlways => b.read_file_ranges_up_to(0),
            _ => b,
        };
        self.sp = Some(b.drain_timeout(Duration::from_secs(5)).build(fd)?);
        Ok(())
    }

    fn send(&mut self, _sock: &dyn Sock, msg: &Message<'_>) -> io::Result<SyscallCount> {
        if matches!(msg.payload, Payload::File { .. }) != self.file {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this row measures the other kind of payload",
            ));
        }
        let sp = self
            .sp
            .as_mut()
            .ok_or_else(|| io::Error::other("send before connected"))?;
        let before = sp.stats().syscalls;
        let mut m = Msg::new();
        m.push(msg.header);
        match msg.payload {
            Payload::Memory(f) => {
                m.push(f.clone());
            }
            Payload::File { file, offset, len } => {
                m.push_file(file, offset, len as u64);
            }
        }
        m.push(msg.trailer);
        while !m.is_sent() {
            sp.send(&mut m)?;
        }
        Ok(SyscallCount(sp.stats().syscalls - before))
    }

    fn finish(&mut self, _sock: &dyn Sock) -> io::Result<SyscallCount> {
        let Some(sp) = self.sp.take() else {
            return Ok(SyscallCount(0));
        };
        let before = sp.stats().syscalls;
        let after = sp.close();
        if after.retired_on_close > 0 {
            return Err(io::Error::other(format!(
                "{} zero-copy sends never completed",
                after.retired_on_close
            )));
        }
        Ok(SyscallCount(after.syscalls - before))
    }
}
