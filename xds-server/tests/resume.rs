//! Reconnects (issue #3): a client that already holds the current config gets nothing again
//! and shows as SYNCED; a client that may still be warming is answered.

mod common;

use std::collections::HashMap;

use common::*;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use portico_xds::{NodeStatus, SyncState, Variant};

/// Walks an ADS client through `basic("a")` the way Envoy does; returns the last responses
/// of each type, which hold the versions a reconnecting Envoy would send.
async fn synced(h: &Harness, id: &str) -> (SotwClient, HashMap<&'static str, DiscoveryResponse>) {
    let mut c = SotwClient::ads(h, id).await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    c.subscribe(ENDPOINT, &["c1"]).await;
    c.ack(&cds, &[]).await;
    let eds = c.recv_ack(ENDPOINT, &["c1"]).await;
    let lds = c.recv_type(LISTENER).await;
    c.subscribe(ROUTE, &["r1"]).await;
    c.ack(&lds, &[]).await;
    let rds = c.recv_ack(ROUTE, &["r1"]).await;
    c.barrier().await;
    let held = [
        (CLUSTER, cds),
        (ENDPOINT, eds),
        (LISTENER, lds),
        (ROUTE, rds),
    ];
    (c, held.into_iter().collect())
}

/// The status of the newest stream of `node_id`.
fn newest(h: &Harness, node_id: &str) -> NodeStatus {
    h.cache
        .node_statuses()
        .into_iter()
        .filter(|s| s.node_id == node_id)
        .max_by_key(|s| s.stream_id)
        .expect("node connected")
}

/// Envoy's first requests on a new stream: each type with the version it holds, no nonce.
async fn reconnect(
    h: &Harness,
    id: &str,
    held: &HashMap<&'static str, DiscoveryResponse>,
    order: &[(&str, &[&str])],
) -> SotwClient {
    let mut c = SotwClient::ads(h, id).await;
    for (t, names) in order {
        c.send(request(t, names, &held[t].version_info, "")).await;
    }
    c
}

const ENVOY_ORDER: [(&str, &[&str]); 4] = [
    (CLUSTER, &[]),
    (ENDPOINT, &["c1"]),
    (LISTENER, &[]),
    (ROUTE, &["r1"]),
];

#[tokio::test]
async fn sotw_reconnect_with_current_versions_sends_nothing() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let (c, held) = synced(&h, "n1").await;
    drop(c);
    let mut d = reconnect(&h, "n1", &held, &ENVOY_ORDER).await;
    d.barrier().await;
    let status = newest(&h, "n1");
    for (t, resp) in &held {
        let ts = &status.types[*t];
        assert_eq!(ts.state, SyncState::Synced, "{t}: {ts:?}");
        assert_eq!(
            ts.acked_version.as_deref(),
            Some(&*resp.version_info),
            "{t}"
        );
    }
    // Later changes still flow: new endpoints, and an updated cluster gets a fresh EDS answer
    // although its endpoints did not change (warming).
    h.set(basic("b"));
    let eds = d.recv_ack(ENDPOINT, &["c1"]).await;
    assert_eq!(names(&eds), ["c1"]);
    d.barrier().await;
    let mut s = basic("b");
    s.insert(CLUSTER, "c1", cluster("c1", "v2"));
    h.set(s);
    let cds = d.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c1"]);
    let eds = d.recv_type(ENDPOINT).await;
    assert_eq!(names(&eds), ["c1"]);
    d.ack(&cds, &[]).await;
    d.ack(&eds, &["c1"]).await;
    d.barrier().await;
}

/// Envoy holds back its CDS request while clusters warm: EDS then comes first and must be
/// answered, or the warming cluster waits for its initial fetch timeout.
#[tokio::test]
async fn sotw_reconnect_eds_before_cds_is_answered() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let (c, held) = synced(&h, "n1").await;
    drop(c);
    let order: [(&str, &[&str]); 3] = [(ENDPOINT, &["c1"]), (LISTENER, &[]), (ROUTE, &["r1"])];
    let mut d = reconnect(&h, "n1", &held, &order).await;
    let eds = d.recv_ack(ENDPOINT, &["c1"]).await;
    assert_eq!(names(&eds), ["c1"]);
    // RDS follows LDS, which was resumed: nothing to send.
    d.barrier().await;
    let status = newest(&h, "n1");
    assert_eq!(status.types[ROUTE].state, SyncState::Synced);
}

#[tokio::test]
async fn sotw_reconnect_with_an_old_version_gets_everything() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let (c, held) = synced(&h, "n1").await;
    drop(c);
    let mut s = basic("a");
    s.insert(CLUSTER, "c1", cluster("c1", "v2"));
    h.set(s);
    let mut d = reconnect(&h, "n1", &held, &ENVOY_ORDER).await;
    let cds = d.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c1"]);
    // CDS is pushed, so EDS is not resumed: the updated cluster needs its answer.
    let eds = d.recv_ack(ENDPOINT, &["c1"]).await;
    assert_eq!(names(&eds), ["c1"]);
    d.ack(&cds, &[]).await;
    d.barrier().await;
}

/// Per-type streams cannot see CDS, so EDS is answered; CDS itself is resumed.
#[tokio::test]
async fn sotw_reconnect_per_type() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let (c, held) = synced(&h, "n1").await;
    drop(c);
    let mut cds = per_type_sotw(&h, CLUSTER, "n1").await;
    cds.send(request(CLUSTER, &[], &held[CLUSTER].version_info, ""))
        .await;
    let mut eds = per_type_sotw(&h, ENDPOINT, "n1").await;
    eds.send(request(ENDPOINT, &["c1"], &held[ENDPOINT].version_info, ""))
        .await;
    assert_eq!(names(&eds.recv_ack(ENDPOINT, &["c1"]).await), ["c1"]);
    eventually("CDS resumed", || {
        h.cache.node_statuses().iter().any(|s| {
            s.variant == Variant::SotwPerType
                && s.types
                    .get(CLUSTER)
                    .is_some_and(|t| t.state == SyncState::Synced)
        })
    })
    .await;
    h.set(basic("b"));
    assert_eq!(names(&eds.recv_ack(ENDPOINT, &["c1"]).await), ["c1"]);
}

/// Issue #3: a delta reconnect that needs nothing shows SYNCED with the versions, not
/// NOT_SENT.
#[tokio::test]
async fn delta_reconnect_with_current_versions_is_synced() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = DeltaClient::ads(&h, "n1").await;
    let mut versions: HashMap<&str, HashMap<String, String>> = HashMap::new();
    for (t, names) in ENVOY_ORDER {
        c.subscribe(t, names, &[]).await;
        let r = c.recv_ack(t).await;
        let held = r
            .resources
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()));
        versions.insert(t, held.collect());
    }
    c.barrier().await;
    drop(c);
    let mut d = DeltaClient::ads(&h, "n1").await;
    for (t, names) in ENVOY_ORDER {
        let mut req = delta_request(t, names, &[], "");
        req.initial_resource_versions = versions[t].clone();
        d.send(req).await;
    }
    // Wildcard types answer the first request (with nothing); the others send nothing.
    assert!(d.recv_ack(CLUSTER).await.resources.is_empty());
    assert!(d.recv_ack(LISTENER).await.resources.is_empty());
    d.barrier().await;
    let status = newest(&h, "n1");
    for (t, _) in ENVOY_ORDER {
        let ts = &status.types[t];
        assert_eq!(ts.state, SyncState::Synced, "{t}: {ts:?}");
        assert!(ts.acked_version.is_some(), "{t}: {ts:?}");
    }
}

/// Pending work is STALE even before anything of the type was sent.
#[tokio::test]
async fn pending_before_first_send_is_stale() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    // LDS waits for the CDS ACK.
    eventually("LDS requested", || {
        newest(&h, "n1").types.contains_key(LISTENER)
    })
    .await;
    let status = newest(&h, "n1");
    assert_eq!(status.types[LISTENER].state, SyncState::Stale);
    assert_eq!(status.types[LISTENER].sent_version, None);
    c.ack(&cds, &[]).await;
    c.recv_ack(LISTENER, &[]).await;
    c.barrier().await;
}
