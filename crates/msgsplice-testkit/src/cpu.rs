//! CPU time of reaped child processes, for benchmarks that run a server
//! as a child and charge it the time it used.
//!
//! `getrusage(2)` is the one call that gives it at microsecond resolution
//! (`/proc/self/stat`'s `cutime` counts clock ticks); rustix does not wrap
//! it, so the call is made here, in the kit's only module that talks to the
//! kernel through `libc`.
#![allow(unsafe_code)]

use std::time::Duration;

/// CPU time (user + system) of every child process reaped so far
/// (`getrusage(RUSAGE_CHILDREN)`). The difference around reaping one
/// child is that child's CPU time. Zero if the call fails.
pub fn children_cpu() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: RUSAGE_CHILDREN is a valid `who`, and the pointer is to a
    // writable `rusage`, which getrusage(2) fills in whole on success.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, ru.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: zero-initialised (a valid `rusage`) and filled in by the kernel.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_is_charged_to_its_parent_once_reaped() {
        let before = children_cpu();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status()
            .expect("sh runs");
        assert!(status.success());
        assert!(children_cpu() > before, "the child's CPU time was counted");
    }
}
