//! [`UringSplicer`]: sends [`Msg`]s over one or more sockets through one
//! io_uring, in rounds: every message with bytes left queues its next run
//! (a chain of entries), one `io_uring_enter` submits the round for all
//! sockets, and the completions move each message's cursor.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::plan::Plan;
use super::table::FolioTable;
use super::{UringBuilder, UringError, UringProbe, UringStats};
use crate::frag::FragCache;
use crate::msg::{Msg, Segment};
use crate::send::udp::Udp;
use crate::send::{file, SendError, SendStats, SocketKind, Stop};
use crate::sys::sendmsg::{MSG_MORE, MSG_NOSIGNAL};
use crate::sys::uring::{Batch, Cqe, Ring};

/// Names one socket of a [`UringSplicer`]; the socket it was built with
/// is [`ConnId::FIRST`], those added with [`UringSplicer::add`] follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId(pub(crate) usize);

impl ConnId {
    /// The socket the splicer was built with.
    pub const FIRST: ConnId = ConnId(0);
}

/// Sockets a splicer drives at most (15 bits of each entry's tag).
const MAX_CONNS: usize = 1 << 15;
/// A socket with no message in the round yet.
const FREE: u32 = u32::MAX;
/// A socket whose message was looked at this round but queued nothing
/// (it finished or failed): a later message for it waits for the next.
const TAKEN: u32 = u32::MAX - 1;
/// The tag bit of zero-copy entries, whose low 32 bits are a tracker id.
const TAG_ZC: u64 = 1 << 47;

/// Sends [`Msg`]s through io_uring, with the meaning of a
/// [`Splicer`](crate::Splicer): the same segments, the same SPLICE hint
/// and policy ([`Builder`](crate::send::Builder)), the same bytes on the
/// wire, the same [`SendStats`]. Spliceable runs over the threshold go by
/// `IORING_OP_SENDMSG_ZC` (from registered folios when the frag cache is
/// bound, see [`UringBuilder::bind_cache`]), the rest by
/// `IORING_OP_SENDMSG`; file ranges go by `sendfile`, synchronously, in
/// their place in the message. Buffers of zero-copy sends are held until
/// the kernel's notification.
///
/// One splicer can drive many sockets ([`add`](UringSplicer::add)) and send
/// a message on each of them with one system call
/// ([`send_many`](UringSplicer::send_many)).
///
/// Costs per [`send`](UringSplicer::send) of a memory-only message: one
/// `io_uring_enter` (two if the completion is not posted at once), no
/// system call for notifications (they are read from the ring). A socket's
/// counters count one system call per round its message took part in (the
/// round's `io_uring_enter`, shared by every socket in it), plus `sendfile`
/// and `fstat` calls; [`UringStats::enters`] counts the enters themselves.
///
/// As with a blocking `sendmsg`, a send on a blocking socket whose peer
/// never reads does not return: the splicer waits for the kernel's
/// completion of every entry it queued before the borrowed data may go.
///
/// The kernel posts a zero-copy notification as task work of the thread
/// that submitted the send. The ring is set up so that this work does not
/// wake the thread out of a blocking call (`IORING_SETUP_COOP_TASKRUN`,
/// where the kernel has it), but a blocking call the thread starts while
/// such work waits returns `EINTR` where it is not restarted (a `recv`
/// with a receive timeout, for one). Retry on
/// [`ErrorKind::Interrupted`](std::io::ErrorKind::Interrupted), as
/// `read_exact` and `write_all` do.
pub struct UringSplicer<S: AsFd> {
    ring: Ring,
    socks: Vec<S>,
    conns: Vec<Conn>,
    cache: FragCache,
    table: Option<Arc<FolioTable>>,
    probe: UringProbe,
    builder: UringBuilder,
    stats: UringStats,
    cqes: Vec<Cqe>,
    /// Reused from round to round, so that a warm splicer sends with no
    /// heap allocation: the plans (each round uses the first few), and
    /// per socket, whether it has a run in the round and which plan
    /// ([`FREE`], [`TAKEN`] or the plan's index).
    plans: Vec<Plan>,
    busy: Vec<u32>,
}

/// One message of a [`UringSplicer::send_many`] call, and how it went.
struct Job<'j, 'm> {
    conn: usize,
    msg: &'j mut Msg<'m>,
    progress: u64,
    result: Option<Result<u64, SendError>>,
    /// An empty message on a datagram or seqpacket socket is one empty
    /// datagram, as with the Splicer: whether it went.
    empty_sent: bool,
}

impl<'j, 'm> Job<'j, 'm> {
    /// A job for message `msg` on socket `id`, failed at once if `id` is
    /// not one of the splicer's `conns` sockets.
    fn new(id: ConnId, msg: &'j mut Msg<'m>, conns: usize) -> Job<'j, 'm> {
        let bad = id.0 >= conns;
        Job {
            conn: id.0,
            msg,
            progress: 0,
            result: bad.then(|| Err(SendError::Io(io::Error::other("no such ConnId")))),
            empty_sent: false,
        }
    }
}

impl<S: AsFd> UringSplicer<S> {
    /// A splicer over `sock` with the default settings; probes the kernel
    /// first. On [`UringError::Unsupported`] use a
    /// [`Splicer`](crate::Splicer) instead (or let
    /// [`Engine::best`](super::Engine::best) choose).
    pub fn new(sock: S) -> Result<UringSplicer<S>, UringError> {
        UringBuilder::new().build(sock)
    }

    pub(crate) fn from_parts(
        ring: Ring,
        probe: UringProbe,
        builder: UringBuilder,
        table: Option<Arc<FolioTable>>,
        cache: FragCache,
    ) -> UringSplicer<S> {
        // A completion queue's worth (the kernel makes it twice the
        // submission queue), so reading completions does not grow it.
        let cqes = Vec::with_capacity(2 * builder.entries as usize);
        UringSplicer {
            ring,
            socks: Vec::new(),
            conns: Vec::new(),
            cache,
            table,
            probe,
            builder,
            stats: UringStats::default(),
            cqes,
            plans: Vec::new(),
            busy: Vec::new(),
        }
    }

    /// Adds a socket (connected; UDP must be connected too). Finds its kind
    /// (two or three `getsockopt` calls) and whether it is non-blocking
    /// (one `fcntl`): io_uring waits for room in a socket's buffer by
    /// itself, so a socket that is non-blocking now has its sends made with
    /// `MSG_DONTWAIT`, and [`send_on`](UringSplicer::send_on) then returns
    /// early as the Splicer's does. Changing `O_NONBLOCK` later is not
    /// seen; see [`set_nonblocking`](UringSplicer::set_nonblocking).
    pub fn add(&mut self, sock: S) -> Result<ConnId, SendError> {
        if self.conns.len() >= MAX_CONNS {
            return Err(SendError::Io(io::Error::other(
                "a UringSplicer drives at most 32768 sockets",
            )));
        }
        let kind = SocketKind::of(sock.as_fd())?;
        let udp = self.udp_of(sock.as_fd(), kind)?;
        let policy = self.builder.send.policy.clone();
        let dontwait = rustix::fs::fcntl_getfl(sock.as_fd())
            .is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
        self.conns.push(Conn::new(kind, policy, udp, dontwait));
        self.socks.push(sock);
        Ok(ConnId(self.conns.len() - 1))
    }

    /// A UDP socket's family and GSO segment size. The ring's sends carry
    /// no control message, so a segment size from the policy
    /// ([`Builder::gso_segment`](crate::send::Builder::gso_segment)) is set
    /// on the socket itself (`setsockopt(UDP_SEGMENT)`), where the kernel
    /// applies it to every send; without one, the socket's own is used.
    fn udp_of(&self, fd: BorrowedFd<'_>, kind: SocketKind) -> Result<Option<Udp>, SendError> {
        let want = self.builder.send.gso_segment;
        if kind != SocketKind::Udp {
            return match want {
                Some(_) => Err(SendError::UdpOnly { what: "GSO" }),
                None => Ok(None),
            };
        }
        let udp = Udp::of(fd, want)?;
        // The Splicer falls back to a control message on every send where
        // the kernel refuses the socket option; the ring cannot: report
        // the kernel's refusal.
        if let Some(g) = udp.cmsg() {
            crate::sys::udp::set_udp_segment(fd, g).map_err(SendError::Io)?;
            return Ok(Some(Udp::of(fd, want)?));
        }
        Ok(Some(udp))
    }

    /// What the probe found when this splicer was built.
    pub fn probe(&self) -> &UringProbe {
        &self.probe
    }

    /// The socket `id`.
    pub fn get_ref(&self, id: ConnId) -> Option<&S> {
        self.socks.get(id.0)
    }

    /// The counters of socket `id` (as a [`Splicer`](crate::Splicer) keeps
    /// them).
    pub fn stats(&self, id: ConnId) -> SendStats {
        self.conns.get(id.0).map(Conn::stats).unwrap_or_default()
    }

    /// The ring's own counters.
    pub fn uring_stats(&self) -> UringStats {
        let mut s = self.stats;
        s.fixed_sends = self.conns.iter().map(|c| c.fixed_sends).sum();
        if let Some(t) = &self.table {
            s.folios_registered = t.registered.load(Ordering::Relaxed);
            s.folios_not_registered = t.refused.load(Ordering::Relaxed);
            s.folios_registered_now = t.live() as u64;
        }
        s
    }

    /// Zero-copy sends, over all sockets, whose buffers are still held.
    pub fn in_flight(&self) -> usize {
        self.conns.iter().map(|c| c.zc.tracker.pending()).sum()
    }

    /// Whether sends on socket `id` return when its buffer is full
    /// (`MSG_DONTWAIT`) instead of waiting. Does not change the socket.
    pub fn set_nonblocking(&mut self, id: ConnId, on: bool) {
        if let Some(c) = self.conns.get_mut(id.0) {
            c.dontwait = on;
        }
    }

    /// Turns the SPLICE hint on or off for socket `id`'s following sends.
    pub fn set_splice(&mut self, id: ConnId, on: bool) {
        if let Some(c) = self.conns.get_mut(id.0) {
            c.policy.splice = on;
        }
    }

    /// Sends `msg` on the first socket; see [`send_on`](UringSplicer::send_on).
    pub fn send(&mut self, msg: &mut Msg<'_>) -> Result<u64, SendError> {
        self.send_on(ConnId::FIRST, msg)
    }

    /// Sends `msg` from its cursor on socket `id`, as
    /// [`Splicer::send`](crate::Splicer::send) does: on a blocking socket
    /// the whole rest; a short send resumes at the exact byte.
    pub fn send_on(&mut self, id: ConnId, msg: &mut Msg<'_>) -> Result<u64, SendError> {
        let mut jobs = [Job::new(id, msg, self.conns.len())];
        self.drive(&mut jobs);
        let [j] = jobs;
        j.result.unwrap_or(Ok(0))
    }

    /// Sends every message on its socket, all in the same rounds: each
    /// round queues the next run of every message (in order per socket: a
    /// second message for the same socket starts after the first is sent)
    /// and submits them with one `io_uring_enter`. Returns one result per
    /// message, in order, with the meaning of [`send_on`](UringSplicer::send_on).
    pub fn send_many(
        &mut self,
        msgs: &mut [(ConnId, &mut Msg<'_>)],
    ) -> Vec<Result<u64, SendError>> {
        let n = self.conns.len();
        let mut jobs: Vec<Job<'_, '_>> = msgs
            .iter_mut()
            .map(|(id, msg)| Job::new(*id, msg, n))
            .collect();
        self.drive(&mut jobs);
        jobs.into_iter()
            .map(|j| j.result.unwrap_or(Ok(0)))
            .collect()
    }

    /// Runs rounds until every job has its result.
    fn drive(&mut self, jobs: &mut [Job<'_, '_>]) {
        for j in jobs.iter_mut() {
            if j.result.is_none() && j.msg.is_sent() && j.msg.sent() > 0 {
                j.result = Some(Ok(0));
            }
            if j.result.is_none() {
                j.result = self.check_start(j.conn, j.msg).err().map(Err);
            }
        }
        while jobs.iter().any(|j| j.result.is_none()) {
            if let Err(e) = self.round(jobs) {
                for j in jobs.iter_mut().filter(|j| j.result.is_none()) {
                    j.result = Some(Err(SendError::Io(io::Error::new(e.kind(), e.to_string()))));
                }
            }
        }
    }

    /// Checks made before a message's first byte, as the Splicer makes
    /// them: no file range on a record socket, a UDP datagram's size; small
    /// file ranges read into fragments by the same policy
    /// ([`Builder::read_file_ranges_up_to`](crate::send::Builder::read_file_ranges_up_to)),
    /// the others checked against their files.
    fn check_start(&mut self, conn: usize, msg: &mut Msg<'_>) -> Result<(), SendError> {
        if msg.sent() > 0 {
            return Ok(());
        }
        let c = &mut self.conns[conn];
        if c.kind.is_record() && msg.has_file() {
            return Err(SendError::FileOnRecordSocket);
        }
        if let Some(u) = c.udp {
            u.check_connected(msg.len())?;
        }
        file::prepare_ranges(msg, &c.policy, &self.cache, &mut c.stats)
    }

    /// One round: file ranges at the cursors go by `sendfile` first; then
    /// the next memory run of every active message is queued and the round
    /// submitted; then the completions are applied.
    fn round(&mut self, jobs: &mut [Job<'_, '_>]) -> io::Result<()> {
        // The first `used` plans are this round's; they are filled and
        // cleared in place (a plan is a few hundred bytes: not moved).
        let mut plans = std::mem::take(&mut self.plans);
        let mut used = 0;
        let mut busy = std::mem::take(&mut self.busy);
        busy.clear();
        busy.resize(self.conns.len(), FREE);
        for (i, j) in jobs.iter_mut().enumerate() {
            if j.result.is_some() || busy[j.conn] != FREE {
                continue;
            }
            busy[j.conn] = TAKEN;
            if used == plans.len() {
                plans.push(Plan::empty());
            }
            if self.prepare(i, j, &mut plans[used]) {
                busy[j.conn] = used as u32;
                used += 1;
            }
        }
        let mut r = Ok(());
        if used > 0 {
            let round = &mut plans[..used];
            r = self.submit(jobs, round, &busy);
            for p in round.iter() {
                self.apply(&mut jobs[p.job], p);
            }
            self.apply_notifications();
            for p in round.iter_mut() {
                p.clear();
            }
        }
        self.plans = plans;
        self.busy = busy;
        r
    }

    /// Brings a job to its next memory run: finishes it if sent, sends the
    /// file ranges at its cursor. Fills `plan` with its next run and
    /// returns true, or false when the job finished or failed.
    fn prepare(&mut self, i: usize, j: &mut Job<'_, '_>, plan: &mut Plan) -> bool {
        let record = self.conns[j.conn].kind.is_record();
        loop {
            j.msg.advance(0);
            if record && j.msg.is_empty() && !j.empty_sent {
                j.empty_sent = true;
                plan.fill_empty(i, j.conn, self.conns[j.conn].zc.tracker.next_id());
                return true;
            }
            if j.msg.is_sent() {
                self.conns[j.conn].stats.messages += 1;
                j.result = Some(Ok(j.progress));
                return false;
            }
            let (seg, off) = j.msg.cursor();
            let Segment::File(r) = &j.msg.segments()[seg] else {
                break;
            };
            let c = &mut self.conns[j.conn];
            c.stats.syscalls += 1;
            match file::send_part(self.socks[j.conn].as_fd(), r, off, u64::MAX) {
                Ok(n) => {
                    c.stats.bytes_spliced += n as u64;
                    j.msg.advance(n as u64);
                    j.progress += n as u64;
                }
                Err(Stop::Os(e)) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(Stop::Os(e)) => {
                    j.result = Some(self.stopped(j, e.raw_os_error().unwrap_or(libc::EIO)));
                    return false;
                }
                Err(Stop::Typed(e)) => {
                    j.result = Some(Err(e));
                    return false;
                }
            }
        }
        let (seg, off) = j.msg.cursor();
        let table = self.table.clone();
        let fixed = self.probe.fixed_sendmsg_zc;
        let slot_of = move |d: &[u8]| -> Option<u16> {
            table
                .as_ref()
                .filter(|_| fixed)?
                .slot_of(d.as_ptr(), d.len())
        };
        plan.fill(
            i,
            self.socks[j.conn].as_fd(),
            &mut self.conns[j.conn],
            j.conn,
            j.msg.segments(),
            seg,
            off,
            j.msg.remaining(),
            &self.cache,
            &slot_of,
        );
        true
    }

    /// Queues every plan's entries and submits them together; returns once
    /// every send completion is in (notifications may come later).
    fn submit(
        &mut self,
        jobs: &[Job<'_, '_>],
        plans: &mut [Plan],
        plan_of: &[u32],
    ) -> io::Result<()> {
        self.cqes.retain(|c| c.notif);
        let mut batch = self.ring.batch();
        let mut r = Ok(());
        for p in plans.iter() {
            let segs = jobs[p.job].msg.segments();
            let conn = &self.conns[p.conn];
            r = queue_plan(&mut batch, self.socks[p.conn].as_fd(), conn, p, segs);
            if r.is_err() {
                break;
            }
        }
        while r.is_ok() && batch.in_flight() > 0 {
            self.stats.enters += 1;
            r = batch.submit_and_reap(&mut self.cqes);
        }
        // On an error the batch still waits for every entry queued, and
        // keeps their completions: each zero-copy entry that went must be
        // held until its notification.
        drop(batch);
        self.ring.reap(&mut self.cqes, None)?;
        for c in self.cqes.iter().filter(|c| !c.notif) {
            let conn = ((c.tag >> 32) & 0x7fff) as usize;
            let Some(p) = plan_of.get(conn).and_then(|&k| plans.get_mut(k as usize)) else {
                continue;
            };
            let k = if c.tag & TAG_ZC != 0 {
                (c.tag as u32).wrapping_sub(p.first_id) as usize
            } else {
                0
            };
            if let Some(slot) = p.results.get_mut(k) {
                *slot = Some((c.res, c.more));
            }
        }
        r
    }

    /// Applies a plan's completions to its job: holds what zero-copy
    /// entries sent, moves the cursor, decides whether the job goes on.
    fn apply(&mut self, j: &mut Job<'_, '_>, p: &Plan) {
        let (sent, err) = p.outcome();
        let c = &mut self.conns[p.conn];
        c.stats.syscalls += 1;
        p.settle(c, j.msg.segments(), sent);
        j.msg.advance(sent);
        j.progress += sent;
        match err {
            None | Some(libc::EINTR) => {}
            Some(e) => j.result = Some(self.stopped(j, e)),
        }
    }

    /// The result of a job stopped by `errno`: what went so far when the
    /// socket is merely full, else the error, typed.
    fn stopped(&self, j: &Job<'_, '_>, errno: i32) -> Result<u64, SendError> {
        if errno == libc::EAGAIN && j.progress > 0 {
            return Ok(j.progress);
        }
        Err(SendError::from_os(
            io::Error::from_raw_os_error(errno),
            j.msg.len(),
        ))
    }

    /// Releases the buffers of every notification reaped so far.
    fn apply_notifications(&mut self) {
        for c in self.cqes.drain(..).filter(|c| c.notif) {
            let conn = ((c.tag >> 32) & 0x7fff) as usize;
            if let Some(k) = self.conns.get_mut(conn) {
                k.notified(c.tag as u32, c.copied);
            }
        }
    }

    /// Reads the notifications already posted, without a system call, and
    /// releases the buffers of the sends they complete. Sends do this by
    /// themselves; call it when idle to let folios be recycled sooner.
    pub fn reap(&mut self) -> io::Result<()> {
        self.ring.reap(&mut self.cqes, None)?;
        self.apply_notifications();
        Ok(())
    }

    /// Waits up to `timeout` until no zero-copy send is in flight. Returns
    /// true if none is left.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap()?;
            if self.in_flight() == 0 {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.stats.enters += 1;
            self.ring.reap(&mut self.cqes, Some(left))?;
            self.apply_notifications();
        }
    }

    /// Waits up to the drain timeout ([`Builder::drain_timeout`](crate::send::Builder::drain_timeout))
    /// for sends in flight, then retires what is left: fragments' folios
    /// are unmapped when free, never reused; `Bytes` are leaked. Returns
    /// the counters of every socket, in [`ConnId`] order. Dropping the
    /// splicer does the same.
    pub fn close(mut self) -> Vec<SendStats> {
        self.finish();
        self.conns.iter().map(Conn::stats).collect()
    }

    fn finish(&mut self) {
        let timeout = self.builder.send.policy.drain_timeout;
        let _ = self.wait(timeout);
        for c in &mut self.conns {
            let (retired, leaked) = c.zc.tracker.abandon();
            c.stats.retired_on_close += retired;
            c.stats.leaked_on_close += leaked;
        }
    }
}

/// Queues the entries of plan `p` (a chain when there are several) for
/// socket `fd`.
fn queue_plan<'a>(
    batch: &mut Batch<'_, 'a>,
    fd: BorrowedFd<'a>,
    conn: &Conn,
    p: &'a Plan,
    segs: &'a [Segment<'a>],
) -> io::Result<()> {
    let stream = !conn.kind.is_record();
    let dontwait = if conn.dontwait { libc::MSG_DONTWAIT } else { 0 };
    let mut parts = p.parts(segs);
    let last = p.entries.len() - 1;
    batch.make_room(p.entries.len())?;
    for (k, e) in p.entries.iter().enumerate() {
        let more = stream && (k < last || p.more);
        let flags = MSG_NOSIGNAL
            | dontwait
            | if more { MSG_MORE } else { 0 }
            | if k < last { libc::MSG_WAITALL } else { 0 };
        let tag = if p.zc {
            TAG_ZC | (p.conn as u64) << 32 | u64::from(p.first_id.wrapping_add(k as u32))
        } else {
            (p.conn as u64) << 32
        };
        let bufs = parts.by_ref().take(e.parts).map(|x| x.bytes());
        batch.push(fd, bufs, flags, e.how, k < last, tag)?;
    }
    Ok(())
}

impl<S: AsFd> Drop for UringSplicer<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<S: AsFd> std::fmt::Debug for UringSplicer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringSplicer")
            .field("sockets", &self.conns.len())
            .field("stats", &self.uring_stats())
            .finish()
    }
}
