//! iperf3 over loopback TCP: the throughput reference of the TCP section.
//!
//! A one-shot server (`iperf3 -s -1 -B 127.0.0.1 -p PORT`) and a client
//! (`iperf3 -c 127.0.0.1 -p PORT -t SECONDS -J`) per run; the receiver's
//! rate is read from the client's JSON report (`end.sum_received`). The
//! server is started by us and ended by its process id if it outlives the
//! client.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds per iperf3 run.
pub const SECONDS: u32 = 1;

/// Why iperf3 gave no number.
#[derive(Debug, thiserror::Error)]
pub enum IperfError {
    /// The binary is not on PATH.
    #[error("iperf3 not installed (Debian package iperf3)")]
    NotInstalled,
    /// It ran and failed.
    #[error("iperf3 failed: {0}")]
    Failed(String),
}

/// Checks that `iperf3` runs.
pub fn available() -> Result<(), IperfError> {
    match Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(_) => Err(IperfError::NotInstalled),
    }
}

/// Kills the server by its id if it is still running when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// One loopback run of `seconds`; returns 10^9 bytes per second received.
pub fn run(seconds: u32) -> Result<f64, IperfError> {
    available()?;
    let port = free_port().map_err(|e| IperfError::Failed(format!("no free port: {e}")))?;
    let port = port.to_string();
    let mut server = Server(
        Command::new("iperf3")
            .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| IperfError::Failed(format!("cannot start the server: {e}")))?,
    );
    // The server needs a moment to listen; retry the client until then.
    let deadline = Instant::now() + Duration::from_secs(5);
    let secs = seconds.to_string();
    loop {
        let out = Command::new("iperf3")
            .args(["-c", "127.0.0.1", "-p", &port, "-t", &secs, "-J"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| IperfError::Failed(format!("cannot start the client: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match parse_gbps(&text) {
            Ok(g) => return Ok(g),
            Err(e) => {
                let refused = text.contains("unable to connect") || text.trim().is_empty();
                if !refused || Instant::now() > deadline {
                    return Err(e);
                }
                if let Ok(Some(status)) = server.0.try_wait() {
                    return Err(IperfError::Failed(format!("the server exited: {status}")));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The received rate in an iperf3 client's `-J` report, in GB/s.
pub fn parse_gbps(json: &str) -> Result<f64, IperfError> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| IperfError::Failed(format!("unreadable JSON report: {e}")))?;
    if let Some(err) = v.get("error").and_then(|e| e.as_str()) {
        return Err(IperfError::Failed(err.to_string()));
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|bps| bps / 8.0 / 1e9)
        .ok_or_else(|| IperfError::Failed("no end.sum_received.bits_per_second".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_report() {
        let j = r#"{"start":{},"intervals":[],"end":{"sum_sent":{"bits_per_second":8.1e10},
                   "sum_received":{"bits_per_second":8.0e10}}}"#;
        assert_eq!(parse_gbps(j).unwrap(), 10.0);
    }

    #[test]
    fn reports_an_error() {
        let j = r#"{"start":{},"intervals":[],"end":{},"error":"unable to connect to server"}"#;
        let e = parse_gbps(j).unwrap_err();
        assert!(e.to_string().contains("unable to connect"));
        assert!(parse_gbps("not json").is_err());
    }
}
