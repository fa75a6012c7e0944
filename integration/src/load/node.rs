//! One simulated Envoy: an ADS stream (state of the world or delta) that subscribes like
//! Envoy does (wildcard CDS and LDS, then EDS and RDS for the names they refer to), ACKs every
//! response at once, and reports when it holds the complete config and when it ACKed a change.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tonic::transport::Channel;

use super::ads;
use super::decode::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SotwSummary, child_type};
use super::envelope::{self, DeltaEnvelope, SotwEnvelope, framed, sotw_request};
use super::probe::{Probe, Shared};
use super::rope::Rope;

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
        if let Some(probe) = self.probe_hit(shared, has_marker) {
            self.record(&probe);
        }
    }

    /// The current probe, if this response carries it and it was not reported yet.
    fn probe_hit(
        &self,
        shared: &Shared,
        has_marker: impl FnOnce(u64, &[u8]) -> bool,
    ) -> Option<Arc<Probe>> {
        let probe = shared.probe.borrow().clone()?;
        (probe.id != self.probed && has_marker(probe.id, &probe.marker)).then_some(probe)
    }

    /// Reports the probe: its response was ACKed just now.
    fn record(&mut self, probe: &Probe) {
        self.probed = probe.id;
        probe.record(Instant::now());
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
    /// EDS/RDS: names subscribed to (shared by every stream that follows the same parents),
    /// and their encoding as `resource_names`.
    names: Arc<BTreeSet<String>>,
    encoded_names: Bytes,
    /// Responses received so far (until the stream is synced).
    received: Vec<Arc<SotwSummary>>,
    acked: bool,
}

async fn run_sotw(channel: Channel, id: &str, shared: &Shared) -> anyhow::Result<()> {
    let started = Instant::now();
    // Envoy sends its node only on the first request (Portico's bootstrap sets
    // set_node_on_first_message_only).
    let first = [CLUSTER, LISTENER]
        .into_iter()
        .enumerate()
        .map(|(i, type_url)| {
            framed(&DiscoveryRequest {
                node: (i == 0).then(|| node(id, shared)),
                type_url: type_url.into(),
                ..Default::default()
            })
        })
        .collect();
    let mut stream = ads::open(channel, ads::SOTW, first)
        .await
        .context("opening the ADS stream")?;
    let mut types: BTreeMap<&'static str, SotwType> = BTreeMap::new();
    let mut progress = Progress {
        started,
        synced: false,
        probed: 0,
    };
    while let Some(rope) = stream.message().await.context("ADS stream")? {
        // The message length is the encoded response (without gRPC/HTTP/2 framing).
        shared.bytes.fetch_add(rope.len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        let response = envelope::sotw(&rope).context("decoding a DiscoveryResponse")?;
        on_sotw_response(
            &stream,
            &mut types,
            shared,
            &response,
            &rope,
            progress.synced,
        )?;
        progress.check_probe(shared, |probe, marker| {
            let key = format!("{}@{}", response.type_url, response.version_info);
            shared.decoder.has_marker(probe, key, marker, || {
                envelope::sotw_bodies(&rope).unwrap_or_default()
            })
        });
        if !progress.synced {
            let complete = [CLUSTER, LISTENER]
                .iter()
                .all(|t| types.get(t).is_some_and(|s| s.acked))
                && [ENDPOINT, ROUTE].iter().all(|t| {
                    types
                        .get(t)
                        .is_none_or(|s| shared.decoder.covers(&s.names, &s.received))
                });
            progress.check_sync(shared, complete);
            if progress.synced {
                for state in types.values_mut() {
                    state.received = Vec::new();
                }
            }
        }
    }
    anyhow::bail!("server closed the stream")
}

fn on_sotw_response(
    stream: &ads::Stream,
    types: &mut BTreeMap<&'static str, SotwType>,
    shared: &Shared,
    response: &SotwEnvelope,
    rope: &Rope,
    synced: bool,
) -> anyhow::Result<()> {
    let Some(type_url) = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        .into_iter()
        .find(|t| *t == response.type_url)
    else {
        anyhow::bail!("unexpected type {}", response.type_url);
    };
    let summary = shared.decoder.sotw(type_url, &response.version_info, || {
        envelope::sotw_bodies(rope).unwrap_or_default()
    });
    // Subscribe to new children before ACKing the parent, as Envoy does while it warms them.
    if let Some(child) = child_type(type_url) {
        let state = types.entry(child).or_default();
        if !Arc::ptr_eq(&summary.children, &state.names) && summary.children != state.names {
            state.names = summary.children.clone();
            state.encoded_names = summary.children_encoded.clone();
            stream.send(sotw_request(
                &state.version,
                &state.encoded_names,
                child,
                &state.nonce,
            ))?;
        }
    }
    let state = types.entry(type_url).or_default();
    state.version.clone_from(&response.version_info);
    state.nonce.clone_from(&response.nonce);
    state.acked = true;
    if !synced {
        state.received.push(summary.clone());
    }
    stream.send(sotw_request(
        &state.version,
        &state.encoded_names,
        type_url,
        &state.nonce,
    ))?;
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
    let first = [CLUSTER, LISTENER]
        .into_iter()
        .enumerate()
        .map(|(i, type_url)| {
            framed(&DeltaDiscoveryRequest {
                node: (i == 0).then(|| node(id, shared)),
                type_url: type_url.into(),
                ..Default::default()
            })
        })
        .collect();
    let mut stream = ads::open(channel, ads::DELTA, first)
        .await
        .context("opening the delta ADS stream")?;
    let mut types: BTreeMap<&'static str, DeltaType> = BTreeMap::new();
    let mut progress = Progress {
        started,
        synced: false,
        probed: 0,
    };
    while let Some(rope) = stream.message().await.context("delta ADS stream")? {
        shared.bytes.fetch_add(rope.len() as u64, Ordering::Relaxed);
        shared.responses.fetch_add(1, Ordering::Relaxed);
        let response = envelope::delta(&rope).context("decoding a DeltaDiscoveryResponse")?;
        // Looked for before the response is taken apart; reported once it is ACKed.
        let hit = progress.probe_hit(shared, |probe, marker| {
            response.resources.iter().any(|r| {
                let key = format!("{}@{}@{}", response.type_url, r.name, r.version);
                shared.decoder.has_marker(probe, key, marker, || {
                    r.body
                        .and_then(|b| envelope::delta_body(&rope, b).ok())
                        .into_iter()
                        .collect()
                })
            })
        });
        on_delta_response(&stream, &mut types, shared, response, &rope)?;
        if let Some(probe) = hit {
            progress.record(&probe);
        }
        if !progress.synced {
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
    }
    anyhow::bail!("server closed the stream")
}

fn on_delta_response(
    stream: &ads::Stream,
    types: &mut BTreeMap<&'static str, DeltaType>,
    shared: &Shared,
    response: DeltaEnvelope,
    rope: &Rope,
) -> anyhow::Result<()> {
    let Some(type_url) = [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        .into_iter()
        .find(|t| *t == response.type_url)
    else {
        anyhow::bail!("unexpected type {}", response.type_url);
    };
    let state = types.entry(type_url).or_default();
    state.answered = true;
    let mut parents_changed = false;
    let parent = child_type(type_url).is_some();
    // Only clusters and listeners refer to other resources.
    let mut children = if parent {
        shared
            .decoder
            .delta_children(type_url, &response.resources, rope)
            .into_iter()
    } else {
        Vec::new().into_iter()
    };
    for r in response.resources {
        let children = children
            .next()
            .unwrap_or_else(|| shared.decoder.no_children());
        if !state.absent.is_empty() {
            state.absent.remove(&r.name);
        }
        let old = state.held.insert(r.name, (r.version, children.clone()));
        parents_changed |= old.is_none_or(|(_, c)| c != children);
    }
    for name in response.removed {
        parents_changed |= state.held.remove(&name).is_some();
        state.absent.insert(name);
    }
    if let Some(child) = child_type(type_url)
        && parents_changed
    {
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
            stream.send(framed(&DeltaDiscoveryRequest {
                type_url: child.into(),
                resource_names_subscribe: subscribe,
                resource_names_unsubscribe: unsubscribe,
                ..Default::default()
            }))?;
        }
    }
    stream.send(framed(&DeltaDiscoveryRequest {
        type_url: type_url.into(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    }))?;
    Ok(())
}
