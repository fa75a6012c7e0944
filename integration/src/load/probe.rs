//! Measurement state shared by every simulated stream: initial sync, the change being
//! waited for, and byte counters.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::decode::Decoder;

/// One config change: the streams that have ACKed a response carrying `marker`, and when.
pub struct Probe {
    pub id: u64,
    pub marker: Vec<u8>,
    /// Just before the change was written.
    pub started: Instant,
    latencies: Mutex<Vec<Duration>>,
    /// The count `wait_for` waits for: streams wake the driver only when it is reached, not
    /// on every ACK (a thousand wakeups per change otherwise).
    target: AtomicUsize,
    done: Notify,
}

impl Probe {
    pub fn new(id: u64, marker: impl Into<Vec<u8>>) -> Arc<Self> {
        Arc::new(Probe {
            id,
            marker: marker.into(),
            started: Instant::now(),
            latencies: Mutex::default(),
            target: AtomicUsize::new(usize::MAX),
            done: Notify::new(),
        })
    }

    /// A stream ACKed the change.
    pub fn record(&self, at: Instant) {
        let count = {
            let mut latencies = lock(&self.latencies);
            latencies.push(at.duration_since(self.started));
            latencies.len()
        };
        if count >= self.target.load(Ordering::Acquire) {
            self.done.notify_waiters();
        }
    }

    pub fn count(&self) -> usize {
        lock(&self.latencies).len()
    }

    pub fn latencies(&self) -> Vec<Duration> {
        lock(&self.latencies).clone()
    }

    /// Waits until `n` streams have ACKed or `deadline` passed; returns how many had.
    pub async fn wait_for(&self, n: usize, deadline: Duration) -> usize {
        self.target.store(n, Ordering::Release);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let count = self.count();
            if count >= n {
                return count;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return self.count();
            }
        }
    }
}

/// Shared by the driver and every stream.
pub struct Shared {
    pub fleet: String,
    pub decoder: Decoder,
    /// The change streams currently look for.
    pub probe: watch::Receiver<Option<Arc<Probe>>>,
    /// Encoded size of every response received (protobuf bytes, without gRPC/HTTP/2 framing).
    pub bytes: AtomicU64,
    pub responses: AtomicU64,
    /// When the last connection was up, in µs after `Shared::new`.
    pub connected_us: AtomicU64,
    created: Instant,
    /// Streams that hold the complete config.
    synced: Mutex<Vec<Duration>>,
    /// What `wait_synced` waits for (synced + failed), as for [`Probe`].
    synced_target: AtomicUsize,
    synced_notify: Notify,
    pub failed: AtomicUsize,
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(fleet: String, probe: watch::Receiver<Option<Arc<Probe>>>) -> Arc<Self> {
        Arc::new(Shared {
            fleet,
            decoder: Decoder::default(),
            probe,
            bytes: AtomicU64::new(0),
            responses: AtomicU64::new(0),
            connected_us: AtomicU64::new(0),
            created: Instant::now(),
            synced: Mutex::default(),
            synced_target: AtomicUsize::new(usize::MAX),
            synced_notify: Notify::new(),
            failed: AtomicUsize::new(0),
            errors: Mutex::default(),
        })
    }

    /// A stream holds its complete initial config, `after` its start.
    pub fn synced(&self, after: Duration) {
        let count = {
            let mut synced = lock(&self.synced);
            synced.push(after);
            synced.len()
        };
        if count + self.failed.load(Ordering::Relaxed) >= self.synced_target.load(Ordering::Acquire)
        {
            self.synced_notify.notify_waiters();
        }
    }

    pub fn sync_times(&self) -> Vec<Duration> {
        lock(&self.synced).clone()
    }

    /// A connection is up.
    pub fn connected(&self) {
        let us = self.created.elapsed().as_micros() as u64;
        self.connected_us.fetch_max(us, Ordering::Relaxed);
    }

    /// A stream ended with an error.
    pub fn fail(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = lock(&self.errors);
        if errors.len() < 20 {
            errors.push(error);
        }
        self.synced_notify.notify_waiters();
    }

    /// Waits until `n` streams are synced (or failed), or `deadline` passed.
    pub async fn wait_synced(&self, n: usize, deadline: Duration) -> usize {
        self.synced_target.store(n, Ordering::Release);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.synced_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let count = lock(&self.synced).len();
            if count + self.failed.load(Ordering::Relaxed) >= n {
                return count;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return lock(&self.synced).len();
            }
        }
    }

    pub fn received_bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
