//! The sans-IO core: [`Dispatcher::handle`] turns one complete record into
//! the reply to send, or says why the record was dropped.
//!
//! It knows the RPC rules (unknown program, version outside the served
//! range, denied credentials) and hands each call to its [`Program`]. It
//! holds no connection state and takes `&self`, so any number of
//! connections, threads or tasks can share one dispatcher and call it at
//! once; reply heads come from a [`FragCache`], which allocates from the
//! calling thread's own folio.

use std::net::SocketAddr;
use std::sync::Arc;

use msgsplice::FragCache;

use crate::reply::{Reply, ReplyError};
use crate::rpc::{decode_call, AcceptStat, CallError, CallHeader, Credential};

/// Who is calling: the connection's peer, as the driver accepted it, and
/// the credential of the call, validated by [`decode_call`]. A program
/// decides what the caller may do from these two, never from what the
/// arguments claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The call's credential (AUTH_NONE or a checked AUTH_SYS).
    pub cred: Credential<'a>,
}

/// One RPC program (NFS, MOUNT, ...): runs its procedures.
pub trait Program: Send + Sync {
    /// The program number.
    fn program(&self) -> u32;
    /// Lowest and highest version served.
    fn versions(&self) -> (u32, u32);
    /// Runs procedure `call.proc_num` (of a served version) for `caller`
    /// on `args` and returns the complete reply: success, `PROC_UNAVAIL` or
    /// `GARBAGE_ARGS` (see [`Reply::accepted`] and
    /// [`ReplyBuilder::accepted`](crate::reply::ReplyBuilder::accepted)).
    fn call(
        &self,
        call: &CallHeader<'_>,
        caller: &Caller<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError>;
}

/// What became of a record.
#[derive(Debug)]
pub enum Handled {
    /// Send this reply.
    Reply(Reply),
    /// The record was dropped without a reply (it names no call to answer).
    Dropped(CallError),
}

/// Routes calls to programs. Sans-IO: records in, replies out.
pub struct Dispatcher {
    programs: Vec<Arc<dyn Program>>,
    cache: FragCache,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let progs: Vec<u32> = self.programs.iter().map(|p| p.program()).collect();
        f.debug_struct("Dispatcher")
            .field("programs", &progs)
            .finish()
    }
}

impl Dispatcher {
    /// A dispatcher for `programs`, building replies from `cache`.
    pub fn new(programs: Vec<Arc<dyn Program>>, cache: FragCache) -> Dispatcher {
        Dispatcher { programs, cache }
    }

    /// The fragment cache replies are built from.
    pub fn cache(&self) -> &FragCache {
        &self.cache
    }

    /// Decodes one record, received from `peer`, and runs it.
    ///
    /// Costs: no heap allocation on this path; the reply head is a bump
    /// allocation from the cache; what the program does is its own.
    pub fn handle(&self, record: &[u8], peer: SocketAddr) -> Result<Handled, ReplyError> {
        let call = match decode_call(record) {
            Ok(c) => c,
            Err(e) => {
                return match e.rejection() {
                    Some((xid, why)) => Ok(Handled::Reply(Reply::denied(&self.cache, xid, why)?)),
                    None => Ok(Handled::Dropped(e)),
                };
            }
        };
        let h = &call.header;
        let Some(prog) = self.programs.iter().find(|p| p.program() == h.prog) else {
            let stat = AcceptStat::ProgUnavail;
            return Ok(Handled::Reply(Reply::accepted(&self.cache, h.xid, stat)?));
        };
        let (low, high) = prog.versions();
        if h.vers < low || h.vers > high {
            let stat = AcceptStat::ProgMismatch { low, high };
            return Ok(Handled::Reply(Reply::accepted(&self.cache, h.xid, stat)?));
        }
        let caller = Caller { peer, cred: h.cred };
        Ok(Handled::Reply(prog.call(
            h,
            &caller,
            call.args,
            &self.cache,
        )?))
    }
}

// The seam for drivers: one dispatcher is shared by every connection,
// whichever thread or task serves it.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Dispatcher>();
};
