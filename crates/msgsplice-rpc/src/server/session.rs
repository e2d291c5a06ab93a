//! [`Session`]: one connection's protocol state, without the connection.
//!
//! A driver reads bytes from its socket however it likes (a blocking
//! `read` on a thread, an async read on a task) and feeds them to the
//! session, which reassembles records, runs them through the shared
//! [`Dispatcher`] and hands back what to send. Sending, timeouts and
//! closing stay with the driver.

use std::sync::Arc;

use super::{CloseReason, Dispatcher, Handled, ServerStats};
use crate::record::RecordAssembler;

/// One connection's record reassembly and dispatch. Sans-IO: bytes in,
/// [`Handled`] records out, in the order the calls arrived.
#[derive(Debug)]
pub struct Session {
    dispatcher: Arc<Dispatcher>,
    stats: Arc<ServerStats>,
    records: RecordAssembler,
}

impl Session {
    /// A session for a new connection, accepting records of up to
    /// `max_record` bytes. Counts the connection in `stats`.
    ///
    /// Costs: no allocation until bytes arrive (the reassembly buffer grows
    /// with them, see [`RecordAssembler`]).
    pub fn new(dispatcher: Arc<Dispatcher>, stats: Arc<ServerStats>, max_record: usize) -> Session {
        stats.count_connection();
        Session {
            dispatcher,
            stats,
            records: RecordAssembler::new(max_record),
        }
    }

    /// Consumes bytes from the front of `input` until a record completes,
    /// and handles it. `None` means `input` ran out (it is then empty)
    /// before a record completed; call again with the rest of `input` for
    /// further records.
    ///
    /// An error means the connection must be closed: the stream is not
    /// valid record marking, or no reply could be built.
    ///
    /// Costs: one copy of the record into the reassembly buffer, then
    /// [`Dispatcher::handle`]'s.
    pub fn receive(&mut self, input: &mut &[u8]) -> Result<Option<Handled>, CloseReason> {
        if input.is_empty() {
            return Ok(None);
        }
        let Some(record) = self.records.push(input)? else {
            return Ok(None);
        };
        self.stats.count_record();
        Ok(Some(self.dispatcher.handle(record)?))
    }

    /// The client's byte stream ended: fine between records, a
    /// [`CloseReason::Truncated`] inside one.
    pub fn end_of_stream(&self) -> Result<(), CloseReason> {
        if self.is_idle() {
            Ok(())
        } else {
            Err(CloseReason::Truncated)
        }
    }

    /// True between records: no byte of a next record has arrived.
    pub fn is_idle(&self) -> bool {
        self.records.is_idle()
    }

    /// The counters this session adds to.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}
