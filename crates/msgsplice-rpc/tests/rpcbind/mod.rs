//! A real `rpcbind` daemon started by a test (Debian package rpcbind),
//! killed and reaped when dropped: for the tests that register with the
//! system's portmapper or ask it through standard tools.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use msgsplice_rpc::portmap::probe;

/// A running `rpcbind` this test started.
pub struct Rpcbind(Child);

impl Drop for Rpcbind {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `rpcbind` and waits until it answers at `at` (127.0.0.1:111).
/// `Err` says why it cannot run here (not installed), for the test's skip;
/// any other failure panics. The caller has made sure port 111 is free.
pub fn start(at: SocketAddr) -> Result<Rpcbind, String> {
    // -f: stay in the foreground, so the child is the daemon; no -w, so no
    // registrations of an earlier run are loaded.
    let child = match Command::new("rpcbind")
        .arg("-f")
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => Rpcbind(c),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("rpcbind is not installed (Debian package rpcbind)".into())
        }
        Err(e) => panic!("starting rpcbind: {e}"),
    };
    // Wait until it answers; the verdict does not depend on how long.
    let start = Instant::now();
    while !probe(at).unwrap_or(false) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rpcbind never answered on {at}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}
