//! Incremental (delta) rules: subscribe/unsubscribe deltas honoured even with stale nonces,
//! only changed resources sent, deletions and non-existence in `removed_resources`.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use prost::Message;
use tokio::time::Instant;
use tonic::Status;
use tracing::debug;

use crate::held::{Held, HeldRef};
use crate::shared::{Encoded, Key, Outgoing};
use crate::state::{InFlight, Protocol, StreamState, TypeState, ensure};
use crate::view::View;
use crate::wire::{DeltaResponse, WireResource};

pub(crate) struct Delta;

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;

    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url_mut(req: &mut DeltaDiscoveryRequest) -> &mut String {
        &mut req.type_url
    }

    fn on_request(st: &mut StreamState, req: DeltaDiscoveryRequest) {
        let type_url = req.type_url.as_str();
        ensure(&mut st.types, type_url);
        let Some(ts) = st.types.get_mut(type_url) else {
            return;
        };
        ts.touch();
        let first = !ts.requested;
        subscribe(ts, &req);
        if !req.resource_names_subscribe.is_empty() || !req.resource_names_unsubscribe.is_empty() {
            ts.names = st.cache.inner.names.intern(std::mem::take(&mut ts.names));
        }
        if first
            && !req.initial_resource_versions.is_empty()
            && !Self::has_work(&st.view, type_url, ts)
        {
            // Reconnect: the client announced exactly the current resources, so nothing will
            // be sent, yet it is in sync.
            st.resume(type_url);
            return;
        }
        let acks = ts
            .in_flight
            .as_ref()
            .is_some_and(|f| !req.response_nonce.is_empty() && f.nonce == req.response_nonce);
        if acks {
            let error = req.error_detail.map(|e| e.message);
            st.acknowledge(type_url, error);
        } else if !req.response_nonce.is_empty() {
            debug!(type_url, nonce = %req.response_nonce, "request with an old nonce");
        }
    }

    fn has_work(view: &View, type_url: &str, ts: &TypeState) -> bool {
        if !ts.requested {
            return false;
        }
        if ts.must_respond {
            return true;
        }
        ts.work_memo(view, type_url, || {
            let map = view.snapshot.type_map(type_url);
            let exact = view.retained.get(type_url).is_none_or(|k| k.is_empty())
                && map.is_some_and(|m| ts.held.is_exactly(m));
            if let (true, Some(map)) = (exact && ts.force.is_empty(), map) {
                // The client holds the snapshot's resources of this type, all of them: only
                // subscribed names the snapshot lacks (not yet declared absent) are news.
                return ts.names.iter().any(|n| !map.contains_key(n));
            }
            let changed = ts.desired(view, type_url).into_iter().any(|r| {
                ts.force.contains(&r.name) || !ts.held.get(&r.name).is_some_and(|h| h.is(r))
            });
            changed || removals(view, type_url, ts).next().is_some()
        })
    }

    fn build(st: &mut StreamState, type_url: &str) -> Result<Outgoing, Status> {
        let nonce = st.next_nonce();
        let version = st.view.version(type_url);
        ensure(&mut st.types, type_url);
        let Some(ts) = st.types.get_mut(type_url) else {
            return Err(Status::internal("no state for the type"));
        };
        ts.touch();
        let mut resources = Vec::new();
        let mut changed = Vec::new();
        // Nothing held yet (a new stream): record what is sent in one go below, against the
        // shared map, rather than one exception per resource.
        let was_empty = ts.held.len() == 0;
        for r in ts.desired(&st.view, type_url) {
            let fresh = !ts.held.get(&r.name).is_some_and(|h| h.is(r));
            if fresh {
                changed.extend(r.children.iter().cloned());
            }
            if fresh || ts.force.contains(&r.name) {
                resources.push(r);
                if !was_empty {
                    ts.held.insert_resource(r);
                }
            }
        }
        if was_empty {
            ts.held
                .assign(&resources, st.view.snapshot.type_map(type_url));
        }
        let removed: BTreeSet<String> = removals(&st.view, type_url, ts).collect();
        for name in &removed {
            if ts.names.contains(name) {
                // Still subscribed: remember that the client knows it is absent.
                ts.held.insert(name.clone(), Held::Absent);
            } else {
                ts.held.remove(name);
            }
        }
        ts.held.rebase(st.view.snapshot.type_map(type_url));
        let mut key = Key::new("delta", type_url, &version);
        for r in &resources {
            key.add(&r.name);
            key.add(&r.version);
        }
        key.add("");
        for name in &removed {
            key.add(name);
        }
        let (encoded, fresh) = st.cache.inner.responses.get_or_encode(key, || {
            let response = DeltaResponse {
                system_version_info: version.clone(),
                resources: resources
                    .iter()
                    .map(|r| WireResource {
                        name: r.name.clone(),
                        version: r.version.clone(),
                        body: r.body.clone(),
                    })
                    .collect(),
                type_url: type_url.to_string(),
                removed_resources: removed.iter().cloned().collect(),
                nonce: String::new(),
            };
            Encoded {
                body: response.encode_to_vec().into(),
                names: resources
                    .iter()
                    .map(|r| r.name.clone())
                    .chain(removed.iter().cloned())
                    .collect(),
            }
        });
        if fresh {
            st.cache.inner.metrics.encoded(type_url);
        }
        let out = Outgoing::new(&encoded.encoded.body, &nonce);
        let sent = InFlight {
            nonce,
            version,
            sent_at: Instant::now(),
            body: encoded,
        };
        debug!(
            type_url,
            resources = resources.len(),
            removed = removed.len(),
            "push"
        );
        st.sent(type_url, sent, changed);
        out
    }
}

/// Names to put in `removed_resources`: held resources that are gone, subscribed names the
/// client has not been told are absent, and forced names that no longer exist.
fn removals<'a>(
    view: &'a View,
    type_url: &'a str,
    ts: &'a TypeState,
) -> impl Iterator<Item = String> + 'a {
    // Only names outside the snapshot can be gone: cheap when the client holds the snapshot.
    let gone = ts
        .held
        .outside(view.snapshot.type_map(type_url))
        .into_iter()
        .filter(move |(name, held)| {
            matches!(held, HeldRef::Has { .. })
                && ts.covers(name)
                && view.get(type_url, name).is_none()
        })
        .map(|(name, _)| name);
    let unknown = ts
        .names
        .iter()
        .filter(move |name| !ts.held.contains_key(name) && view.get(type_url, name).is_none())
        .map(String::as_str);
    let forced = ts
        .force
        .iter()
        .filter(move |name| ts.covers(name) && view.get(type_url, name).is_none())
        .map(String::as_str);
    gone.chain(unknown)
        .chain(forced)
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_string)
}

/// Applies subscription changes. Honoured whatever the nonce says.
fn subscribe(ts: &mut TypeState, req: &DeltaDiscoveryRequest) {
    let first = !ts.requested;
    ts.requested = true;
    if first {
        // Reconnect: what the client already has is not sent again.
        for (name, version) in &req.initial_resource_versions {
            let held = Held::Has {
                version: version.clone(),
                body: None,
            };
            ts.held.insert(name.clone(), held);
        }
        if req.resource_names_subscribe.is_empty() && req.resource_names_unsubscribe.is_empty() {
            ts.wildcard = true;
        }
    }
    for name in &req.resource_names_subscribe {
        if name == "*" {
            ts.wildcard = true;
            continue;
        }
        Arc::make_mut(&mut ts.names).insert(name.clone());
        if !first {
            // The client may have forgotten it: a (re)subscription is always answered.
            ts.force.insert(name.clone());
        }
    }
    for name in &req.resource_names_unsubscribe {
        if name == "*" {
            ts.wildcard = false;
            let names = &ts.names;
            ts.held.retain(|n, _| names.contains(n));
            ts.force.retain(|n| names.contains(n));
            continue;
        }
        Arc::make_mut(&mut ts.names).remove(name);
        if ts.wildcard {
            // The client cannot tell whether the wildcard still covers it: say so either way.
            ts.force.insert(name.clone());
        } else {
            ts.held.remove(name);
            ts.force.remove(name);
        }
    }
    if first && ts.wildcard {
        ts.must_respond = true;
    }
}
