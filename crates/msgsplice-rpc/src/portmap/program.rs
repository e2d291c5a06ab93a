//! [`PortmapProgram`]: the table served by the crate's RPC server.
//!
//! Kept apart and small on purpose: it only glues [`PortmapCall`] and
//! [`Registrations::answer`] to the server's [`Program`] trait, with the
//! caller's address from the connection ([`Caller::peer`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use bytes::BufMut;
use msgsplice::FragCache;

use super::{PortmapCall, Registrations, PMAP_PROGRAM, PMAP_V2, RPCB_V4};
use crate::reply::{Reply, ReplyBuilder, ReplyError};
use crate::rpc::{AcceptStat, CallHeader};
use crate::server::{Caller, Program};

/// Portmapper versions 2 to 4 over a shared [`Registrations`] table.
///
/// Whether a caller may SET and UNSET is decided by the table from the
/// caller's address, as the connection reported it: loopback callers may,
/// others get FALSE (see [`Registrations::answer`]).
#[derive(Debug, Clone)]
pub struct PortmapProgram {
    table: Arc<Mutex<Registrations>>,
    read_only: bool,
}

impl PortmapProgram {
    /// Serves `table`; callers on a loopback address may SET and UNSET,
    /// everyone may look up and DUMP.
    pub fn new(table: Arc<Mutex<Registrations>>) -> PortmapProgram {
        PortmapProgram {
            table,
            read_only: false,
        }
    }

    /// Serves `table` to anyone; SET and UNSET always answer FALSE, even
    /// from loopback. The table is filled by the owner of `table`
    /// directly.
    pub fn read_only(table: Arc<Mutex<Registrations>>) -> PortmapProgram {
        PortmapProgram {
            table,
            read_only: true,
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
        caller: &Caller<'_>,
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
            // A read-only table takes everyone who would change it for a
            // remote caller.
            let changes = matches!(
                decoded,
                PortmapCall::SetV2(_)
                    | PortmapCall::UnsetV2(_)
                    | PortmapCall::Set(_)
                    | PortmapCall::Unset(_)
            );
            let from = match self.read_only && changes {
                true => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                false => caller.peer.ip(),
            };
            table.answer(&decoded, from, &mut results);
        }
        let mut b = ReplyBuilder::accepted(cache, call.xid, AcceptStat::Success, results.len())?;
        b.head().put_slice(&results);
        b.finish()
    }
}
