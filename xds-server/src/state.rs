//! Per-stream and per-type protocol state, the push order across types on ADS, and the
//! make-before-break retention of removed clusters. The SotW and delta wire rules live in
//! `sotw.rs` and `delta.rs` behind [`Protocol`]; the event loop in `stream.rs`.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::time::Instant;
use tonic::Status;
use tracing::{debug, warn};

use crate::cache::{Cache, Published};
use crate::held::{HeldMap, HeldRef};
use crate::names::Names;
use crate::shared::{Outgoing, SharedBody};
use crate::snapshot::Resource;
use crate::status::{Nack, Variant, XdsEvent, XdsEventKind};
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use crate::view::View;

/// Make-before-break push order on one stream (xds_protocol.rst, eventual consistency).
const ORDER: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET];

/// Responses above this size are logged: they hint at a fleet that outgrew SotW.
const LARGE_RESPONSE: usize = 4 << 20;

/// Types whose pending or unacknowledged responses hold back a type on ADS. Listeners and
/// routes wait for clusters and endpoints: Envoy ACKs CDS only once the new clusters are warm,
/// and a route must never name a cluster Envoy does not have yet. Endpoints and secrets wait
/// for nothing: warming clusters (and listeners) need them, so they must flow while CDS is
/// unacknowledged, or the stream would deadlock.
fn waits_for(type_url: &str) -> &'static [&'static str] {
    match type_url {
        CLUSTER | ENDPOINT | SECRET => &[],
        LISTENER => &[CLUSTER, ENDPOINT],
        ROUTE => &[CLUSTER, ENDPOINT, LISTENER],
        _ => &ORDER,
    }
}

fn rank(type_url: &str) -> usize {
    ORDER
        .iter()
        .position(|t| *t == type_url)
        .unwrap_or(ORDER.len())
}

/// SotW LDS and CDS responses carry the complete set every time.
pub(crate) fn full_state(type_url: &str) -> bool {
    type_url == LISTENER || type_url == CLUSTER
}

pub(crate) struct InFlight {
    pub(crate) nonce: String,
    pub(crate) version: String,
    pub(crate) sent_at: Instant,
    /// The body sent (shared with streams sent the same response; kept until the ACK so that
    /// streams building the same response meanwhile reuse it). Its names (delta: removals
    /// too) attribute a NACK.
    pub(crate) body: SharedBody,
}

/// One type URL on one stream.
#[derive(Default)]
pub(crate) struct TypeState {
    /// A request of this type arrived on the stream.
    pub(crate) requested: bool,
    pub(crate) wildcard: bool,
    /// Explicitly subscribed names (never `*`), shared with streams that subscribed to the
    /// same (see `names.rs`).
    pub(crate) names: Names,
    /// SotW: the name list of the last request that set the subscription, hashed as sent.
    pub(crate) last_list: Option<u128>,
    /// SotW: some request named resources, so the legacy wildcard no longer applies.
    pub(crate) ever_named: bool,
    pub(crate) held: HeldMap,
    /// Names to send (or, in delta, to declare removed) even if the client holds them.
    pub(crate) force: BTreeSet<String>,
    /// Answer even with nothing new (first wildcard or LDS/CDS request).
    pub(crate) must_respond: bool,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) last_nonce: Option<String>,
    pub(crate) sent_version: Option<String>,
    pub(crate) acked_version: Option<String>,
    pub(crate) last_nack: Option<Nack>,
    /// The client showed it holds the current version on connecting, and nothing was sent
    /// since (see `resume.rs`).
    pub(crate) resumed: bool,
    /// The view generation of this type at which `has_work` last found nothing to send.
    /// Cleared by every change to this state (`touch`), so an idle stream answers `has_work`
    /// in O(1) for types a new snapshot did not change instead of comparing every resource.
    clean_at: Cell<Option<u64>>,
    /// SotW: the view generation of this type at which `held` was last pruned of names the
    /// view no longer has.
    pub(crate) pruned_at: Option<u64>,
}

impl TypeState {
    /// Forgets the memoised "nothing to send": call after changing this state.
    pub(crate) fn touch(&mut self) {
        self.clean_at.set(None);
    }

    /// `has_work`, memoised per view generation. `compute` must depend only on `view` (for
    /// this type) and on this state.
    pub(crate) fn work_memo(
        &self,
        view: &View,
        type_url: &str,
        compute: impl FnOnce() -> bool,
    ) -> bool {
        let generation = view.generation(type_url);
        if self.clean_at.get() == Some(generation) {
            return false;
        }
        let work = compute();
        if !work {
            self.clean_at.set(Some(generation));
        }
        work
    }

    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Resources the subscription selects from `view`, sorted by name, without duplicates.
    pub(crate) fn desired<'v>(&self, view: &'v View, type_url: &str) -> Vec<&'v Resource> {
        if self.wildcard {
            return view.resources(type_url);
        }
        let map = view.snapshot.type_map(type_url);
        let retained = view.retained.get(type_url).is_some_and(|k| !k.is_empty());
        match map {
            // Most of the type subscribed (every EDS name of a fleet's clusters): one walk
            // along both sorted lists instead of a tree lookup per name.
            Some(map) if !retained && self.names.len() * 4 >= map.len() => {
                let mut out = Vec::with_capacity(self.names.len());
                let mut names = self.names.iter().peekable();
                let mut resources = map.iter().peekable();
                while let (Some(n), Some((k, r))) = (names.peek(), resources.peek()) {
                    match n.as_str().cmp(k.as_str()) {
                        std::cmp::Ordering::Less => {
                            names.next();
                        }
                        std::cmp::Ordering::Greater => {
                            resources.next();
                        }
                        std::cmp::Ordering::Equal => {
                            out.push(*r);
                            names.next();
                            resources.next();
                        }
                    }
                }
                out
            }
            _ => self
                .names
                .iter()
                .filter_map(|n| view.get(type_url, n))
                .collect(),
        }
    }
}

/// The wire rules of one protocol variant (SotW or delta).
pub(crate) trait Protocol: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;

    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url_mut(req: &mut Self::Request) -> &mut String;
    /// Applies a request: ACK/NACK bookkeeping and subscription changes.
    fn on_request(st: &mut StreamState, req: Self::Request);
    /// Whether the client should get a response for this type now.
    fn has_work(view: &View, type_url: &str, ts: &TypeState) -> bool;
    /// Builds the response and records it as sent.
    fn build(st: &mut StreamState, type_url: &str) -> Result<Outgoing, Status>;
    /// Called after the stream switched to a new snapshot.
    fn on_snapshot(_st: &mut StreamState) {}
}

/// Adds an empty entry for `key` unless there is one. Allocates the key only then (unlike
/// `entry(key.to_string())`): this is on the path of every request.
pub(crate) fn ensure<V: Default>(map: &mut BTreeMap<String, V>, key: &str) {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
}

/// Everything about one stream. Lives behind a mutex shared with the cache's registry so the
/// admin API can read it; the stream task holds the lock only briefly, never across an await.
pub(crate) struct StreamState {
    pub(crate) id: u64,
    pub(crate) node: Node,
    pub(crate) variant: Variant,
    pub(crate) connected_since: SystemTime,
    pub(crate) view: View,
    pub(crate) types: BTreeMap<String, TypeState>,
    nonce: u64,
    pub(crate) cache: Cache,
}

impl StreamState {
    pub(crate) fn new(id: u64, node: Node, variant: Variant, cache: Cache) -> Self {
        StreamState {
            id,
            node,
            variant,
            connected_since: SystemTime::now(),
            view: View::default(),
            types: BTreeMap::new(),
            nonce: 0,
            cache,
        }
    }

    pub(crate) fn node_id(&self) -> &str {
        &self.node.id
    }

    pub(crate) fn fleet(&self) -> &str {
        &self.node.cluster
    }

    pub(crate) fn variant(&self) -> Variant {
        self.variant
    }

    pub(crate) fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    pub(crate) fn event(
        &self,
        kind: XdsEventKind,
        type_url: &str,
        version: &str,
        nack: Option<&Nack>,
    ) {
        // No subscribers is fine: events are best effort.
        let _ = self.cache.inner.events.send(XdsEvent {
            kind,
            node_id: self.node.id.clone(),
            fleet: self.node.cluster.clone(),
            type_url: type_url.to_string(),
            version: version.to_string(),
            message: nack.map(|n| n.message.clone()).unwrap_or_default(),
            resource_names: nack.map(|n| n.resource_names.clone()).unwrap_or_default(),
        });
    }

    /// Records the ACK (or NACK, with `error`) of the in-flight response of a type.
    pub(crate) fn acknowledge(&mut self, type_url: &str, error: Option<String>) {
        let Some(ts) = self.types.get_mut(type_url) else {
            return;
        };
        ts.touch();
        let Some(sent) = ts.in_flight.take() else {
            return;
        };
        let metrics = &self.cache.inner.metrics;
        metrics.acked(type_url, sent.sent_at.elapsed());
        match error {
            None => {
                ts.acked_version = Some(sent.version.clone());
                ts.last_nack = None;
                debug!(type_url, version = %sent.version, "ACK");
                self.event(XdsEventKind::Acked, type_url, &sent.version, None);
            }
            Some(message) => {
                metrics.nacked(type_url);
                let resource_names = nack_names(&sent.body.encoded.names, &message);
                warn!(type_url, version = %sent.version, ?resource_names, %message, "NACK");
                let nack = Nack {
                    version: sent.version.clone(),
                    message,
                    resource_names,
                    at: SystemTime::now(),
                };
                ts.last_nack = Some(nack.clone());
                self.event(XdsEventKind::Nacked, type_url, &sent.version, Some(&nack));
            }
        }
    }

    /// Records a response as sent and applies what it implies for other types.
    /// `warm`: children of the resources the client did not have in this version.
    pub(crate) fn sent(&mut self, type_url: &str, sent: InFlight, warm: Vec<String>) {
        let Some(ts) = self.types.get_mut(type_url) else {
            return;
        };
        ts.touch();
        set(&mut ts.sent_version, &sent.version);
        set(&mut ts.last_nonce, &sent.nonce);
        ts.in_flight = Some(sent);
        ts.force.clear();
        ts.must_respond = false;
        ts.resumed = false;
        // Warming: an updated cluster (listener) only becomes active after a fresh EDS (RDS)
        // answer, even when its endpoints (routes) did not change.
        let child = match type_url {
            CLUSTER => ENDPOINT,
            LISTENER => ROUTE,
            _ => return,
        };
        if let Some(ts) = self.types.get_mut(child) {
            ts.touch();
            for name in warm {
                if ts.covers(&name) {
                    ts.force.insert(name);
                }
            }
        }
    }

    /// The next type to answer: in push order, the first with something to send that is not
    /// waiting for another type (ADS only; per-type streams carry a single type).
    pub(crate) fn next_type<P: Protocol>(&self) -> Option<String> {
        // Called on every turn of the stream loop: no sorting, no allocation until found.
        let known = ORDER.iter().filter_map(|t| self.types.get_key_value(*t));
        let others = self.types.iter().filter(|(t, _)| rank(t) == ORDER.len());
        known.chain(others).find_map(|(t, ts)| {
            let ready = ts.in_flight.is_none()
                && P::has_work(&self.view, t, ts)
                && !(self.variant.is_ads() && waits_for(t).iter().any(|b| self.busy::<P>(b)));
            ready.then(|| t.clone())
        })
    }

    pub(crate) fn switch_snapshot<P: Protocol>(&mut self, published: Published) {
        let old = self.view.replace_snapshot(published.unwrap_or_default());
        let snapshot = &self.view.snapshot;
        let mut shrunk = Vec::new();
        for (t, kept) in self.view.retained.iter_mut() {
            let before = kept.len();
            kept.retain(|name, _| snapshot.get(t, name).is_none());
            if kept.len() != before {
                shrunk.push(t.clone());
            }
        }
        for t in shrunk {
            self.view.touch(&t);
        }
        // Make-before-break: while listeners or routes are changing, clusters the snapshot
        // dropped stay until those changes are through; `cleanup` then removes them.
        if self.variant.is_ads() && (self.busy::<P>(LISTENER) || self.busy::<P>(ROUTE)) {
            for t in [CLUSTER, ENDPOINT] {
                let Some(ts) = self.types.get(t) else {
                    continue;
                };
                let mut keep = Vec::new();
                for (name, held) in ts.held.outside(self.view.snapshot.type_map(t)) {
                    let HeldRef::Has { version, body } = held else {
                        continue;
                    };
                    let body = body.cloned().or_else(|| {
                        old.get(t, name)
                            .filter(|r| r.version == version)
                            .map(|r| r.body.clone())
                    });
                    if let Some(body) = body {
                        keep.push(Resource {
                            name: name.to_string(),
                            version: version.to_string(),
                            body,
                            children: Arc::from([]),
                        });
                    }
                }
                if keep.is_empty() {
                    continue;
                }
                let kept = self.view.retained.entry(t.to_string()).or_default();
                for r in keep {
                    kept.insert(r.name.clone(), r);
                }
                self.view.touch(t);
            }
        }
        P::on_snapshot(self);
    }

    /// Drops retained clusters once everything else is sent and ACKed, then their endpoints
    /// once that CDS push is ACKed (by then Envoy has unsubscribed from them itself).
    pub(crate) fn cleanup<P: Protocol>(&mut self) {
        let kept = |t: &str| self.view.retained.get(t).is_some_and(|k| !k.is_empty());
        if kept(CLUSTER) {
            if !self.types.keys().any(|t| t != CLUSTER && self.busy::<P>(t)) {
                debug!("removing clusters retained for make-before-break");
                self.view.retained.remove(CLUSTER);
                self.view.touch(CLUSTER);
            }
        } else if kept(ENDPOINT)
            && !self
                .types
                .keys()
                .any(|t| t != ENDPOINT && self.busy::<P>(t))
        {
            self.view.retained.remove(ENDPOINT);
            self.view.touch(ENDPOINT);
        }
    }

    /// A response of this type is unacknowledged or waiting to be sent.
    fn busy<P: Protocol>(&self, type_url: &str) -> bool {
        self.types
            .get(type_url)
            .is_some_and(|ts| ts.in_flight.is_some() || P::has_work(&self.view, type_url, ts))
    }

    pub(crate) fn type_has_work(&self, type_url: &str, ts: &TypeState) -> bool {
        if self.variant.is_delta() {
            crate::delta::Delta::has_work(&self.view, type_url, ts)
        } else {
            crate::sotw::Sotw::has_work(&self.view, type_url, ts)
        }
    }

    pub(crate) fn metrics_sent(&self, type_url: &str, bytes: usize) {
        self.cache.inner.metrics.pushed(type_url, bytes);
        if bytes > LARGE_RESPONSE {
            warn!(type_url, bytes, "large xDS response");
        }
    }
}

/// `*slot = Some(value)`, reusing the string already there.
fn set(slot: &mut Option<String>, value: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(value);
        }
        None => *slot = Some(value.to_string()),
    }
}

/// Names of the rejected response that Envoy's message mentions; all of them if it names none.
fn nack_names(sent: &[String], message: &str) -> Vec<String> {
    let named: Vec<String> = sent
        .iter()
        .filter(|n| !n.is_empty() && message.contains(n.as_str()))
        .cloned()
        .collect();
    if named.is_empty() {
        sent.to_vec()
    } else {
        named
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Any, Snapshot};

    fn view(names: &[&str]) -> View {
        let mut s = Snapshot::new();
        for n in names {
            let body = Any {
                type_url: ENDPOINT.into(),
                value: n.as_bytes().to_vec(),
            };
            s.insert(ENDPOINT, *n, body);
        }
        let mut view = View::default();
        view.replace_snapshot(s);
        view
    }

    fn desired(view: &View, names: &[&str]) -> Vec<String> {
        let ts = TypeState {
            names: Arc::new(names.iter().map(|n| n.to_string()).collect()),
            ..Default::default()
        };
        ts.desired(view, ENDPOINT)
            .into_iter()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn desired_is_the_subscribed_names_that_exist_in_order() {
        let v = view(&["a", "b", "c", "d"]);
        // Most of the type subscribed (walks both lists) and a few names (looks each up).
        assert_eq!(desired(&v, &["d", "b", "a", "x", "0"]), ["a", "b", "d"]);
        assert_eq!(desired(&v, &["c"]), ["c"]);
        assert_eq!(desired(&v, &["a", "b", "c", "d"]), ["a", "b", "c", "d"]);
        assert!(desired(&v, &["e", "f", "g", "h"]).is_empty());
        assert!(desired(&view(&[]), &["a"]).is_empty());
    }
}
