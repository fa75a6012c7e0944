//! Incremental (delta) rules, over ADS unless the test says per-type.

mod common;

use std::collections::HashMap;

use common::*;
use portico_xds::SyncState;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

/// Connects a delta ADS client the way Envoy does and walks it through `basic("a")`.
async fn synced(h: &Harness, id: &str) -> DeltaClient {
    let mut c = DeltaClient::ads(h, id).await;
    c.subscribe(CLUSTER, &[], &[]).await;
    c.subscribe(LISTENER, &[], &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(delta_names(&cds), ["c1"]);
    c.subscribe(ENDPOINT, &["c1"], &[]).await;
    c.ack(&cds).await;
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c1"]);
    let lds = c.recv_type(LISTENER).await;
    assert_eq!(delta_names(&lds), ["l1"]);
    c.subscribe(ROUTE, &["r1"], &[]).await;
    c.ack(&lds).await;
    assert_eq!(delta_names(&c.recv_ack(ROUTE).await), ["r1"]);
    c.barrier().await;
    c
}

#[tokio::test]
async fn fleet_without_snapshot_gets_empty_config_then_is_served() {
    let h = Harness::start().await;
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[], &[]).await;
    c.subscribe(LISTENER, &[], &[]).await;
    let cds = c.recv_ack(CLUSTER).await;
    assert!(cds.resources.is_empty() && cds.removed_resources.is_empty());
    let lds = c.recv_ack(LISTENER).await;
    assert!(lds.resources.is_empty());
    c.barrier().await;
    h.set(basic("a"));
    assert_eq!(delta_names(&c.recv_ack(CLUSTER).await), ["c1"]);
    assert_eq!(delta_names(&c.recv_ack(LISTENER).await), ["l1"]);
    // Removing the fleet removes everything: listeners first, then clusters.
    h.cache.remove_fleet(FLEET);
    assert_eq!(c.recv_ack(LISTENER).await.removed_resources, ["l1"]);
    assert_eq!(c.recv_ack(CLUSTER).await.removed_resources, ["c1"]);
    c.barrier().await;
}

/// Rules 1-3: unique nonces; NACK by error_detail, held until the config changes; only
/// changed resources are sent and an ACK sends nothing.
#[tokio::test]
async fn rules01_to_03_nonces_nack_hold_and_changes_only() {
    let h = Harness::start().await;
    let s = |c2: &str| snap(&[(CLUSTER, cluster("c1", "")), (CLUSTER, cluster("c2", c2))]);
    h.set(s("a"));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[], &[]).await;
    let first = c.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&first), ["c1", "c2"]);
    assert_eq!(first.system_version_info, s("a").version(CLUSTER));
    c.barrier().await;
    // Only c2 changed: only c2 is sent.
    h.set(s("b"));
    let second = c.recv_type(CLUSTER).await;
    assert_eq!(delta_names(&second), ["c2"]);
    assert_ne!(second.nonce, first.nonce);
    c.nack(&second, "cluster c2: invalid").await;
    // Hold: the rejected version is not sent again.
    c.barrier().await;
    let status = &h.cache.node_statuses()[0];
    let t = &status.types[CLUSTER];
    assert_eq!(t.state, SyncState::Nacked);
    let nack = t.last_nack.as_ref().unwrap();
    assert_eq!(nack.resource_names, ["c2"]);
    assert_eq!(nack.message, "cluster c2: invalid");
    // A new snapshot clears it.
    h.set(s("c"));
    let third = c.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&third), ["c2"]);
    c.barrier().await;
    let t = &h.cache.node_statuses()[0].types[CLUSTER];
    assert_eq!(t.state, SyncState::Synced);
    assert!(t.last_nack.is_none());
}

/// Rule 4: subscription changes are honoured even with a stale nonce.
#[tokio::test]
async fn rule04_stale_nonce_still_changes_subscriptions() {
    let h = Harness::start().await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "1")),
        (ENDPOINT, cla("c2", "")),
    ]));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(ENDPOINT, &["c1"], &[]).await;
    let first = c.recv_ack(ENDPOINT).await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "2")),
        (ENDPOINT, cla("c2", "")),
    ]));
    eventually("the second response to be sent", || {
        h.cache.node_statuses()[0].types[ENDPOINT]
            .sent_nonce
            .as_deref()
            != Some(&*first.nonce)
    })
    .await;
    c.send(delta_request(ENDPOINT, &["c2"], &[], &first.nonce))
        .await;
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c1"]);
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c2"]);
    c.barrier().await;
}

/// Rule 5: explicit names, `*`, the legacy wildcard, unsubscribing, re-subscribing.
#[tokio::test]
async fn rule05_subscription_forms() {
    let h = Harness::start().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (CLUSTER, cluster("c2", "")),
    ]));
    // Legacy wildcard.
    let mut a = DeltaClient::ads(&h, "a").await;
    a.subscribe(CLUSTER, &[], &[]).await;
    assert_eq!(delta_names(&a.recv_ack(CLUSTER).await), ["c1", "c2"]);
    // Explicit names.
    let mut b = DeltaClient::ads(&h, "b").await;
    b.subscribe(CLUSTER, &["c2"], &[]).await;
    assert_eq!(delta_names(&b.recv_ack(CLUSTER).await), ["c2"]);
    // Explicit wildcard.
    let mut c = DeltaClient::ads(&h, "c").await;
    c.subscribe(CLUSTER, &["*"], &[]).await;
    assert_eq!(delta_names(&c.recv_ack(CLUSTER).await), ["c1", "c2"]);
    // b re-subscribes to what it has: sent again anyway.
    b.subscribe(CLUSTER, &["c2"], &[]).await;
    assert_eq!(delta_names(&b.recv_ack(CLUSTER).await), ["c2"]);
    // b unsubscribes from everything: nothing is sent now or later.
    b.subscribe(CLUSTER, &[], &["c2"]).await;
    b.barrier().await;
    // c leaves the wildcard for one name, which it gets again (it might have dropped it).
    c.subscribe(CLUSTER, &["c1"], &["*"]).await;
    assert_eq!(delta_names(&c.recv_ack(CLUSTER).await), ["c1"]);
    c.barrier().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "x")),
        (CLUSTER, cluster("c2", "x")),
    ]));
    assert_eq!(delta_names(&a.recv_ack(CLUSTER).await), ["c1", "c2"]);
    assert_eq!(delta_names(&c.recv_ack(CLUSTER).await), ["c1"]);
    b.barrier().await;
    c.barrier().await;
}

/// Rule 7: no duplicate names in one response.
#[tokio::test]
async fn rule07_no_duplicates() {
    let h = Harness::start().await;
    h.set(snap(&[(CLUSTER, cluster("c1", ""))]));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &["*", "c1", "c1", "c9", "c9"], &[])
        .await;
    let r = c.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&r), ["c1"]);
    assert_eq!(r.removed_resources, ["c9"]);
}

/// Rule 8: deletion through removed_resources, for every type.
#[tokio::test]
async fn rule08_deletion() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced(&h, "n1").await;
    // Endpoints and routes removed while their parents stay: the route first, as it may have
    // been what used the endpoints.
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (LISTENER, listener("l1", "r1")),
    ]));
    assert_eq!(c.recv_ack(ROUTE).await.removed_resources, ["r1"]);
    assert_eq!(c.recv_ack(ENDPOINT).await.removed_resources, ["c1"]);
    c.barrier().await;
    // Everything removed: listeners first, clusters once the listeners are gone.
    h.set(snap(&[]));
    let lds = c.recv_type(LISTENER).await;
    assert_eq!(lds.removed_resources, ["l1"]);
    c.subscribe(ROUTE, &[], &["r1"]).await;
    c.ack(&lds).await;
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(cds.removed_resources, ["c1"]);
    c.subscribe(ENDPOINT, &[], &["c1"]).await;
    c.ack(&cds).await;
    c.barrier().await;
}

/// Rule 9: a missing name is declared removed, then sent when it appears.
#[tokio::test]
async fn rule09_missing_names() {
    let h = Harness::start().await;
    h.set(snap(&[(ENDPOINT, cla("c1", ""))]));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(ENDPOINT, &["c1", "c9"], &[]).await;
    let r = c.recv_ack(ENDPOINT).await;
    assert_eq!(delta_names(&r), ["c1"]);
    assert_eq!(r.removed_resources, ["c9"]);
    c.barrier().await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "")),
        (ENDPOINT, cla("c9", "")),
    ]));
    let r = c.recv_ack(ENDPOINT).await;
    assert_eq!(delta_names(&r), ["c9"]);
    assert!(r.removed_resources.is_empty());
}

/// Rule 10: wildcard plus X, then X dropped: X again if the wildcard covers it, else removed.
#[tokio::test]
async fn rule10_wildcard_and_explicit_name() {
    let h = Harness::start().await;
    h.set(snap(&[(CLUSTER, cluster("c1", ""))]));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &["*", "c1", "c9"], &[]).await;
    let r = c.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&r), ["c1"]);
    assert_eq!(r.removed_resources, ["c9"]);
    c.subscribe(CLUSTER, &[], &["c1"]).await;
    let r = c.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&r), ["c1"]);
    assert!(r.removed_resources.is_empty());
    c.subscribe(CLUSTER, &[], &["c9"]).await;
    let r = c.recv_ack(CLUSTER).await;
    assert!(r.resources.is_empty());
    assert_eq!(r.removed_resources, ["c9"]);
    c.barrier().await;
}

/// Rule 11: many names per request, one type on several streams (ADS and per-type).
#[tokio::test]
async fn rule11_many_names_and_several_streams() {
    let h = Harness::start().await;
    let all: Vec<String> = (0..50).map(|i| format!("c{i:02}")).collect();
    let mut s = portico_xds::Snapshot::new();
    for n in &all {
        s.insert(ENDPOINT, n.clone(), cla(n, ""));
    }
    h.set(s);
    let wanted: Vec<&str> = all.iter().map(String::as_str).collect();
    let mut a = DeltaClient::ads(&h, "n1").await;
    let mut p = per_type_delta(&h, ENDPOINT, "n1").await;
    a.subscribe(ENDPOINT, &wanted, &[]).await;
    p.send(delta_request("", &wanted[..5], &[], "")).await;
    assert_eq!(delta_names(&a.recv_ack(ENDPOINT).await), all);
    assert_eq!(delta_names(&p.recv_ack(ENDPOINT).await), all[..5].to_vec());
    let variants: Vec<_> = h.cache.node_statuses().iter().map(|s| s.variant).collect();
    assert!(variants.contains(&portico_xds::Variant::DeltaAds));
    assert!(variants.contains(&portico_xds::Variant::DeltaPerType));
}

/// Rule 14: on reconnect, initial_resource_versions are honoured.
#[tokio::test]
async fn rule14_reconnect_with_initial_versions() {
    let h = Harness::start().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (CLUSTER, cluster("c2", "")),
    ]));
    let mut c = DeltaClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[], &[]).await;
    let r = c.recv_ack(CLUSTER).await;
    let versions: HashMap<String, String> = r
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(c);
    let mut d = DeltaClient::ads(&h, "n1").await;
    let mut req = delta_request(CLUSTER, &[], &[], "");
    req.initial_resource_versions = [
        ("c1".to_string(), versions["c1"].clone()),
        ("c2".to_string(), "stale".to_string()),
        ("c3".to_string(), "gone".to_string()),
    ]
    .into_iter()
    .collect();
    d.send(req).await;
    let r = d.recv_ack(CLUSTER).await;
    assert_eq!(delta_names(&r), ["c2"]);
    assert_eq!(r.removed_resources, ["c3"]);
    d.barrier().await;
}
