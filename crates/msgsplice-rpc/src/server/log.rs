//! An [`EventSink`] that logs what an operator wants to know, one line per
//! event: connections accepted, refused and closed; mounts, refused mounts
//! and unmounts; server warnings. Never one per READ or other call.
//!
//! Lines are plain text (`LogFormat::Text`), or one JSON object each
//! (`LogFormat::Json`) for a log collector:
//!
//! ```text
//! msgsplice-rpc: 127.0.0.1:871 mounted /data
//! {"event":"mount","peer":"127.0.0.1:871","path":"/data"}
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use super::{EventSink, ServerEvent};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `msgsplice-rpc: PEER WHAT`, for people.
    #[default]
    Text,
    /// One JSON object a line, with `event` and `peer` (and `path`,
    /// `reason`, `message` where they apply).
    Json,
}

/// An event sink writing [`log_line`]s to standard error, each with one
/// `write` (lines from several connections do not interleave).
pub fn log_to_stderr_as(format: LogFormat) -> EventSink {
    Arc::new(move |ev: &ServerEvent<'_>| {
        if let Some(mut line) = log_line(ev, format) {
            line.push('\n');
            // Nowhere to report a failed log write; the server goes on.
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    })
}

/// The log line of `ev` in `format` (without a newline), or `None` for an
/// event not worth a line.
pub fn log_line(ev: &ServerEvent<'_>, format: LogFormat) -> Option<String> {
    let (event, peer, fields): (&str, Option<String>, Vec<(&str, String)>) = match ev {
        ServerEvent::Accepted { peer } => ("connect", Some(peer.to_string()), vec![]),
        ServerEvent::Ended { peer } => ("disconnect", Some(peer.to_string()), vec![]),
        ServerEvent::Closed { peer, reason } => (
            "disconnect",
            Some(peer.to_string()),
            vec![("reason", reason.to_string())],
        ),
        ServerEvent::Refused { peer } => (
            "refuse",
            Some(peer.to_string()),
            vec![("reason", "too many connections".to_owned())],
        ),
        ServerEvent::Dropped { peer, error } => (
            "drop",
            Some(peer.to_string()),
            vec![("reason", error.to_string())],
        ),
        ServerEvent::Mounted { peer, path } => (
            "mount",
            Some(peer.to_string()),
            vec![("path", String::from_utf8_lossy(path).into_owned())],
        ),
        ServerEvent::MountRefused { peer, path, why } => (
            "mount-refused",
            Some(peer.to_string()),
            vec![
                ("path", String::from_utf8_lossy(path).into_owned()),
                ("reason", (*why).to_owned()),
            ],
        ),
        ServerEvent::Unmounted { peer, path } => (
            "unmount",
            Some(peer.to_string()),
            vec![(
                "path",
                path.map_or("*".to_owned(), |p| String::from_utf8_lossy(p).into_owned()),
            )],
        ),
        ServerEvent::Warning { message } => {
            ("warning", None, vec![("message", (*message).to_owned())])
        }
    };
    Some(match format {
        LogFormat::Text => text_line(event, peer.as_deref(), &fields),
        LogFormat::Json => json_line(event, peer.as_deref(), &fields),
    })
}

fn text_line(event: &str, peer: Option<&str>, fields: &[(&str, String)]) -> String {
    let mut s = String::from("msgsplice-rpc:");
    if let Some(p) = peer {
        let _ = write!(s, " {p}");
    }
    let what = match event {
        "connect" => "connected",
        "disconnect" => "disconnected",
        "refuse" => "refused",
        "drop" => "dropped a record",
        "mount" => "mounted",
        "mount-refused" => "mount refused",
        "unmount" => "unmounted",
        other => other,
    };
    let _ = write!(s, " {what}");
    for (k, v) in fields {
        match *k {
            "path" => {
                let _ = write!(s, " {v}");
            }
            _ => {
                let _ = write!(s, ": {v}");
            }
        }
    }
    s
}

fn json_line(event: &str, peer: Option<&str>, fields: &[(&str, String)]) -> String {
    let mut s = String::from("{");
    json_pair(&mut s, "event", event);
    if let Some(p) = peer {
        s.push(',');
        json_pair(&mut s, "peer", p);
    }
    for (k, v) in fields {
        s.push(',');
        json_pair(&mut s, k, v);
    }
    s.push('}');
    s
}

/// `"key":"value"` with the value escaped as JSON requires.
fn json_pair(s: &mut String, key: &str, value: &str) {
    let _ = write!(s, "\"{key}\":\"");
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_in_both_formats() {
        let peer = "127.0.0.1:871".parse().unwrap();
        let ev = ServerEvent::Mounted {
            peer,
            path: b"/data",
        };
        assert_eq!(
            log_line(&ev, LogFormat::Text).unwrap(),
            "msgsplice-rpc: 127.0.0.1:871 mounted /data"
        );
        assert_eq!(
            log_line(&ev, LogFormat::Json).unwrap(),
            r#"{"event":"mount","peer":"127.0.0.1:871","path":"/data"}"#
        );
        let ev = ServerEvent::MountRefused {
            peer,
            path: b"/x\"y\n",
            why: "MNT3ERR_ACCES",
        };
        assert_eq!(
            log_line(&ev, LogFormat::Json).unwrap(),
            r#"{"event":"mount-refused","peer":"127.0.0.1:871","path":"/x\"y\n","reason":"MNT3ERR_ACCES"}"#
        );
        let ev = ServerEvent::Unmounted { peer, path: None };
        assert_eq!(
            log_line(&ev, LogFormat::Text).unwrap(),
            "msgsplice-rpc: 127.0.0.1:871 unmounted *"
        );
        let ev = ServerEvent::Warning { message: "m\u{1}" };
        assert_eq!(
            log_line(&ev, LogFormat::Json).unwrap(),
            r#"{"event":"warning","message":"m\u0001"}"#
        );
    }
}
