//! [`NfsStats`]: what the NFS and MOUNT programs did, for an operator.
//!
//! Costs: one or two relaxed atomic adds per call; no allocation, no
//! system call, so READ keeps its costs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// NFSv3 procedure names, by number (RFC 1813 section 3.3).
pub const NFS_PROC_NAMES: [&str; 22] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];

/// MOUNT v3 procedure names, by number (RFC 1813 appendix I).
pub const MOUNT_PROC_NAMES: [&str; 6] = ["NULL", "MNT", "DUMP", "UMNT", "UMNTALL", "EXPORT"];

/// Counters of the NFS and MOUNT programs of one server.
#[derive(Debug, Default)]
pub struct NfsStats {
    nfs_calls: [AtomicU64; 22],
    mount_calls: [AtomicU64; 6],
    errors: AtomicU64,
    read_bytes: AtomicU64,
}

/// A snapshot of [`NfsStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NfsStatsSnapshot {
    /// NFS calls by procedure number (see [`NFS_PROC_NAMES`]).
    pub nfs_calls: [u64; 22],
    /// MOUNT calls by procedure number (see [`MOUNT_PROC_NAMES`]).
    pub mount_calls: [u64; 6],
    /// Calls that failed: an NFS status other than NFS3_OK, a refused MNT,
    /// or arguments that did not decode.
    pub errors: u64,
    /// File data sent by READ replies.
    pub read_bytes: u64,
}

impl NfsStats {
    /// Counts an NFS call of procedure `proc_num` (unknown numbers are not
    /// counted by procedure).
    pub fn count_nfs(&self, proc_num: u32) {
        if let Some(c) = self.nfs_calls.get(proc_num as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a MOUNT call of procedure `proc_num`.
    pub fn count_mount(&self, proc_num: u32) {
        if let Some(c) = self.mount_calls.get(proc_num as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a failed call.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// Counts `n` bytes of file data sent by READ.
    pub fn count_read_bytes(&self, n: u64) {
        self.read_bytes.fetch_add(n, Relaxed);
    }

    /// The counters now (each read on its own).
    pub fn snapshot(&self) -> NfsStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Relaxed);
        NfsStatsSnapshot {
            nfs_calls: self.nfs_calls.each_ref().map(load),
            mount_calls: self.mount_calls.each_ref().map(load),
            errors: load(&self.errors),
            read_bytes: load(&self.read_bytes),
        }
    }
}

impl std::fmt::Display for NfsStatsSnapshot {
    /// One line: the procedures called at least once with their counts,
    /// then errors and bytes read.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nfs")?;
        for (name, n) in NFS_PROC_NAMES.iter().zip(self.nfs_calls) {
            if n > 0 {
                write!(f, " {name}={n}")?;
            }
        }
        write!(f, "; mount")?;
        for (name, n) in MOUNT_PROC_NAMES.iter().zip(self.mount_calls) {
            if n > 0 {
                write!(f, " {name}={n}")?;
            }
        }
        write!(f, "; errors={} read_bytes={}", self.errors, self.read_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_prints_what_was_called() {
        let s = NfsStats::default();
        s.count_nfs(6);
        s.count_nfs(6);
        s.count_nfs(99);
        s.count_mount(1);
        s.count_error();
        s.count_read_bytes(4096);
        let snap = s.snapshot();
        assert_eq!(snap.nfs_calls[6], 2);
        assert_eq!(
            snap.to_string(),
            "nfs READ=2; mount MNT=1; errors=1 read_bytes=4096"
        );
    }
}
