//! A drop sink: a path on which packets leave without local delivery, the
//! only place on these machines where `MSG_ZEROCOPY` can be seen to save
//! work (locally delivered data is copied and reported COPIED).
//!
//! The test kit's two hosts (`msgsplice_testkit::hosts`: namespaces
//! `NAMEa`, 10.213.0.1 / fd00:213::1, and `NAMEb`, 10.213.0.2 /
//! fd00:213::2, joined by a veth pair with permanent neighbour entries)
//! with the link in drop mode: the sending side's queue holds nothing
//! (`pfifo limit 0`), so every packet is built and dropped by the sender,
//! as a NIC would take it, and nothing is resolved or delivered. Needs
//! root and iproute2. The namespaces are removed when the [`DropSink`] is
//! dropped, and on SIGINT, SIGTERM or SIGHUP; traffic never leaves them.

use std::io;
use std::net::IpAddr;

use msgsplice_testkit::hosts::{self, Hosts, LinkMode, Side};

/// The receiving side's address of the given family (nothing listens;
/// packets never get there).
pub fn receiver(v6: bool) -> IpAddr {
    hosts::receiver(v6)
}

/// Two namespaces joined by a dropping veth pair; removed on drop.
#[derive(Debug)]
pub struct DropSink {
    hosts: Hosts,
}

impl DropSink {
    /// Creates the namespaces, or says why it cannot (not root, iproute2
    /// missing, a command failed); nothing is left behind on failure. An
    /// interrupted benchmark removes them too.
    pub fn up() -> Result<DropSink, String> {
        hosts::remove_on_signal().map_err(|e| format!("cannot watch for signals: {e}"))?;
        let hosts = Hosts::up().map_err(|e| e.to_string())?;
        hosts.set_mode(LinkMode::Drop).map_err(|e| e.to_string())?;
        Ok(DropSink { hosts })
    }

    /// Moves the calling thread into the sending namespace: sockets it
    /// creates afterwards send through the dropping link.
    pub fn enter(&self) -> io::Result<()> {
        self.hosts.enter(Side::Sender)
    }
}
