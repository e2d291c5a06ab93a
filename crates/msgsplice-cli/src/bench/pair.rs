//! Two long-lived threads that run a pair of jobs side by side: the
//! producer and the consumer of the cross-thread allocator benchmark.
//!
//! The threads live for a whole section instead of one run, as a server's
//! threads do: the fragment cache keeps one bucket per thread, and glibc
//! gives each new thread an arena, so fresh threads in every run would
//! measure thread start-up states rather than the steady state.

use std::sync::mpsc::{channel, Sender};
use std::thread::Scope;

type Job<'env> = Box<dyn FnOnce() + Send + 'env>;

/// The two threads; they end when this is dropped (and the scope that
/// spawned them joins them).
pub struct ThreadPair<'env> {
    first: Sender<Job<'env>>,
    second: Sender<Job<'env>>,
}

impl<'env> ThreadPair<'env> {
    /// Starts two threads in `scope`.
    pub fn spawn<'scope>(scope: &'scope Scope<'scope, 'env>) -> ThreadPair<'env> {
        let start = || {
            let (tx, rx) = channel::<Job<'env>>();
            scope.spawn(move || {
                for job in rx {
                    job();
                }
            });
            tx
        };
        ThreadPair {
            first: start(),
            second: start(),
        }
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
