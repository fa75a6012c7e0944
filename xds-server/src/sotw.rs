//! State-of-the-world rules: full resource lists per request, stale nonces ignored, LDS/CDS
//! answered with the complete set.

use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use prost::Message;
use tokio::time::Instant;
use tonic::Status;
use tracing::debug;

use crate::names::list_hash;
use crate::shared::{Encoded, Key, Outgoing};
use crate::snapshot::Resource;
use crate::state::{InFlight, Protocol, StreamState, TypeState, ensure, full_state};
use crate::view::View;
use crate::wire::SotwResponse;

pub(crate) struct Sotw;

impl Protocol for Sotw {
    type Request = DiscoveryRequest;

    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }

    fn type_url_mut(req: &mut DiscoveryRequest) -> &mut String {
        &mut req.type_url
    }

    fn on_request(st: &mut StreamState, req: DiscoveryRequest) {
        let type_url = req.type_url.as_str();
        ensure(&mut st.types, type_url);
        let Some(ts) = st.types.get_mut(type_url) else {
            return;
        };
        ts.touch();
        let nonce = req.response_nonce.as_str();
        if !nonce.is_empty() && ts.last_nonce.as_deref().is_some_and(|last| last != nonce) {
            // A newer response is on its way; the client will answer that one with its
            // current subscription. (A nonce when nothing was sent yet comes from an earlier
            // stream: not stale, just meaningless.)
            debug!(type_url, nonce, "ignoring request with stale nonce");
            return;
        }
        let acks = !nonce.is_empty() && ts.in_flight.is_some();
        let first = !ts.requested;
        // Most requests are ACKs repeating the subscription: leave it alone then. The same
        // list as last time is recognised by its hash, without a lookup per name.
        let list = list_hash(&req.resource_names);
        let same = !first && (ts.last_list == Some(list) || unchanged(ts, &req.resource_names));
        ts.last_list = Some(list);
        if !same {
            subscribe(ts, type_url, &req.resource_names);
            ts.names = st.cache.inner.names.intern(std::mem::take(&mut ts.names));
        }
        if first {
            // First request of this type on the stream: after a reconnect its version_info
            // says what the client already holds.
            st.sotw_resume::<Sotw>(type_url, &req.version_info);
            return;
        }
        if !acks && same && !st.variant.is_ads() {
            // The same subscription again, and not an ACK: Envoy re-requests when a cluster
            // (listener) it updated starts warming and needs a fresh answer. On ADS the server
            // sees the parent change and forces that answer itself; a per-type stream cannot.
            debug!(
                type_url,
                "re-request: sending the subscribed resources again"
            );
            let names: Vec<String> = ts
                .desired(&st.view, type_url)
                .iter()
                .map(|r| r.name.clone())
                .collect();
            ts.force.extend(names);
            ts.must_respond |= full_state(type_url);
        }
        if acks {
            let error = req.error_detail.map(|e| e.message);
            st.acknowledge(type_url, error);
        }
    }

    fn has_work(view: &View, type_url: &str, ts: &TypeState) -> bool {
        if !ts.requested {
            return false;
        }
        if ts.must_respond {
            return true;
        }
        ts.work_memo(view, type_url, || changes(view, type_url, ts))
    }

    fn build(st: &mut StreamState, type_url: &str) -> Result<Outgoing, Status> {
        let nonce = st.next_nonce();
        let version = st.view.version(type_url);
        ensure(&mut st.types, type_url);
        let Some(ts) = st.types.get_mut(type_url) else {
            return Err(Status::internal("no state for the type"));
        };
        ts.touch();
        let desired = ts.desired(&st.view, type_url);
        let full = full_state(type_url);
        let mut changed = Vec::new();
        let mut send = Vec::new();
        for r in desired {
            let fresh = !ts.held.get(&r.name).is_some_and(|h| h.is(r));
            if fresh {
                changed.extend(r.children.iter().cloned());
            }
            if full || fresh || ts.force.contains(&r.name) {
                send.push(r);
            }
        }
        let map = st.view.snapshot.type_map(type_url);
        if full || ts.held.len() == 0 {
            // (Nothing held: the same as inserting each, without building the exceptions
            // only to fold them into the shared map.)
            ts.held.assign(&send, map);
        } else {
            for r in &send {
                ts.held.insert_resource(r);
            }
            ts.held.rebase(map);
        }
        let mut key = Key::new("sotw", type_url, &version);
        for r in &send {
            key.add(&r.name);
            key.add(&r.version);
        }
        let (encoded, fresh) = st.cache.inner.responses.get_or_encode(key, || {
            let response = SotwResponse {
                version_info: version.clone(),
                resources: send.iter().map(|r| r.body.clone()).collect(),
                type_url: type_url.to_string(),
                nonce: String::new(),
            };
            Encoded {
                body: response.encode_to_vec().into(),
                names: send.iter().map(|r| r.name.clone()).collect(),
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
        debug!(type_url, version = %sent.version, resources = send.len(), "push");
        st.sent(type_url, sent, changed);
        out
    }

    /// EDS/RDS/SDS: forget resources the snapshot dropped, so they are sent again if they
    /// come back (the client may have let them go with their parents).
    fn on_snapshot(st: &mut StreamState) {
        for (type_url, ts) in st.types.iter_mut() {
            // Held names come from the view of the time; if this type's part of the view has
            // not changed since the last pass, nothing can have gone.
            let generation = st.view.generation(type_url);
            if !full_state(type_url) && ts.pruned_at != Some(generation) {
                ts.pruned_at = Some(generation);
                let gone: Vec<String> = ts
                    .held
                    .outside(st.view.snapshot.type_map(type_url))
                    .into_iter()
                    .filter(|(name, _)| st.view.get(type_url, name).is_none())
                    .map(|(name, _)| name.to_string())
                    .collect();
                for name in &gone {
                    ts.held.remove(name);
                }
                if !gone.is_empty() {
                    ts.touch();
                }
            }
        }
    }
}

/// Whether anything the subscription selects differs from what the client holds.
fn changes(view: &View, type_url: &str, ts: &TypeState) -> bool {
    let exact = view.retained.get(type_url).is_none_or(|k| k.is_empty())
        && view
            .snapshot
            .type_map(type_url)
            .is_some_and(|m| ts.held.is_exactly(m));
    if exact && ts.force.is_empty() {
        // The client holds the snapshot's resources of this type, all of them: only a full
        // state type whose subscription selects fewer has something to say.
        return full_state(type_url) && ts.desired(view, type_url).len() != ts.held.len();
    }
    let desired = ts.desired(view, type_url);
    let changed = |r: &&Resource| {
        ts.force.contains(&r.name) || !ts.held.get(&r.name).is_some_and(|h| h.is(r))
    };
    if full_state(type_url) {
        // Deletion by omission: anything held but no longer desired also needs a push.
        desired.len() != ts.held.len() || desired.iter().any(changed)
    } else {
        desired.iter().any(changed)
    }
}

/// Whether `subscribe(ts, names)` would leave the subscription as it is (`ts` has been
/// requested before). Conservative: duplicate names in the request count as a change.
fn unchanged(ts: &TypeState, names: &[String]) -> bool {
    if names.is_empty() {
        return ts.names.is_empty() && ts.wildcard != ts.ever_named;
    }
    let star = names.iter().any(|n| n == "*");
    let named = names.len() - names.iter().filter(|n| *n == "*").count();
    ts.ever_named
        && ts.wildcard == star
        && ts.names.len() == named
        && names.iter().all(|n| n == "*" || ts.names.contains(n))
}

/// Applies a SotW subscription (the complete list of names the client wants).
fn subscribe(ts: &mut TypeState, type_url: &str, names: &[String]) {
    let first = !ts.requested;
    ts.requested = true;
    let was_wildcard = ts.wildcard;
    let before = std::mem::take(&mut ts.names);
    if names.is_empty() {
        // Legacy wildcard only while the stream never named anything; afterwards an empty
        // list unsubscribes from everything.
        ts.wildcard = !ts.ever_named;
    } else {
        ts.ever_named = true;
        ts.wildcard = names.iter().any(|n| n == "*");
        ts.names = Arc::new(names.iter().filter(|n| *n != "*").cloned().collect());
    }
    // Newly requested names are always sent, even if they were sent before. Names the client
    // does not hold are sent anyway (and stay unheld until then): only held ones need forcing,
    // which spares a copy of every name of a first subscription.
    let added: Vec<String> = ts
        .names
        .difference(&before)
        .filter(|n| ts.held.contains_key(n))
        .cloned()
        .collect();
    ts.force.extend(added);
    if ((first || !was_wildcard) && ts.wildcard) || (first && full_state(type_url)) {
        ts.must_respond = true;
    }
    let (wildcard, names) = (ts.wildcard, &ts.names);
    ts.held.retain(|n, _| wildcard || names.contains(n));
    ts.force.retain(|n| wildcard || names.contains(n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_wildcard_then_names_then_unsubscribe_all() {
        let mut ts = TypeState::default();
        subscribe(&mut ts, crate::type_url::CLUSTER, &[]);
        assert!(ts.wildcard && ts.must_respond);
        assert!(unchanged(&ts, &[]));
        assert!(!unchanged(&ts, &["a".into()]));
        // Newly named: forced when held (the client may have dropped it), else sent anyway.
        let held = crate::held::Held::Has {
            version: "1".into(),
            body: None,
        };
        ts.held.insert("a".into(), held);
        subscribe(
            &mut ts,
            crate::type_url::CLUSTER,
            &["*".into(), "a".into(), "b".into()],
        );
        assert!(ts.wildcard && ts.names.contains("a") && ts.force.contains("a"));
        assert!(ts.names.contains("b") && !ts.force.contains("b"));
        subscribe(&mut ts, crate::type_url::CLUSTER, &["*".into(), "a".into()]);
        subscribe(&mut ts, crate::type_url::CLUSTER, &["a".into()]);
        assert!(!ts.wildcard);
        assert!(unchanged(&ts, &["a".into()]));
        assert!(!unchanged(&ts, &["a".into(), "a".into()]));
        assert!(!unchanged(&ts, &["a".into(), "*".into()]));
        assert!(!unchanged(&ts, &[]));
        subscribe(&mut ts, crate::type_url::CLUSTER, &[]);
        assert!(!ts.wildcard && ts.names.is_empty());
    }
}
