//! [`PortmapProgram`]: the table served by the crate's RPC server.
//!
//! Kept apart and small on purpose: it only glues [`PortmapCall`] and
//! [`Registrations::answer`] to the server's [`Program`] trait.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use bytes::BufMut;
use msgsplice::FragCache;

use super::{PortmapCall, Registrations, PMAP_PROGRAM, PMAP_V2, RPCB_V4};
use crate::reply::{Reply, ReplyBuilder, ReplyError};
use crate::rpc::{AcceptStat, CallHeader};
use crate::server::Program;

/// Portmapper versions 2 to 4 over a shared [`Registrations`] table.
///
/// The server's [`Program`] trait does not pass the caller's address, so
/// the program is told up front whom to take callers for: see
/// [`read_only`](Self::read_only) and
/// [`loopback_listener`](Self::loopback_listener).
#[derive(Debug, Clone)]
pub struct PortmapProgram {
    table: Arc<Mutex<Registrations>>,
    caller: IpAddr,
}

impl PortmapProgram {
    /// Serves `table` to anyone; SET and UNSET always answer FALSE (every
    /// caller is taken for a remote one). The table is filled by the owner
    /// of `table` directly. The right choice for a listener on a public
    /// address.
    pub fn read_only(table: Arc<Mutex<Registrations>>) -> PortmapProgram {
        PortmapProgram {
            table,
            caller: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        }
    }

    /// Serves `table` and lets callers SET and UNSET: every caller is taken
    /// for a local one. Only for a server whose listeners are all on
    /// loopback addresses, where that is true.
    pub fn loopback_listener(table: Arc<Mutex<Registrations>>) -> PortmapProgram {
        PortmapProgram {
            table,
            caller: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// The table served.
    pub fn table(&self) -> &Arc<Mutex<Registrations>> {
        &self.table
    }
}

impl Program for PortmapProgram {
    fn program(&self) -> u32 {
        PMAP_PROGRAM
    }

    fn versions(&self) -> (u32, u32) {
        (PMAP_V2, RPCB_V4)
    }

    fn call(
        &self,
        call: &CallHeader<'_>,
        args: &[u8],
        cache: &FragCache,
    ) -> Result<Reply, ReplyError> {
        let decoded = match PortmapCall::decode(call.vers, call.proc_num, args) {
            Ok(c) => c,
            Err(e) => return Reply::accepted(cache, call.xid, e.accept_stat()),
        };
        let mut results = Vec::new();
        {
            // A panic elsewhere cannot leave a row half-written: rows are
            // whole values pushed or removed in one step.
            let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
            table.answer(&decoded, self.caller, &mut results);
        }
        let mut b = ReplyBuilder::accepted(cache, call.xid, AcceptStat::Success, results.len())?;
        b.head().put_slice(&results);
        b.finish()
    }
}
