//! The connections being served, what each is doing, and which one to
//! evict when room is needed.
//!
//! Each connection task publishes its [`Phase`] and the time of its last
//! progress in a shared [`ConnState`] (relaxed atomics: a stale read only
//! picks a slightly different victim). The registry reads them when the
//! connection limit is reached or `accept` runs out of descriptors, and
//! picks a victim by [`eviction_key`]. Evicting asks the task to stop at
//! its next wait for input (it never cuts a reply short) and frees the
//! slot at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// What a connection is doing, as the eviction order sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Phase {
    /// Accepted, no request completed yet.
    Fresh = 0,
    /// Between requests: no byte of a next record has arrived.
    Idle = 1,
    /// Part of a record has arrived.
    InRecord = 2,
    /// Dispatching or sending replies: never evicted.
    Busy = 3,
}

/// Why a connection task was asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Stop {
    /// Keep serving.
    No = 0,
    /// Evicted to make room for a new client.
    Evicted = 1,
    /// The server is shutting down: finish what has arrived, then close.
    Shutdown = 2,
}

/// One connection's state, shared by its task and the registry.
#[derive(Debug)]
pub(super) struct ConnState {
    /// Milliseconds since the server's epoch when it was accepted.
    accepted_ms: u64,
    /// Milliseconds since the epoch of the last progress: bytes read or a
    /// reply sent.
    progress_ms: AtomicU64,
    phase: AtomicU8,
    stop: AtomicU8,
    /// Wakes the task from its wait for input when `stop` is set.
    pub(super) wake: Notify,
}

impl ConnState {
    fn new(now_ms: u64) -> ConnState {
        ConnState {
            accepted_ms: now_ms,
            progress_ms: AtomicU64::new(now_ms),
            phase: AtomicU8::new(Phase::Fresh as u8),
            stop: AtomicU8::new(Stop::No as u8),
            wake: Notify::new(),
        }
    }

    /// Records progress at `now_ms` and the phase the connection is now in.
    pub(super) fn progress(&self, now_ms: u64, phase: Phase) {
        self.progress_ms.store(now_ms, Relaxed);
        self.phase.store(phase as u8, Relaxed);
    }

    /// Sets the phase without counting it as progress.
    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    /// Milliseconds since the epoch of the last progress.
    pub(super) fn progress_ms(&self) -> u64 {
        self.progress_ms.load(Relaxed)
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Relaxed) {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::InRecord,
            _ => Phase::Busy,
        }
    }

    /// Whether, and why, the task should stop.
    pub(super) fn stop(&self) -> Stop {
        match self.stop.load(Relaxed) {
            0 => Stop::No,
            1 => Stop::Evicted,
            _ => Stop::Shutdown,
        }
    }

    /// Asks the task to stop; wakes it if it waits for input (or makes its
    /// next wait return at once).
    fn ask_to_stop(&self, why: Stop) {
        self.stop.store(why as u8, Relaxed);
        self.wake.notify_one();
    }
}

/// The order of eviction: the smallest key goes first; `None` is never
/// evicted.
///
/// First the connections that have completed no request within `grace`
/// of being accepted (half-open, or opened and left), oldest first; then
/// every other connection not busy with a reply, by its last progress,
/// oldest first.
pub(super) fn eviction_key(
    phase: Phase,
    accepted_ms: u64,
    progress_ms: u64,
    now_ms: u64,
    grace: Duration,
) -> Option<(u8, u64)> {
    match phase {
        Phase::Busy => None,
        Phase::Fresh if now_ms.saturating_sub(accepted_ms) >= grace.as_millis() as u64 => {
            Some((0, accepted_ms))
        }
        _ => Some((1, progress_ms)),
    }
}

/// A registered connection.
struct Entry {
    state: Arc<ConnState>,
    task: Option<AbortHandle>,
}

/// The connections being served, by id.
pub(super) struct Registry {
    epoch: Instant,
    grace: Duration,
    map: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    /// Signalled when the last connection leaves.
    empty: Notify,
}

impl Registry {
    /// An empty registry; connections that complete no request within
    /// `grace` are evicted first.
    pub(super) fn new(grace: Duration) -> Registry {
        Registry {
            epoch: Instant::now(),
            grace,
            map: Mutex::default(),
            next_id: AtomicU64::new(0),
            empty: Notify::new(),
        }
    }

    /// Milliseconds since the registry was made: the clock of [`ConnState`].
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The map, locked (every change is one map operation, so a panicked
    /// holder leaves it consistent).
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections registered.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Registers a new connection; `start` spawns its task, given its id
    /// and state, under the lock (so the task's own removal cannot come
    /// before its registration).
    pub(super) fn register(&self, start: impl FnOnce(u64, Arc<ConnState>) -> AbortHandle) {
        let id = self.next_id.fetch_add(1, Relaxed);
        let state = Arc::new(ConnState::new(self.now_ms()));
        let mut map = self.lock();
        let task = start(id, state.clone());
        map.insert(
            id,
            Entry {
                state,
                task: Some(task),
            },
        );
    }

    /// Removes a connection (its task ends); no-op if it was evicted.
    pub(super) fn remove(&self, id: u64) {
        let mut map = self.lock();
        if map.remove(&id).is_some() && map.is_empty() {
            self.empty.notify_one();
        }
    }

    /// Evicts the connection that [`eviction_key`] ranks first: asks its
    /// task to stop and frees its slot. False if every connection is busy.
    ///
    /// Costs one pass over the registry under its lock (only when the
    /// limit is reached or descriptors ran out).
    pub(super) fn evict_one(&self) -> bool {
        let now = self.now_ms();
        let mut map = self.lock();
        let victim = map
            .iter()
            .filter_map(|(id, e)| {
                let s = &e.state;
                eviction_key(s.phase(), s.accepted_ms, s.progress_ms(), now, self.grace)
                    .map(|k| (k, *id))
            })
            .min();
        let Some((_, id)) = victim else {
            return false;
        };
        if let Some(e) = map.remove(&id) {
            e.state.ask_to_stop(Stop::Evicted);
        }
        if map.is_empty() {
            self.empty.notify_one();
        }
        true
    }

    /// Asks every task to finish what has arrived and close.
    pub(super) fn shut_down_all(&self) {
        for e in self.lock().values() {
            e.state.ask_to_stop(Stop::Shutdown);
        }
    }

    /// Waits until every connection has left.
    pub(super) async fn wait_empty(&self) {
        while self.len() > 0 {
            self.empty.notified().await;
        }
    }

    /// Aborts the tasks still registered (the shutdown timeout passed);
    /// returns how many.
    pub(super) fn abort_all(&self) -> usize {
        let all: Vec<Entry> = self.lock().drain().map(|(_, e)| e).collect();
        for e in &all {
            if let Some(t) = &e.task {
                t.abort();
            }
        }
        all.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(5);

    #[test]
    fn busy_connections_are_never_evicted() {
        assert_eq!(eviction_key(Phase::Busy, 0, 0, 100_000, GRACE), None);
    }

    #[test]
    fn connections_without_a_request_past_the_grace_go_first() {
        let stale_fresh = eviction_key(Phase::Fresh, 10_000, 10_000, 20_000, GRACE).unwrap();
        let long_idle = eviction_key(Phase::Idle, 0, 1, 20_000, GRACE).unwrap();
        let young_fresh = eviction_key(Phase::Fresh, 19_000, 19_000, 20_000, GRACE).unwrap();
        let stalled = eviction_key(Phase::InRecord, 0, 2, 20_000, GRACE).unwrap();
        let mut keys = [young_fresh, long_idle, stalled, stale_fresh];
        keys.sort();
        assert_eq!(keys, [stale_fresh, long_idle, stalled, young_fresh]);
    }

    #[test]
    fn eviction_frees_the_slot_and_asks_the_task_to_stop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let reg = Registry::new(Duration::ZERO);
        let mut states = Vec::new();
        for _ in 0..3 {
            reg.register(|_, s| {
                states.push(s);
                rt.spawn(std::future::pending::<()>()).abort_handle()
            });
        }
        states[0].progress(50, Phase::Busy);
        states[1].progress(40, Phase::Idle);
        states[2].progress(30, Phase::Idle);
        assert!(reg.evict_one());
        assert_eq!(reg.len(), 2);
        assert_eq!(states[2].stop(), Stop::Evicted);
        assert!(reg.evict_one());
        assert_eq!(states[1].stop(), Stop::Evicted);
        assert!(!reg.evict_one(), "the busy one stays");
        assert_eq!(states[0].stop(), Stop::No);
        reg.shut_down_all();
        assert_eq!(states[0].stop(), Stop::Shutdown);
        assert_eq!(reg.abort_all(), 1);
        assert_eq!(reg.len(), 0);
    }
}
