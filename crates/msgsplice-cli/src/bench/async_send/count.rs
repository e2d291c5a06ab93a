//! What the senders of the `async` section count beyond messages: heap
//! allocations per task ([`TaskAllocs`], [`counted`]) and the writes of a
//! tokio stream ([`CountingWrite`]).

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use crate::alloc_count;

/// Heap allocations made while one task is polled: the counting
/// allocator's per-thread counter, read before and after each poll of the
/// task, on whichever thread polls it.
#[derive(Default)]
pub struct TaskAllocs {
    done: AtomicU64,
    poll_start: AtomicU64,
}

impl TaskAllocs {
    /// Allocations so far, from inside the task (the current poll's
    /// included).
    pub fn now(&self) -> u64 {
        let this_poll = alloc_count::thread_allocs() - self.poll_start.load(Relaxed);
        self.done.load(Relaxed) + this_poll
    }
}

/// `fut` with its allocations counted into `meter`. Relaxed ordering
/// suffices: one thread polls the task at a time, and tokio orders the
/// polls of a task that moves between workers.
pub fn counted<F: Future>(fut: F, meter: Arc<TaskAllocs>) -> impl Future<Output = F::Output> {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(move |cx| {
        meter
            .poll_start
            .store(alloc_count::thread_allocs(), Relaxed);
        let r = fut.as_mut().poll(cx);
        let spent = alloc_count::thread_allocs() - meter.poll_start.load(Relaxed);
        meter.done.fetch_add(spent, Relaxed);
        r
    })
}

/// A tokio writer that counts the writes its polls make: one per poll that
/// returns, and one per poll that returns `Pending` with coop budget left
/// (tokio tried the socket and found it full; with no budget left it
/// returns before trying, and that poll is not counted). Tokio can stray
/// from this in two rare ways: a poll without write readiness recorded
/// returns `Pending` without trying (counted, though no call was made),
/// and a failed try that races with a new readiness event is retried at
/// once (two calls, counted once). The senders here are woken only by
/// write readiness and wait for it once before their first write, which
/// keeps both rare.
pub struct CountingWrite<W> {
    /// The writer.
    pub inner: W,
    /// Writes counted so far.
    pub writes: u64,
}

impl<W: AsyncWrite + Unpin> CountingWrite<W> {
    fn count<R>(&mut self, f: impl FnOnce(Pin<&mut W>) -> Poll<R>) -> Poll<R> {
        let tries = tokio::task::coop::has_budget_remaining();
        let r = f(Pin::new(&mut self.inner));
        if r.is_ready() || tries {
            self.writes += 1;
        }
        r
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for CountingWrite<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().count(|w| w.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().count(|w| w.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
