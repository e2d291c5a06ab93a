//! [`Session`]: one connection's protocol state, without the connection.
//!
//! A driver reads bytes from its socket however it likes (a blocking
//! `read` on a thread, an async read on a task) and feeds them to the
//! session, which reassembles records, runs them through the shared
//! [`Dispatcher`] and hands back what to send. Sending, timeouts and
//! closing stay with the driver.

use std::net::SocketAddr;
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
    peer: SocketAddr,
}

impl Session {
    /// A session for a new connection from `peer`, accepting records of up
    /// to `max_record` bytes. Counts the connection in `stats`. Every call
    /// of the session reaches its program with `peer` as the caller's
    /// address (see [`Caller`](super::Caller)), so the driver must give the
    /// address it accepted the connection from.
    ///
    /// Costs: no allocation until bytes arrive (the reassembly buffer grows
    /// with them, see [`RecordAssembler`]).
    pub fn new(
        dispatcher: Arc<Dispatcher>,
        stats: Arc<ServerStats>,
        max_record: usize,
        peer: SocketAddr,
    ) -> Session {
        stats.count_connection();
        Session {
            dispatcher,
            stats,
            records: RecordAssembler::new(max_record),
            peer,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
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
        Ok(Some(self.dispatcher.handle(record, self.peer)?))
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

// A session moves with its connection: to a thread, or into a task that
// an async runtime may move between threads.
const _: fn() = || {
    fn movable<T: Send>() {}
    movable::<Session>();
};

#[cfg(test)]
mod tests {
    use bytes::BufMut;
    use msgsplice::FragCache;

    use super::*;
    use crate::record::last_fragment_marker;
    use crate::reply::{Reply, ReplyBuilder, ReplyError};
    use crate::rpc::{decode_reply, put_call, AcceptStat, CallHeader, Credential, ReplyHeader};
    use crate::server::{Caller, Program};

    /// Program 7, version 1: answers with the procedure number; procedure
    /// 99 answers with the caller's port and AUTH_SYS uid instead.
    struct Echo;

    impl Program for Echo {
        fn program(&self) -> u32 {
            7
        }
        fn versions(&self) -> (u32, u32) {
            (1, 1)
        }
        fn call(
            &self,
            call: &CallHeader<'_>,
            caller: &Caller<'_>,
            _args: &[u8],
            cache: &FragCache,
        ) -> Result<Reply, ReplyError> {
            let mut b = ReplyBuilder::accepted(cache, call.xid, AcceptStat::Success, 4)?;
            let word = match (call.proc_num, caller.cred) {
                (99, Credential::Sys(s)) => (u32::from(caller.peer.port()) << 16) | s.uid,
                (n, _) => n,
            };
            b.head().put_u32(word);
            b.finish()
        }
    }

    fn session(max_record: usize) -> Session {
        let dispatcher = Dispatcher::new(vec![Arc::new(Echo)], FragCache::new());
        let peer = "127.0.0.1:999".parse().unwrap();
        Session::new(Arc::new(dispatcher), Arc::default(), max_record, peer)
    }

    /// A marked record holding a call of procedure `proc_num`.
    fn call(xid: u32, proc_num: u32) -> Vec<u8> {
        let mut body = Vec::new();
        put_call(&mut body, xid, 7, 1, proc_num, &Credential::None);
        let mut v = last_fragment_marker(body.len()).to_vec();
        v.extend_from_slice(&body);
        v
    }

    /// The xid and result word of a reply.
    fn answer(h: Handled) -> (u32, u32) {
        let Handled::Reply(r) = h else {
            panic!("dropped: {h:?}")
        };
        let (xid, hdr, res) = decode_reply(&r.head()[4..]).unwrap();
        assert_eq!(hdr, ReplyHeader::Accepted(AcceptStat::Success));
        (xid, u32::from_be_bytes(res.try_into().unwrap()))
    }

    #[test]
    fn records_cut_anywhere_come_out_whole_and_in_order() {
        let mut stream = call(1, 10);
        stream.extend(call(2, 20));
        stream.extend(call(3, 30));
        for cut in 1..stream.len() {
            let mut s = session(1024);
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                let mut input = part;
                while let Some(h) = s.receive(&mut input).unwrap() {
                    got.push(answer(h));
                }
                assert!(input.is_empty());
            }
            assert_eq!(got, [(1, 10), (2, 20), (3, 30)], "cut at {cut}");
            assert!(s.end_of_stream().is_ok());
            let stats = s.stats().snapshot();
            assert_eq!((stats.connections, stats.records), (1, 3));
        }
    }

    #[test]
    fn programs_learn_the_peer_and_the_credential() {
        let mut s = session(1024);
        let mut body = Vec::new();
        let sys = crate::rpc::AuthSys::new(b"h", 42, 7, &[1, 2]).unwrap();
        put_call(&mut body, 5, 7, 1, 99, &Credential::Sys(sys));
        let mut rec = last_fragment_marker(body.len()).to_vec();
        rec.extend_from_slice(&body);
        let mut input = &rec[..];
        let h = s.receive(&mut input).unwrap().unwrap();
        assert_eq!(s.peer().port(), 999);
        assert_eq!(answer(h), (5, (999 << 16) | 42));
    }

    #[test]
    fn a_record_that_is_not_a_call_is_dropped() {
        let mut s = session(1024);
        let mut bad = last_fragment_marker(8).to_vec();
        bad.extend_from_slice(&[0, 0, 0, 9, 0, 0, 0, 1]); // xid 9, a reply
        let mut input = &bad[..];
        let h = s.receive(&mut input).unwrap().unwrap();
        assert!(matches!(h, Handled::Dropped(_)), "{h:?}");
    }

    #[test]
    fn a_stream_that_ends_inside_a_record_is_truncated() {
        let mut s = session(1024);
        let rec = call(1, 1);
        let mut input = &rec[..rec.len() - 1];
        assert!(s.receive(&mut input).unwrap().is_none());
        assert!(!s.is_idle());
        assert!(matches!(s.end_of_stream(), Err(CloseReason::Truncated)));
    }

    #[test]
    fn an_oversize_record_closes_the_connection() {
        let mut s = session(64);
        let marker = last_fragment_marker(65);
        let mut input = &marker[..];
        assert!(matches!(s.receive(&mut input), Err(CloseReason::Record(_))));
    }
}
