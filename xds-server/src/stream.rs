//! One xDS stream: its per-type state, the push ordering across types, and the event loop.
//! The SotW and delta wire rules live in `sotw.rs` and `delta.rs` behind [`Protocol`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::{Status, Streaming};
use tracing::{Instrument, debug, info, warn};

use crate::Any;
use crate::cache::{Cache, Published, lock};
use crate::snapshot::{Resource, Snapshot, version_of};
use crate::status::{Nack, NodeStatus, SyncState, TypeStatus, Variant, XdsEvent, XdsEventKind};
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

/// Make-before-break push order on one stream (xds_protocol.rst, eventual consistency).
const ORDER: [&str; 5] = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET];

/// Responses above this size are logged: they hint at a fleet that outgrew SotW.
const LARGE_RESPONSE: usize = 4 << 20;

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

/// What the client holds of one resource, as far as this stream knows.
#[derive(Clone, Debug)]
pub(crate) enum Held {
    /// Delta: the client was told the resource does not exist.
    Absent,
    /// The client has this version. The body is unknown for versions the client announced
    /// itself (delta `initial_resource_versions`).
    Has {
        version: String,
        body: Option<Arc<Any>>,
    },
}

impl Held {
    pub(crate) fn from(r: &Resource) -> Self {
        Held::Has {
            version: r.version.clone(),
            body: Some(r.body.clone()),
        }
    }

    pub(crate) fn is(&self, r: &Resource) -> bool {
        matches!(self, Held::Has { version, .. } if *version == r.version)
    }
}

pub(crate) struct InFlight {
    pub(crate) nonce: String,
    pub(crate) version: String,
    pub(crate) sent_at: Instant,
    /// Names the response carried (delta: removals too), to attribute a NACK.
    pub(crate) names: Vec<String>,
}

/// One type URL on one stream.
#[derive(Default)]
pub(crate) struct TypeState {
    /// A request of this type arrived on the stream.
    pub(crate) requested: bool,
    pub(crate) wildcard: bool,
    /// Explicitly subscribed names (never `*`).
    pub(crate) names: BTreeSet<String>,
    /// SotW: some request named resources, so the legacy wildcard no longer applies.
    pub(crate) ever_named: bool,
    pub(crate) held: BTreeMap<String, Held>,
    /// Names to send (or, in delta, to declare removed) even if the client holds them.
    pub(crate) force: BTreeSet<String>,
    /// Answer even with nothing new (first wildcard or LDS/CDS request).
    pub(crate) must_respond: bool,
    pub(crate) in_flight: Option<InFlight>,
    pub(crate) last_nonce: Option<String>,
    pub(crate) sent_version: Option<String>,
    pub(crate) acked_version: Option<String>,
    pub(crate) last_nack: Option<Nack>,
}

impl TypeState {
    pub(crate) fn covers(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// Resources the subscription selects from `view`, sorted by name, without duplicates.
    pub(crate) fn desired<'v>(&self, view: &'v View, type_url: &str) -> Vec<&'v Resource> {
        if self.wildcard {
            view.resources(type_url)
        } else {
            self.names
                .iter()
                .filter_map(|n| view.get(type_url, n))
                .collect()
        }
    }
}

/// The fleet snapshot plus resources kept alive for make-before-break.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) snapshot: Snapshot,
    /// Clusters (and their endpoints) the snapshot dropped but the client still needs until the
    /// listeners and routes that used them are replaced. By type URL, then name.
    pub(crate) retained: BTreeMap<String, BTreeMap<String, Resource>>,
}

impl View {
    pub(crate) fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.snapshot
            .get(type_url, name)
            .or_else(|| self.retained.get(type_url)?.get(name))
    }

    pub(crate) fn resources(&self, type_url: &str) -> Vec<&Resource> {
        let mut all: Vec<&Resource> = self.snapshot.resources(type_url).collect();
        if let Some(kept) = self.retained.get(type_url).filter(|k| !k.is_empty()) {
            all.extend(kept.values());
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        all
    }

    pub(crate) fn version(&self, type_url: &str) -> String {
        match self.retained.get(type_url) {
            Some(kept) if !kept.is_empty() => version_of(
                self.resources(type_url)
                    .into_iter()
                    .map(|r| (&*r.name, &*r.version)),
            ),
            _ => self.snapshot.version(type_url),
        }
    }
}

/// The wire rules of one protocol variant (SotW or delta).
pub(crate) trait Protocol: Send + 'static {
    type Request: prost::Message + Default + Send + 'static;
    type Response: prost::Message + Send + 'static;

    fn node(req: &Self::Request) -> Option<&Node>;
    fn type_url_mut(req: &mut Self::Request) -> &mut String;
    /// Applies a request: ACK/NACK bookkeeping and subscription changes.
    fn on_request(st: &mut StreamState, req: Self::Request);
    /// Whether the client should get a response for this type now.
    fn has_work(view: &View, type_url: &str, ts: &TypeState) -> bool;
    /// Builds the response and records it as sent.
    fn build(st: &mut StreamState, type_url: &str) -> Self::Response;
    /// Called after the stream switched to a new snapshot.
    fn on_snapshot(_st: &mut StreamState) {}
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
    cache: Cache,
}

impl StreamState {
    fn new(id: u64, node: Node, variant: Variant, cache: Cache) -> Self {
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

    fn event(&self, kind: XdsEventKind, type_url: &str, version: &str, message: &str) {
        // No subscribers is fine: events are best effort.
        let _ = self.cache.inner.events.send(XdsEvent {
            kind,
            node_id: self.node.id.clone(),
            fleet: self.node.cluster.clone(),
            type_url: type_url.to_string(),
            version: version.to_string(),
            message: message.to_string(),
        });
    }

    /// Records the ACK (or NACK, with `error`) of the in-flight response of a type.
    pub(crate) fn acknowledge(&mut self, type_url: &str, error: Option<String>) {
        let Some(ts) = self.types.get_mut(type_url) else {
            return;
        };
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
                self.event(XdsEventKind::Acked, type_url, &sent.version, "");
            }
            Some(message) => {
                metrics.nacked(type_url);
                let resource_names = nack_names(&sent.names, &message);
                warn!(type_url, version = %sent.version, ?resource_names, %message, "NACK");
                ts.last_nack = Some(Nack {
                    version: sent.version.clone(),
                    message: message.clone(),
                    resource_names,
                    at: SystemTime::now(),
                });
                self.event(XdsEventKind::Nacked, type_url, &sent.version, &message);
            }
        }
    }

    /// Records a response as sent and applies what it implies for other types.
    /// `warm`: children of the resources the client did not have in this version.
    pub(crate) fn sent(&mut self, type_url: &str, sent: InFlight, warm: Vec<String>) {
        let ts = self.types.entry(type_url.to_string()).or_default();
        ts.sent_version = Some(sent.version.clone());
        ts.last_nonce = Some(sent.nonce.clone());
        ts.in_flight = Some(sent);
        ts.force.clear();
        ts.must_respond = false;
        // Warming: an updated cluster (listener) only becomes active after a fresh EDS (RDS)
        // answer, even when its endpoints (routes) did not change.
        let child = match type_url {
            CLUSTER => ENDPOINT,
            LISTENER => ROUTE,
            _ => return,
        };
        if let Some(ts) = self.types.get_mut(child) {
            for name in warm {
                if ts.covers(&name) {
                    ts.force.insert(name);
                }
            }
        }
    }

    /// The next type to answer: the first in push order with something to send, unless an
    /// earlier type awaits its ACK (ADS only; per-type streams have a single type).
    fn next_type<P: Protocol>(&self) -> Option<String> {
        let mut order: Vec<&String> = self.types.keys().collect();
        order.sort_by_key(|t| (rank(t), t.as_str()));
        for t in order {
            let ts = &self.types[t];
            if ts.in_flight.is_some() {
                return None;
            }
            if P::has_work(&self.view, t, ts) {
                return Some(t.clone());
            }
        }
        None
    }

    fn switch_snapshot<P: Protocol>(&mut self, published: Published) {
        let old = std::mem::replace(&mut self.view.snapshot, published.unwrap_or_default());
        let snapshot = &self.view.snapshot;
        for (t, kept) in self.view.retained.iter_mut() {
            kept.retain(|name, _| snapshot.get(t, name).is_none());
        }
        // Make-before-break: when listeners or routes change too, clusters the snapshot dropped
        // stay until those changes are through; `cleanup` then removes them.
        if self.variant.is_ads() && [LISTENER, ROUTE].iter().any(|t| self.has_work::<P>(t)) {
            for t in [CLUSTER, ENDPOINT] {
                let Some(ts) = self.types.get(t) else {
                    continue;
                };
                for (name, held) in &ts.held {
                    if self.view.snapshot.get(t, name).is_some() {
                        continue;
                    }
                    let Held::Has { version, body } = held else {
                        continue;
                    };
                    let body = body.clone().or_else(|| {
                        old.get(t, name)
                            .filter(|r| r.version == *version)
                            .map(|r| r.body.clone())
                    });
                    if let Some(body) = body {
                        let r = Resource {
                            name: name.clone(),
                            version: version.clone(),
                            body,
                            children: Arc::from([]),
                        };
                        self.view
                            .retained
                            .entry(t.to_string())
                            .or_default()
                            .insert(name.clone(), r);
                    }
                }
            }
        }
        P::on_snapshot(self);
    }

    fn has_work<P: Protocol>(&self, type_url: &str) -> bool {
        self.types
            .get(type_url)
            .is_some_and(|ts| P::has_work(&self.view, type_url, ts))
    }

    /// Drops retained clusters once everything after CDS is sent and ACKed.
    fn cleanup<P: Protocol>(&mut self) {
        if self.view.retained.values().all(BTreeMap::is_empty) {
            return;
        }
        let busy = self
            .types
            .iter()
            .filter(|(t, _)| t.as_str() != CLUSTER)
            .any(|(t, ts)| ts.in_flight.is_some() || P::has_work(&self.view, t, ts));
        if !busy {
            debug!("removing clusters retained for make-before-break");
            self.view.retained.clear();
        }
    }

    pub(crate) fn status(&self) -> NodeStatus {
        let types = self
            .types
            .iter()
            .map(|(t, ts)| {
                let state = if ts.last_nack.is_some() {
                    SyncState::Nacked
                } else if ts.sent_version.is_none() {
                    SyncState::NotSent
                } else if ts.in_flight.is_some() || ts.acked_version.is_none() {
                    SyncState::Stale
                } else if self.variant.is_delta() {
                    // Pending work is protocol specific; an unsent newer snapshot shows up as
                    // a differing version.
                    if ts.acked_version.as_deref() == Some(&*self.view.version(t)) {
                        SyncState::Synced
                    } else {
                        SyncState::Stale
                    }
                } else if ts.acked_version.as_deref() == Some(&*self.view.version(t)) {
                    SyncState::Synced
                } else {
                    SyncState::Stale
                };
                let mut subscribed: Vec<String> = ts.names.iter().cloned().collect();
                if ts.wildcard {
                    subscribed.insert(0, "*".to_string());
                }
                let status = TypeStatus {
                    sent_version: ts.sent_version.clone(),
                    sent_nonce: ts.last_nonce.clone(),
                    acked_version: ts.acked_version.clone(),
                    state,
                    last_nack: ts.last_nack.clone(),
                    subscribed,
                };
                (t.clone(), status)
            })
            .collect();
        NodeStatus {
            stream_id: self.id,
            node_id: self.node.id.clone(),
            fleet: self.node.cluster.clone(),
            variant: self.variant,
            connected_since: self.connected_since,
            types,
        }
    }

    /// What the client holds, by type URL and name, where the body is known.
    pub(crate) fn sent_resources(&self) -> BTreeMap<String, BTreeMap<String, Arc<Any>>> {
        let mut out = BTreeMap::new();
        for (t, ts) in &self.types {
            let mut held = BTreeMap::new();
            for (name, h) in &ts.held {
                let Held::Has { version, body } = h else {
                    continue;
                };
                let body = body.clone().or_else(|| {
                    self.view
                        .get(t, name)
                        .filter(|r| r.version == *version)
                        .map(|r| r.body.clone())
                });
                if let Some(body) = body {
                    held.insert(name.clone(), body);
                }
            }
            if !held.is_empty() {
                out.insert(t.clone(), held);
            }
        }
        out
    }

    pub(crate) fn metrics_sent(&self, type_url: &str, bytes: usize) {
        self.cache.inner.metrics.pushed(type_url, bytes);
        if bytes > LARGE_RESPONSE {
            warn!(type_url, bytes, "large xDS response");
        }
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

/// Ends when the server shuts down; never, if nobody can shut it down.
pub(crate) async fn shutdown_signal(mut rx: watch::Receiver<bool>) {
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

type Tx<P> = mpsc::Sender<Result<<P as Protocol>::Response, Status>>;

/// Serves one stream until the client leaves or the server shuts down.
pub(crate) async fn run<P: Protocol>(
    cache: Cache,
    shutdown: watch::Receiver<bool>,
    variant: Variant,
    fixed_type: Option<&'static str>,
    mut requests: Streaming<P::Request>,
    tx: Tx<P>,
) {
    let shutdown = shutdown_signal(shutdown);
    tokio::pin!(shutdown);
    let first = tokio::select! {
        _ = &mut shutdown => return,
        first = requests.message() => first,
    };
    let mut first = match first {
        Ok(Some(first)) => first,
        Ok(None) => return,
        Err(status) => {
            debug!(%status, "stream failed before its first request");
            return;
        }
    };
    if let Err(status) = check_type::<P>(&mut first, fixed_type) {
        let _ = tx.send(Err(status)).await;
        return;
    }
    let Some(node) = P::node(&first).cloned() else {
        let status = Status::invalid_argument("the first request on a stream must carry node");
        let _ = tx.send(Err(status)).await;
        return;
    };
    let id = cache.next_stream_id();
    let span =
        tracing::info_span!("xds", stream = id, node = %node.id, fleet = %node.cluster, %variant);
    let state = Arc::new(Mutex::new(StreamState::new(
        id,
        node,
        variant,
        cache.clone(),
    )));
    let registration = Registration::new(cache, state.clone());
    serve::<P>(&state, first, requests, tx, fixed_type, shutdown)
        .instrument(span)
        .await;
    drop(registration);
}

async fn serve<P: Protocol>(
    state: &Mutex<StreamState>,
    first: P::Request,
    mut requests: Streaming<P::Request>,
    tx: Tx<P>,
    fixed_type: Option<&'static str>,
    mut shutdown: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) {
    let (mut snapshots, fleet) = {
        let st = lock(state);
        (st.cache.watch(st.fleet()), st.fleet().to_string())
    };
    info!("xDS stream connected");
    {
        let mut st = lock(state);
        st.switch_snapshot::<P>(snapshots.borrow_and_update().clone());
        P::on_request(&mut st, first);
    }
    loop {
        let next = lock(state).next_type::<P>();
        tokio::select! {
            _ = &mut shutdown => {
                debug!("server shutting down; ending stream");
                break;
            }
            req = requests.message() => match req {
                Ok(Some(mut req)) => {
                    if let Err(status) = check_type::<P>(&mut req, fixed_type) {
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                    P::on_request(&mut lock(state), req);
                }
                Ok(None) => break,
                Err(status) => {
                    debug!(%status, "request stream ended");
                    break;
                }
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    // The fleet entry went away while we watch it: cannot happen while we hold
                    // a receiver, but end cleanly rather than spin.
                    break;
                }
                let published = snapshots.borrow_and_update().clone();
                lock(state).switch_snapshot::<P>(published);
            }
            permit = tx.reserve(), if next.is_some() => {
                let Ok(permit) = permit else { break };
                let Some(type_url) = next else { continue };
                let response = {
                    let mut st = lock(state);
                    let response = P::build(&mut st, &type_url);
                    st.metrics_sent(&type_url, prost::Message::encoded_len(&response));
                    response
                };
                permit.send(Ok(response));
            }
        }
        lock(state).cleanup::<P>();
    }
    info!("xDS stream closed");
    let _ = fleet;
}

fn check_type<P: Protocol>(
    req: &mut P::Request,
    fixed: Option<&'static str>,
) -> Result<(), Status> {
    let type_url = P::type_url_mut(req);
    match fixed {
        Some(fixed) if type_url.is_empty() => {
            *type_url = fixed.to_string();
            Ok(())
        }
        Some(fixed) if type_url != fixed => Err(Status::invalid_argument(format!(
            "type_url {type_url} on the {fixed} service"
        ))),
        None if type_url.is_empty() => Err(Status::invalid_argument("type_url is required on ADS")),
        _ => Ok(()),
    }
}

/// Keeps a stream in the cache's registry, and reports connect/disconnect.
struct Registration {
    cache: Cache,
    id: u64,
    fleet: String,
    node_id: String,
}

impl Registration {
    fn new(cache: Cache, state: Arc<Mutex<StreamState>>) -> Self {
        let (id, fleet, node_id) = {
            let st = lock(&state);
            (st.id, st.fleet().to_string(), st.node_id().to_string())
        };
        cache.register(id, state.clone());
        lock(&state).event(XdsEventKind::Connected, "", "", "");
        Registration {
            cache,
            id,
            fleet,
            node_id,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.deregister(self.id, &self.fleet);
        let _ = self.cache.inner.events.send(XdsEvent {
            kind: XdsEventKind::Disconnected,
            node_id: self.node_id.clone(),
            fleet: self.fleet.clone(),
            type_url: String::new(),
            version: String::new(),
            message: String::new(),
        });
    }
}
