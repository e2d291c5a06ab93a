//! Two long-lived threads that run a pair of jobs side by side: the
//! producer and the consumer of the cross-thread allocator benchmark.
//!
//! The threads live for a whole section instead of one run, as a server's
//! threads do: the fragment cache keeps one bucket per thread, and glibc
//! gives each new thread an arena, so fresh threads in every run would
//! measure thread start-up states rather than the steady state.
//!
//! When the process may run on two CPUs or more, the threads are pinned to
//! two different CPUs, so that "allocated on one thread, freed on another"
//! always means another CPU too. Unpinned, a busy machine sometimes runs
//! both on one CPU in turns, and the hand-off then costs what a same-CPU
//! free costs (measured here: glibc's cross-thread cycle swung between
//! about 70 and 380 ns from run to run).

use std::sync::mpsc::{channel, Sender};
use std::thread::Scope;

use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};

type Job<'env> = Box<dyn FnOnce() + Send + 'env>;

/// The two threads; they end when this is dropped (and the scope that
/// spawned them joins them).
pub struct ThreadPair<'env> {
    first: Sender<Job<'env>>,
    second: Sender<Job<'env>>,
    pinned: Option<(usize, usize)>,
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    }
}

impl<'env> ThreadPair<'env> {
    /// Starts two threads in `scope`, pinned to two different CPUs if the
    /// process may use two.
    pub fn spawn<'scope>(scope: &'scope Scope<'scope, 'env>) -> ThreadPair<'env> {
        let cpus = allowed_cpus();
        let want = (cpus.len() >= 2).then(|| (cpus[0], cpus[1]));
        let start = |cpu: Option<usize>| {
            let (tx, rx) = channel::<Job<'env>>();
            let (ptx, prx) = channel();
            scope.spawn(move || {
                let pinned = cpu.is_some_and(|c| {
                    let mut set = CpuSet::new();
                    set.set(c);
                    sched_setaffinity(None, &set).is_ok()
                });
                let _ = ptx.send(pinned);
                for job in rx {
                    job();
                }
            });
            (tx, prx.recv().unwrap_or(false))
        };
        let (first, p1) = start(want.map(|w| w.0));
        let (second, p2) = start(want.map(|w| w.1));
        ThreadPair {
            first,
            second,
            pinned: want.filter(|_| p1 && p2),
        }
    }

    /// The CPUs of the first and the second thread, if both are pinned.
    pub fn pinned(&self) -> Option<(usize, usize)> {
        self.pinned
    }

    /// Runs `a` on the first thread and `b` on the second, concurrently,
    /// and returns both results.
    ///
    /// # Panics
    /// If a job panics (its thread is gone; the scope re-raises the panic).
    pub fn run<A, B>(
        &self,
        a: impl FnOnce() -> A + Send + 'env,
        b: impl FnOnce() -> B + Send + 'env,
    ) -> (A, B)
    where
        A: Send + 'env,
        B: Send + 'env,
    {
        let (ta, ra) = channel();
        let (tb, rb) = channel();
        let sent_a = self.first.send(Box::new(move || {
            let _ = ta.send(a());
        }));
        let sent_b = self.second.send(Box::new(move || {
            let _ = tb.send(b());
        }));
        assert!(
            sent_a.is_ok() && sent_b.is_ok(),
            "a benchmark thread died earlier"
        );
        let a = ra.recv().expect("the first job panicked");
        let b = rb.recv().expect("the second job panicked");
        (a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_two_distinct_long_lived_threads() {
        std::thread::scope(|s| {
            let pair = ThreadPair::spawn(s);
            let id = || std::thread::current().id();
            let (a1, b1) = pair.run(id, id);
            let (a2, b2) = pair.run(id, id);
            assert_ne!(a1, b1);
            assert_eq!((a1, b1), (a2, b2));
            assert_ne!(a1, std::thread::current().id());
        });
    }

    #[test]
    fn threads_are_pinned_to_two_cpus_when_there_are_two() {
        std::thread::scope(|s| {
            let pair = ThreadPair::spawn(s);
            let Some((c1, c2)) = pair.pinned() else {
                assert!(allowed_cpus().len() < 2, "two CPUs but not pinned");
                return;
            };
            assert_ne!(c1, c2);
            let cpu = rustix::thread::sched_getcpu;
            assert_eq!(pair.run(cpu, cpu), (c1, c2));
        });
    }

    #[test]
    fn jobs_run_concurrently() {
        // The second job waits for the first: this only finishes if both
        // run at the same time.
        std::thread::scope(|s| {
            let pair = ThreadPair::spawn(s);
            let (tx, rx) = channel();
            let (_, got) = pair.run(move || tx.send(7).unwrap(), move || rx.recv().unwrap());
            assert_eq!(got, 7);
        });
    }
}
