//! One simulated Envoy: an ADS stream (state of the world or delta) that subscribes like
//! Envoy does (wildcard CDS and LDS, then EDS and RDS for the names they refer to), ACKs every
//! response at once, and reports when it holds the complete config and when it ACKed a change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Channel;

use super::decode::{CLUSTER, ENDPOINT, LISTENER, ROUTE, child_type};
use super::probe::Shared;

/// Largest response a simulated Envoy accepts (a 10k-route RDS or CDS is a few MB).
const MAX_MESSAGE: usize = 256 << 20;

/// Runs one stream until it fails or the server closes it; errors are reported to `shared`.
pub async fn run(channel: Channel, id: String, delta: bool, shared: Arc<Shared>) {
    let result = if delta {
        run_delta(channel, &id, &shared).await
    } else {
        run_sotw(channel, &id, &shared).await
    };
    if let Err(err) = result {
        shared.fail(format!("{id}: {err:#}"));
    }
}

fn node(id: &str, shared: &Shared) -> Node {
    Node {
        id: id.to_string(),
        cluster: shared.fleet.clone(),
        ..Default::default()
    }
}

/// Sync and probe bookkeeping common to both variants.
struct Progress {
    started: Instant,
    synced: bool,
    /// Id of the last probe this stream reported.
    probed: u64,
}

impl Progress {
    /// Reports the current probe when `has_marker` says this response carries it. Called after
    /// the ACK was queued.
    fn check_probe(&mut self, shared: &Shared, has_marker: impl FnOnce(u64, &[u8]) -> bool) {
        let probe = shared.probe.borrow().clone();
        if let Some(probe) = probe
            && probe.id != self.probed
            && has_marker(probe.id, &probe.marker)
        {
            self.probed = probe.id;
            probe.record(Instant::now());
        }
    }

    fn check_sync(&mut self, shared: &Shared, complete: bool) {
        if !self.synced && complete {
            self.synced = true;
            shared.synced(self.started.elapsed());
        }
    }
}

// ---- state of the world ----

#[derive(Default)]
struct SotwType {
    version: String,
    nonce: String,
    /// EDS/RDS: names subscribed to.
    names: BTreeSet<String>,
    /// Names received so far.
    received: BTreeSet<String>,
    acked: bool,
}

async fn run_sotw(channel: Channel, id: &str, shared: &Shared) -> anyhow::Result<()> {
    let started = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    // Envoy sends its node only on the first request (Portico's bootstrap sets
    // set_node_on_first_message_only).
    for (i, type_url) in [CLUSTER, LISTENER].into_iter().enumerate() {
        let node = (i == 0).then(|| node(id, shared));
        tx.send(DiscoveryRequest {
            node,
            type_url: type_url.into(),
            ..Default::default()
        })?;
    }
    let mut responses = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .context("opening the ADS stream")?
        .into_inner();
    let mut types: BTreeMap<&'static str, SotwType> = BTreeMap::new();
    let mut progress = Progress {
        started,
        synced: false,
        probed: 0,
    };
    while let Some(response) = responses.message().await.context("ADS stream")? {
        shared
            .bytes
            .fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        on_sotw_response(&tx, &mut types, shared, &response)?;
        progress.check_probe(shared, |probe, marker| {
            let key = format!("{}@{}", response.type_url, response.version_info);
            shared
                .decoder
                .has_marker(probe, key, marker, response.resources.iter())
        });
        let complete = [CLUSTER, LISTENER]
            .iter()
            .all(|t| types.get(t).is_some_and(|s| s.acked))
            && [ENDPOINT, ROUTE]
                .iter()
                .all(|t| types.get(t).is_none_or(|s| s.names.is_subset(&s.received)));
        progress.check_sync(shared, complete);
    }
    anyhow::bail!("server closed the stream")
}

fn on_sotw_response(
    tx: &mpsc::UnboundedSender<DiscoveryRequest>,
    types: &mut BTreeMap<&'static str, SotwType>,
    shared: &Shared,
    response: &DiscoveryResponse,
) -> anyhow::Result<()> {
    let Some(type_url) = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        .into_iter()
        .find(|t| *t == response.type_url)
    else {
        anyhow::bail!("unexpected type {}", response.type_url);
    };
    let summaries = shared
        .decoder
        .sotw(type_url, &response.version_info, &response.resources);
    // Subscribe to new children before ACKing the parent, as Envoy does while it warms them.
    if let Some(child) = child_type(type_url) {
        let wanted: BTreeSet<String> = summaries
            .iter()
            .flat_map(|s| s.children.iter().cloned())
            .collect();
        let state = types.entry(child).or_default();
        if wanted != state.names {
            state.names = wanted;
            tx.send(DiscoveryRequest {
                version_info: state.version.clone(),
                response_nonce: state.nonce.clone(),
                type_url: child.into(),
                resource_names: state.names.iter().cloned().collect(),
                ..Default::default()
            })?;
        }
    }
    let state = types.entry(type_url).or_default();
    state.version = response.version_info.clone();
    state.nonce = response.nonce.clone();
    state.acked = true;
    state
        .received
        .extend(summaries.iter().map(|s| s.name.clone()));
    tx.send(DiscoveryRequest {
        version_info: state.version.clone(),
        response_nonce: state.nonce.clone(),
        type_url: type_url.into(),
        resource_names: state.names.iter().cloned().collect(),
        ..Default::default()
    })?;
    Ok(())
}

// ---- delta ----

#[derive(Default)]
struct DeltaType {
    /// EDS/RDS: names subscribed to.
    names: BTreeSet<String>,
    /// Held resources: name -> (version, children).
    held: BTreeMap<String, (String, Arc<[String]>)>,
    /// Names the server said do not exist.
    absent: BTreeSet<String>,
    answered: bool,
}

async fn run_delta(channel: Channel, id: &str, shared: &Shared) -> anyhow::Result<()> {
    let started = Instant::now();
    let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE);
    for (i, type_url) in [CLUSTER, LISTENER].into_iter().enumerate() {
        let node = (i == 0).then(|| node(id, shared));
        tx.send(DeltaDiscoveryRequest {
            node,
            type_url: type_url.into(),
            ..Default::default()
        })?;
    }
    let mut responses = client
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .context("opening the delta ADS stream")?
        .into_inner();
    let mut types: BTreeMap<&'static str, DeltaType> = BTreeMap::new();
    let mut progress = Progress {
        started,
        synced: false,
        probed: 0,
    };
    while let Some(response) = responses.message().await.context("delta ADS stream")? {
        shared
            .bytes
            .fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        on_delta_response(&tx, &mut types, shared, &response)?;
        progress.check_probe(shared, |probe, marker| {
            response.resources.iter().any(|r| {
                let key = format!("{}@{}@{}", response.type_url, r.name, r.version);
                shared
                    .decoder
                    .has_marker(probe, key, marker, r.resource.iter())
            })
        });
        let complete = [CLUSTER, LISTENER]
            .iter()
            .all(|t| types.get(t).is_some_and(|s| s.answered))
            && [ENDPOINT, ROUTE].iter().all(|t| {
                types.get(t).is_none_or(|s| {
                    s.names
                        .iter()
                        .all(|n| s.held.contains_key(n) || s.absent.contains(n))
                })
            });
        progress.check_sync(shared, complete);
    }
    anyhow::bail!("server closed the stream")
}

fn on_delta_response(
    tx: &mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    types: &mut BTreeMap<&'static str, DeltaType>,
    shared: &Shared,
    response: &DeltaDiscoveryResponse,
) -> anyhow::Result<()> {
    let Some(type_url) = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        .into_iter()
        .find(|t| *t == response.type_url)
    else {
        anyhow::bail!("unexpected type {}", response.type_url);
    };
    let state = types.entry(type_url).or_default();
    state.answered = true;
    for r in &response.resources {
        let children =
            shared
                .decoder
                .delta_children(type_url, &r.name, &r.version, r.resource.as_ref());
        state.absent.remove(&r.name);
        state
            .held
            .insert(r.name.clone(), (r.version.clone(), children));
    }
    for name in &response.removed_resources {
        state.held.remove(name);
        state.absent.insert(name.clone());
    }
    if let Some(child) = child_type(type_url) {
        let wanted: BTreeSet<String> = state
            .held
            .values()
            .flat_map(|(_, c)| c.iter().cloned())
            .collect();
        let child_state = types.entry(child).or_default();
        let subscribe: Vec<String> = wanted.difference(&child_state.names).cloned().collect();
        let unsubscribe: Vec<String> = child_state.names.difference(&wanted).cloned().collect();
        if !subscribe.is_empty() || !unsubscribe.is_empty() {
            for name in &unsubscribe {
                child_state.held.remove(name);
                child_state.absent.remove(name);
            }
            child_state.names = wanted;
            tx.send(DeltaDiscoveryRequest {
                type_url: child.into(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            })?;
        }
    }
    tx.send(DeltaDiscoveryRequest {
        type_url: type_url.into(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    })?;
    Ok(())
}
