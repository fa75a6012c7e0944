//! Shared state: the latest snapshot per fleet (published through `watch`, debounced), and the
//! registry of connected streams.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::Any;
use crate::Nack;
use crate::metrics::Metrics;
use crate::names::Interner;
use crate::shared::Responses;
use crate::snapshot::Snapshot;
use crate::state::StreamState;
use crate::status::{NodeStatus, XdsEvent};

/// Debounce settings for snapshot publication. Without a tokio runtime (neither current when
/// `set_snapshot` is called nor when the cache was created) snapshots publish immediately.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Publish once no new snapshot arrived for this long.
    pub debounce: Duration,
    /// ... but never hold a snapshot back longer than this.
    pub max_delay: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            debounce: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        }
    }
}

/// Resources by type URL, each as (name, body), names sorted.
pub type SentResources = BTreeMap<String, Vec<(String, Arc<Any>)>>;

/// What streams of a fleet see: `None` until the fleet has a snapshot (or after removal).
pub(crate) type Published = Option<Snapshot>;

struct Pending {
    snapshot: Published,
    first: Instant,
    last: Instant,
}

struct Fleet {
    tx: watch::Sender<Published>,
    pending: Option<Pending>,
    timer_running: bool,
}

impl Fleet {
    fn new() -> Self {
        Fleet {
            tx: watch::Sender::new(None),
            pending: None,
            timer_running: false,
        }
    }

    /// The most recently set value, published or not.
    fn latest(&self) -> Published {
        match &self.pending {
            Some(p) => p.snapshot.clone(),
            None => self.tx.borrow().clone(),
        }
    }

    fn publish_pending(&mut self) {
        if let Some(p) = self.pending.take()
            && !same(&self.tx.borrow(), &p.snapshot)
        {
            self.tx.send_replace(p.snapshot);
        }
    }
}

fn same(a: &Published, b: &Published) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_content(b),
        _ => false,
    }
}

pub(crate) struct Inner {
    config: CacheConfig,
    /// Runs debounce timers when `set_snapshot` is called off the runtime (say, from a file
    /// watcher's thread).
    runtime: Option<tokio::runtime::Handle>,
    fleets: Mutex<BTreeMap<String, Fleet>>,
    streams: Mutex<BTreeMap<u64, Arc<Mutex<StreamState>>>>,
    next_stream_id: AtomicU64,
    pub(crate) events: broadcast::Sender<XdsEvent>,
    pub(crate) metrics: Metrics,
    /// Encoded response bodies shared across streams.
    pub(crate) responses: Responses,
    /// Subscriptions shared across streams.
    pub(crate) names: Interner,
}

/// Shared state: the latest snapshot per fleet, and what each connected node has been sent/ACKed.
#[derive(Clone)]
pub struct Cache {
    pub(crate) inner: Arc<Inner>,
}

impl Cache {
    /// Call inside the tokio runtime that should run debounce timers, if there is one.
    pub fn new(config: CacheConfig) -> Self {
        Cache {
            inner: Arc::new(Inner {
                config,
                runtime: tokio::runtime::Handle::try_current().ok(),
                fleets: Mutex::default(),
                streams: Mutex::default(),
                next_stream_id: AtomicU64::new(1),
                events: broadcast::Sender::new(1024),
                metrics: Metrics::default(),
                responses: Responses::default(),
                names: Interner::default(),
            }),
        }
    }

    /// Publishes a fleet's snapshot (after the debounce). Identical content => no push at all.
    /// Returns whether it changed.
    pub fn set_snapshot(&self, fleet: &str, mut snapshot: Snapshot) -> bool {
        snapshot.seal();
        self.set(fleet, Some(snapshot))
    }

    /// Publishes every snapshot still waiting out its debounce now. Used for the first config,
    /// which must reach Envoys before any stream is answered.
    pub fn flush(&self) {
        for fleet in lock(&self.inner.fleets).values_mut() {
            fleet.publish_pending();
        }
    }

    /// Forgets a fleet: its Envoys get an empty config.
    pub fn remove_fleet(&self, fleet: &str) {
        self.set(fleet, None);
    }

    /// The fleet's most recently set snapshot (possibly still inside the debounce window).
    pub fn snapshot(&self, fleet: &str) -> Option<Snapshot> {
        lock(&self.inner.fleets).get(fleet)?.latest()
    }

    /// Fleets that currently have a snapshot, sorted.
    pub fn fleets(&self) -> Vec<String> {
        lock(&self.inner.fleets)
            .iter()
            .filter(|(_, f)| f.latest().is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// One entry per connected stream, by stream id.
    pub fn node_statuses(&self) -> Vec<NodeStatus> {
        self.stream_states()
            .iter()
            .map(|s| lock(s).status())
            .collect()
    }

    /// The standing NACKs of every connected stream as (fleet, type URL, NACK): a cheap
    /// subset of [`Cache::node_statuses`] for a consumer that missed events.
    pub fn nacks(&self) -> Vec<(String, String, Nack)> {
        let mut out = Vec::new();
        for s in self.stream_states() {
            let s = lock(&s);
            for (type_url, ts) in &s.types {
                if let Some(nack) = &ts.last_nack {
                    out.push((s.fleet().to_string(), type_url.clone(), nack.clone()));
                }
            }
        }
        out
    }

    /// What a node was last sent, per type URL, by name (merged over the node's streams).
    pub fn sent_resources(&self, node_id: &str) -> Option<SentResources> {
        let mut found = false;
        let mut merged: BTreeMap<String, BTreeMap<String, Arc<Any>>> = BTreeMap::new();
        for s in self.stream_states() {
            let s = lock(&s);
            if s.node_id() != node_id {
                continue;
            }
            found = true;
            for (type_url, resources) in s.sent_resources() {
                merged.entry(type_url).or_default().extend(resources);
            }
        }
        found.then(|| {
            merged
                .into_iter()
                .map(|(t, r)| (t, r.into_iter().collect()))
                .collect()
        })
    }

    /// Connected / Disconnected / Acked / Nacked events.
    pub fn subscribe(&self) -> broadcast::Receiver<XdsEvent> {
        self.inner.events.subscribe()
    }

    /// Prometheus text exposition.
    pub fn render_metrics(&self) -> String {
        let mut streams: BTreeMap<(String, String), u64> = BTreeMap::new();
        for s in self.stream_states() {
            let s = lock(&s);
            *streams
                .entry((s.fleet().to_string(), s.variant().to_string()))
                .or_default() += 1;
        }
        self.inner.metrics.render(&streams)
    }

    fn set(&self, fleet: &str, mut snapshot: Published) -> bool {
        let mut fleets = lock(&self.inner.fleets);
        let entry = fleets.entry(fleet.to_string()).or_insert_with(Fleet::new);
        if let (Some(new), Some(old)) = (&mut snapshot, entry.latest()) {
            new.share_unchanged(&old);
        }
        if same(&entry.latest(), &snapshot) {
            return false;
        }
        let now = Instant::now();
        let first = entry.pending.as_ref().map_or(now, |p| p.first);
        entry.pending = Some(Pending {
            snapshot,
            first,
            last: now,
        });
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| self.inner.runtime.clone());
        match runtime {
            // No quiet period wanted, or no runtime to run a timer on: publish right away.
            _ if self.inner.config.debounce.is_zero() => entry.publish_pending(),
            None => entry.publish_pending(),
            Some(_) if entry.timer_running => {}
            Some(rt) => {
                entry.timer_running = true;
                rt.spawn(debounce(Arc::downgrade(&self.inner), fleet.to_string()));
            }
        }
        true
    }

    /// A receiver of the fleet's published snapshots; creates the fleet entry if needed.
    pub(crate) fn watch(&self, fleet: &str) -> watch::Receiver<Published> {
        lock(&self.inner.fleets)
            .entry(fleet.to_string())
            .or_insert_with(Fleet::new)
            .tx
            .subscribe()
    }

    pub(crate) fn next_stream_id(&self) -> u64 {
        self.inner.next_stream_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, id: u64, state: Arc<Mutex<StreamState>>) {
        lock(&self.inner.streams).insert(id, state);
    }

    /// Removes a stream; drops the fleet entry when nothing holds it any more.
    pub(crate) fn deregister(&self, id: u64, fleet: &str) {
        lock(&self.inner.streams).remove(&id);
        let mut fleets = lock(&self.inner.fleets);
        let unused = fleets.get(fleet).is_some_and(|f| {
            f.pending.is_none() && f.tx.borrow().is_none() && f.tx.receiver_count() == 0
        });
        if unused {
            fleets.remove(fleet);
        }
    }

    pub(crate) fn stream_states(&self) -> Vec<Arc<Mutex<StreamState>>> {
        lock(&self.inner.streams).values().cloned().collect()
    }
}

/// Publishes a fleet's pending snapshot once it has been quiet for `debounce`, or `max_delay`
/// after the first unpublished change.
async fn debounce(inner: Weak<Inner>, fleet: String) {
    loop {
        let deadline = {
            let Some(inner) = inner.upgrade() else { return };
            let mut fleets = lock(&inner.fleets);
            let Some(entry) = fleets.get_mut(&fleet) else {
                return;
            };
            let Some(p) = &entry.pending else {
                entry.timer_running = false;
                return;
            };
            // checked_add: a huge configured duration means "no limit", not a panic.
            let quiet = p.last.checked_add(inner.config.debounce);
            let cap = p.first.checked_add(inner.config.max_delay);
            let deadline = match (quiet, cap) {
                (Some(q), Some(c)) => Some(q.min(c)),
                (q, c) => q.or(c),
            };
            let Some(deadline) = deadline.filter(|d| Instant::now() < *d) else {
                entry.publish_pending();
                entry.timer_running = false;
                return;
            };
            deadline
        };
        tokio::time::sleep_until(deadline).await;
    }
}

/// A poisoned lock only means another thread panicked mid-update; the data is still the best
/// we have, and the server must keep serving.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::CLUSTER;

    fn snap(value: &[u8]) -> Snapshot {
        let mut s = Snapshot::new();
        s.insert(
            CLUSTER,
            "c",
            Any {
                type_url: CLUSTER.into(),
                value: value.to_vec(),
            },
        );
        s
    }

    #[tokio::test(start_paused = true)]
    async fn identical_snapshots_do_not_publish() {
        let cache = Cache::new(CacheConfig::default());
        let mut rx = cache.watch("ns/gw");
        assert!(cache.set_snapshot("ns/gw", snap(b"1")));
        assert!(!cache.set_snapshot("ns/gw", snap(b"1")));
        rx.changed().await.unwrap();
        assert!(
            rx.borrow_and_update()
                .as_ref()
                .unwrap()
                .same_content(&snap(b"1"))
        );
        assert!(!cache.set_snapshot("ns/gw", snap(b"1")));
        assert_eq!(cache.fleets(), vec!["ns/gw".to_string()]);
        // A change that is reverted inside the debounce window publishes nothing.
        assert!(cache.set_snapshot("ns/gw", snap(b"2")));
        assert!(cache.set_snapshot("ns/gw", snap(b"1")));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn debounce_coalesces_and_max_delay_bounds_it() {
        let cache = Cache::new(CacheConfig {
            debounce: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        });
        let mut rx = cache.watch("f");
        let start = Instant::now();
        // A change every 5ms never leaves a quiet period; max_delay forces publication.
        for i in 0..20u8 {
            cache.set_snapshot("f", snap(&[i]));
            tokio::time::sleep(Duration::from_millis(5)).await;
            if rx.has_changed().unwrap() {
                break;
            }
        }
        assert!(rx.has_changed().unwrap());
        assert!(Instant::now() - start <= Duration::from_millis(60));
        rx.borrow_and_update();
        cache.remove_fleet("f");
        rx.changed().await.unwrap();
        assert!(rx.borrow().is_none());
        assert!(cache.fleets().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn unbounded_max_delay_does_not_overflow() {
        let cache = Cache::new(CacheConfig {
            debounce: Duration::from_millis(10),
            max_delay: Duration::MAX,
        });
        let mut rx = cache.watch("f");
        cache.set_snapshot("f", snap(b"1"));
        rx.changed().await.unwrap();
        assert!(rx.borrow().is_some());
    }

    #[tokio::test]
    async fn snapshots_set_from_other_threads_are_debounced_on_the_runtime() {
        let cache = Cache::new(CacheConfig::default());
        let mut rx = cache.watch("f");
        let setter = cache.clone();
        std::thread::spawn(move || setter.set_snapshot("f", snap(b"1")))
            .join()
            .unwrap();
        // Published by the timer task on this runtime, not inline on the other thread.
        assert!(!rx.has_changed().unwrap());
        rx.changed().await.unwrap();
        assert!(rx.borrow().is_some());
    }
}
