//! The file-descriptor limit, raised and turned into a connection cap.

/// Descriptors kept for everything but connections (listeners, the
/// runtime's own, files the export opens).
const RESERVED_FDS: u64 = 256;

/// Descriptors a connection may hold: its socket, and the epoll instance
/// of its send engine once it has sent a reply.
const FDS_PER_CONNECTION: u64 = 2;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (one `getrlimit`,
/// one `setrlimit`; failure leaves the soft limit as it was) and returns
/// the soft limit now in force (`None`: unlimited).
pub(super) fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim = raised;
        }
    }
    lim.current
}

/// The connections to serve at once: `wanted`, capped so that connections
/// cannot take the descriptors the rest of the server needs.
pub(super) fn connection_cap(wanted: usize, nofile: Option<u64>) -> usize {
    let Some(n) = nofile else { return wanted };
    let room = n.saturating_sub(RESERVED_FDS) / FDS_PER_CONNECTION;
    wanted
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(10_000, Some(1024)), 384);
        assert_eq!(connection_cap(100, Some(1 << 20)), 100);
        assert_eq!(connection_cap(100, Some(10)), 1);
    }

    #[test]
    fn raising_never_lowers() {
        use rustix::process::{getrlimit, Resource};
        let before = getrlimit(Resource::Nofile).current;
        let now = raise_nofile();
        assert!(now.unwrap_or(u64::MAX) >= before.unwrap_or(u64::MAX));
    }
}
