//! CPU time of server processes a benchmark runs, charged to them at fine
//! resolution: of reaped children (`getrusage(2)`, microseconds), and of a
//! process still running (its CPU-time clock, nanoseconds). `/proc`'s
//! counts are clock ticks (10 ms), too coarse for short runs. rustix wraps
//! neither call, so they are made here, in the kit's only module that talks
//! to the kernel through `libc`.
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

/// CPU time (user + system, of every thread, exited ones included) of the
/// running process `pid` so far, from its CPU-time clock
/// (`clock_getcpuclockid(3)`, `clock_gettime(2)`). `None` if the process is
/// gone or its clock cannot be read.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is a writable clockid_t that the call fills on success.
    if unsafe { libc::clock_getcpuclockid(pid, &mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec that clock_gettime(2) fills on
    // success; `clock` came from the kernel just above.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    ))
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

    #[test]
    fn a_running_process_is_charged_what_it_spins() {
        let me = std::process::id();
        let before = process_cpu(me).expect("this process's CPU clock");
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0u64);
        }
        let after = process_cpu(me).expect("this process's CPU clock");
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(process_cpu(u32::MAX).is_none(), "no such process");
    }
}
