//! io_uring: the ring, `sendmsg` submissions whose `msghdr`s the ring keeps
//! alive until their completion, and the registered-buffer table.
//!
//! Built on the `io-uring` crate, which maps the submission and completion
//! queues and orders their head and tail updates; what it leaves `unsafe`
//! (pushing an entry whose pointers the kernel reads later, updating the
//! buffer table) is wrapped here so the engine above stays safe code.
//!
//! Lifetimes: a [`Batch`] borrows the data of the sends it queues for `'a`
//! and does not end (its `Drop` waits) until the kernel has posted the send
//! completion of every entry it queued, so no borrowed byte is read after
//! the borrow ends. Zero-copy sends may still read their pages after that,
//! until their notification: the engine holds those buffers itself (the
//! send module's `Tracker`) and passes only held memory to zero-copy sends.

use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// `sqe->ioprio` flag of `SEND_ZC`/`SENDMSG_ZC`: the notification says
/// whether the kernel copied the data after all (Linux 6.2).
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// Bit of a notification's result: the kernel copied (`IORING_NOTIF_USAGE_ZC_COPIED`).
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// `cqe->flags`: another completion (the notification) follows.
const CQE_F_MORE: u32 = 1 << 1;
/// `cqe->flags`: this completion is a zero-copy notification.
const CQE_F_NOTIF: u32 = 1 << 3;
/// `io_uring_register` opcode that fills or clears slots of the buffer table.
const REGISTER_BUFFERS_UPDATE: libc::c_uint = 16;

/// Bits of `user_data` left to the engine's tag; the top 16 name the
/// `msghdr` slot of the entry.
pub(crate) const TAG_BITS: u32 = 48;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;

/// The opcodes the engine needs, from `IORING_REGISTER_PROBE`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Opcodes {
    pub(crate) sendmsg: bool,
    pub(crate) send_zc: bool,
    pub(crate) sendmsg_zc: bool,
}

/// How one `sendmsg` entry sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    /// `IORING_OP_SENDMSG`: the kernel copies.
    Copy,
    /// `IORING_OP_SENDMSG_ZC` from ordinary memory: pages pinned per send.
    ZeroCopy,
    /// `IORING_OP_SENDMSG_ZC` with `IORING_RECVSEND_FIXED_BUF`: every
    /// buffer lies in this slot of the registered table, pinned once.
    Fixed(u16),
}

/// One completion, decoded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cqe {
    /// The engine's tag given when the entry was queued.
    pub(crate) tag: u64,
    /// Bytes sent, or a negative errno (sends); 0 or a usage report
    /// (notifications).
    pub(crate) res: i32,
    /// A send completion after which a notification follows.
    pub(crate) more: bool,
    /// A zero-copy notification: the kernel is done with the pages.
    pub(crate) notif: bool,
    /// A notification saying the kernel copied the data (usage report).
    pub(crate) copied: bool,
}

/// The `msghdr` and `iovec`s of one queued entry, boxed so that their
/// addresses stay put while the kernel may read them.
struct Hdr {
    msg: libc::msghdr,
    iov: Vec<libc::iovec>,
}

/// An io_uring instance for sends.
pub(crate) struct Ring {
    ring: IoUring,
    /// `msghdr` slots, kept for reuse (boxed: the kernel holds their
    /// addresses, which must not move when the vector grows); an entry's slot is in `free` again
    /// only once its send completion is reaped.
    #[allow(clippy::vec_box)]
    hdrs: Vec<Box<Hdr>>,
    free: Vec<u16>,
    /// Entries queued or submitted whose send completion is not reaped.
    in_flight: usize,
    /// Completions reaped while a batch ended that its caller did not see.
    backlog: Vec<Cqe>,
}

// SAFETY: the raw pointers inside `hdrs` point into the boxes themselves or
// at data borrowed by a live `Batch`, which borrows the ring mutably; no
// other thread can reach them through a shared `Ring`.
unsafe impl Send for Ring {}

impl Ring {
    /// Sets up a ring of `entries` submission entries. One `io_uring_setup`
    /// and its mappings.
    ///
    /// With `IORING_SETUP_COOP_TASKRUN` (Linux 5.19) where the kernel has
    /// it: the completions the kernel posts as task work of this thread
    /// (every zero-copy notification) then wait for the thread's next
    /// return from the kernel instead of waking it out of a blocking call
    /// it sleeps in (which, with a timeout, would fail with `EINTR`; a
    /// call made while such work waits still can).
    /// `IORING_SETUP_TASKRUN_FLAG` says when such work waits, and the
    /// reaps here enter the kernel to run it.
    pub(crate) fn new(entries: u32) -> io::Result<Ring> {
        let cq = entries.saturating_mul(4);
        let ring = match IoUring::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)
        {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                IoUring::builder().setup_cqsize(cq).build(entries)?
            }
            r => r?,
        };
        Ok(Ring {
            ring,
            hdrs: Vec::new(),
            free: Vec::new(),
            in_flight: 0,
            backlog: Vec::new(),
        })
    }

    /// Which send opcodes the kernel has (`IORING_REGISTER_PROBE`, 5.6).
    pub(crate) fn opcodes(&self) -> io::Result<Opcodes> {
        let mut p = io_uring::Probe::new();
        self.ring.submitter().register_probe(&mut p)?;
        Ok(Opcodes {
            sendmsg: p.is_supported(opcode::SendMsg::CODE),
            send_zc: p.is_supported(opcode::SendZc::CODE),
            sendmsg_zc: p.is_supported(opcode::SendMsgZc::CODE),
        })
    }

    /// Registers an empty buffer table of `slots` entries (5.13).
    pub(crate) fn register_sparse(&self, slots: u32) -> io::Result<()> {
        self.ring.submitter().register_buffers_sparse(slots)
    }

    /// A second descriptor of this ring, with which any thread can update
    /// the buffer table.
    pub(crate) fn table_handle(&self) -> io::Result<TableHandle> {
        let fd = rustix::io::fcntl_dupfd_cloexec(self.ring.as_raw_fd_borrowed(), 0)?;
        Ok(TableHandle { fd })
    }

    /// Starts queueing sends of data borrowed for `'a`.
    pub(crate) fn batch<'a>(&mut self) -> Batch<'_, 'a> {
        Batch {
            ring: self,
            _data: PhantomData,
        }
    }

    /// Completions already posted (notifications, once no batch is open),
    /// without a system call; with `wait`, first waits up to that long for
    /// at least one.
    pub(crate) fn reap(&mut self, out: &mut Vec<Cqe>, wait: Option<Duration>) -> io::Result<()> {
        out.append(&mut self.backlog);
        if let Some(t) = wait.filter(|_| out.is_empty() && self.ring.completion().is_empty()) {
            let ts = types::Timespec::from(t);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
        }
        self.drain_all(out)
    }

    /// Moves every completion to `out`, also those posted by task work
    /// that waits for this thread (`IORING_SQ_TASKRUN`, see
    /// [`Ring::new`]) and those the kernel kept aside because the
    /// completion queue was full (`IORING_SQ_CQ_OVERFLOW`: a
    /// burst of notifications, when a receiver frees many sends' pages at
    /// once). The kernel hands those over only at an `io_uring_enter`
    /// with `IORING_ENTER_GETEVENTS`, so one is made while the flag is up;
    /// without it they would never arrive, and their buffers never be let
    /// go.
    fn drain_all(&mut self, out: &mut Vec<Cqe>) -> io::Result<()> {
        loop {
            self.drain_cq(out);
            let sq = self.ring.submission();
            if !sq.cq_overflow() && !sq.taskrun() {
                return Ok(());
            }
            drop(sq);
            // `submit` sets GETEVENTS itself while either flag is up, which
            // runs the waiting task work and hands over the overflow.
            match self.ring.submit() {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Moves every posted completion to `out`, freeing the `msghdr` of each
    /// send completion.
    fn drain_cq(&mut self, out: &mut Vec<Cqe>) {
        for e in self.ring.completion() {
            let ud = e.user_data();
            let flags = e.flags();
            let notif = flags & CQE_F_NOTIF != 0;
            if !notif {
                let slot = (ud >> TAG_BITS) as u16;
                self.free.push(slot);
                self.in_flight -= 1;
            }
            out.push(Cqe {
                tag: ud & TAG_MASK,
                res: e.result(),
                more: flags & CQE_F_MORE != 0,
                notif,
                copied: notif && (e.result() as u32) & NOTIF_USAGE_ZC_COPIED != 0,
            });
        }
    }
}

trait RawFdBorrow {
    fn as_raw_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl RawFdBorrow for IoUring {
    fn as_raw_fd_borrowed(&self) -> BorrowedFd<'_> {
        // SAFETY: the ring's descriptor is open for as long as the ring,
        // which the returned borrow cannot outlive.
        unsafe { BorrowedFd::borrow_raw(self.as_raw_fd()) }
    }
}

/// Sends queued on a [`Ring`], borrowing their data for `'a`.
pub(crate) struct Batch<'r, 'a> {
    ring: &'r mut Ring,
    _data: PhantomData<&'a [u8]>,
}

impl<'a> Batch<'_, 'a> {
    /// Queues one `sendmsg` of `bufs` on `fd` with `flags`, sent as `how`
    /// says; `link` chains it to the next entry queued (the next one starts
    /// only if this one sent everything). `tag` (below 2^48) comes back in
    /// its completions. Submits what is queued first if the queue is full.
    pub(crate) fn push(
        &mut self,
        fd: BorrowedFd<'a>,
        bufs: impl Iterator<Item = &'a [u8]>,
        flags: i32,
        how: How,
        link: bool,
        tag: u64,
    ) -> io::Result<()> {
        debug_assert!(tag <= TAG_MASK);
        let ring = &mut *self.ring;
        let slot = match ring.free.pop() {
            Some(s) => s,
            None => {
                if ring.hdrs.len() > u16::MAX as usize {
                    return Err(io::Error::other("too many sends in flight on one ring"));
                }
                ring.hdrs.push(Box::new(Hdr {
                    // SAFETY: msghdr is plain data; all-zero is an empty header.
                    msg: unsafe { std::mem::zeroed() },
                    iov: Vec::new(),
                }));
                (ring.hdrs.len() - 1) as u16
            }
        };
        let h = &mut *ring.hdrs[slot as usize];
        h.iov.clear();
        h.iov.extend(bufs.map(|b| libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }));
        h.msg.msg_iov = h.iov.as_mut_ptr();
        h.msg.msg_iovlen = h.iov.len();
        let msg: *const libc::msghdr = &h.msg;
        let fd = types::Fd(fd.as_raw_fd());
        let entry = match how {
            How::Copy => opcode::SendMsg::new(fd, msg).flags(flags as u32).build(),
            How::ZeroCopy | How::Fixed(_) => {
                let mut op = opcode::SendMsgZc::new(fd, msg)
                    .flags(flags as u32)
                    .ioprio(SEND_ZC_REPORT_USAGE);
                if let How::Fixed(b) = how {
                    op = op.buf_index(Some(b));
                }
                op.build()
            }
        };
        let entry = entry
            .user_data((u64::from(slot) << TAG_BITS) | tag)
            .flags(if link {
                squeue::Flags::IO_LINK
            } else {
                squeue::Flags::empty()
            });
        if ring.ring.submission().is_full() {
            ring.ring.submit()?;
        }
        // SAFETY: the entry points at `hdrs[slot]` (boxed: its address is
        // stable, and the slot is not reused until its send completion is
        // reaped in `drain_cq`), whose iovecs point at data borrowed for
        // `'a`; this batch lives no longer than `'a` and its `Drop` waits
        // for every send completion, so the kernel reads only live memory.
        // `fd` is borrowed for `'a` as well.
        unsafe { ring.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("the submission queue is full"))?;
        ring.in_flight += 1;
        Ok(())
    }

    /// Makes room for `n` entries in the submission queue, submitting what
    /// is queued if need be, so that a chain of `n` linked entries goes to
    /// the kernel in one submission (a link does not span two: the second
    /// part would run on its own, unordered). Fails if the queue is
    /// smaller than `n`.
    pub(crate) fn make_room(&mut self, n: usize) -> io::Result<()> {
        let ring = &mut self.ring.ring;
        if n > ring.params().sq_entries() as usize {
            return Err(io::Error::other("a chain longer than the submission queue"));
        }
        let free = {
            let sq = ring.submission();
            sq.capacity() - sq.len()
        };
        if free < n {
            ring.submit()?;
        }
        Ok(())
    }

    /// Entries queued whose send completion is not reaped yet.
    pub(crate) fn in_flight(&self) -> usize {
        self.ring.in_flight
    }

    /// Submits what is queued and, unless a completion is already there
    /// that the caller has not seen, waits until one is posted (one
    /// `io_uring_enter` for every socket's entries); then moves every
    /// posted completion to `out`. Completions the caller already holds in
    /// `out` do not count: each call brings at least one new completion
    /// (or the error), so a caller looping until its entries are in never
    /// spins.
    pub(crate) fn submit_and_reap(&mut self, out: &mut Vec<Cqe>) -> io::Result<()> {
        let from_backlog = !self.ring.backlog.is_empty();
        out.append(&mut self.ring.backlog);
        let (queued, overflow) = {
            let sq = self.ring.ring.submission();
            (!sq.is_empty(), sq.cq_overflow())
        };
        let nothing_new = !from_backlog && self.ring.ring.completion().is_empty();
        if queued || overflow || nothing_new {
            let want = usize::from(nothing_new);
            loop {
                match self.ring.ring.submit_and_wait(want) {
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    r => break r.map(drop)?,
                }
            }
        }
        self.ring.drain_all(out)
    }
}

impl Drop for Batch<'_, '_> {
    fn drop(&mut self) {
        // The kernel may read borrowed data until each send completion:
        // wait for them all, keeping every completion for the caller.
        let mut out = Vec::new();
        while self.ring.in_flight > 0 {
            if self.ring.ring.submit_and_wait(1).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            self.ring.drain_cq(&mut out);
        }
        self.ring
            .backlog
            .extend(out.into_iter().filter(|c| c.notif));
    }
}

/// The layout of `struct io_uring_rsrc_update2`.
#[repr(C)]
struct RsrcUpdate2 {
    offset: u32,
    resv: u32,
    data: u64,
    tags: u64,
    nr: u32,
    resv2: u32,
}

/// A descriptor of a ring, used only to fill and clear slots of its
/// registered-buffer table (from whichever thread maps or unmaps a folio).
pub(crate) struct TableHandle {
    fd: OwnedFd,
}

impl TableHandle {
    /// Points slot `slot` at `len` bytes from `base` (the kernel pins the
    /// pages now, charged to `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`), or
    /// clears it with `None` (the kernel unpins them once no request uses
    /// them). One `io_uring_register`.
    pub(crate) fn set(&self, slot: u32, buf: Option<(*const u8, usize)>) -> io::Result<()> {
        let (base, len) = buf.unwrap_or((std::ptr::null(), 0));
        let iov = libc::iovec {
            iov_base: base as *mut libc::c_void,
            iov_len: len,
        };
        let up = RsrcUpdate2 {
            offset: slot,
            resv: 0,
            data: &iov as *const libc::iovec as u64,
            tags: 0,
            nr: 1,
            resv2: 0,
        };
        // SAFETY: `up` and `iov` are valid for the call, which copies them.
        // The kernel pins the pages of `base..base+len` at once (and fails
        // if they are not mapped), so the table never refers to memory by
        // address after this call: unmapping the range later leaves the
        // pinned pages to the table, never a dangling pointer.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.fd.as_fd().as_raw_fd(),
                REGISTER_BUFFERS_UPDATE,
                &up as *const RsrcUpdate2,
                std::mem::size_of::<RsrcUpdate2>() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}
