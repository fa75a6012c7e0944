//! State-of-the-world rules, over ADS unless the test says per-type.

mod common;

use common::*;
use portico_xds::SyncState;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};

/// Connects an ADS client the way Envoy does and walks it through `basic("a")`:
/// CDS, EDS, LDS, RDS, each ACKed.
async fn synced(h: &Harness, id: &str) -> SotwClient {
    let mut c = SotwClient::ads(h, id).await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c1"]);
    c.subscribe(ENDPOINT, &["c1"]).await;
    c.ack(&cds, &[]).await;
    let eds = c.recv_ack(ENDPOINT, &["c1"]).await;
    assert_eq!(names(&eds), ["c1"]);
    let lds = c.recv_type(LISTENER).await;
    assert_eq!(names(&lds), ["l1"]);
    c.subscribe(ROUTE, &["r1"]).await;
    c.ack(&lds, &[]).await;
    let rds = c.recv_ack(ROUTE, &["r1"]).await;
    assert_eq!(names(&rds), ["r1"]);
    c.barrier().await;
    c
}

#[tokio::test]
async fn fleet_without_snapshot_gets_empty_config_then_is_served_without_reconnect() {
    let h = Harness::start().await;
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_ack(CLUSTER, &[]).await;
    assert!(cds.resources.is_empty());
    let lds = c.recv_ack(LISTENER, &[]).await;
    assert!(lds.resources.is_empty());
    c.barrier().await;
    h.set(basic("a"));
    let cds = c.recv_ack(CLUSTER, &[]).await;
    assert_eq!(names(&cds), ["c1"]);
    let lds = c.recv_ack(LISTENER, &[]).await;
    assert_eq!(names(&lds), ["l1"]);
    // Removing the fleet empties the Envoys' config: listeners first, then clusters.
    h.cache.remove_fleet(FLEET);
    assert!(c.recv_ack(LISTENER, &[]).await.resources.is_empty());
    assert!(c.recv_ack(CLUSTER, &[]).await.resources.is_empty());
    c.barrier().await;
}

/// Rule 1: a nonce on every response, unique per stream; the node only on the first request.
#[tokio::test]
async fn rule01_unique_nonces_and_node_from_first_request() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let mut nonces = vec![];
    nonces.push(c.recv_ack(CLUSTER, &[]).await.nonce);
    nonces.push(c.recv_ack(LISTENER, &[]).await.nonce);
    for tag in ["b", "c"] {
        h.set(snap(&[
            (CLUSTER, cluster("c1", tag)),
            (LISTENER, listener("l1", tag)),
        ]));
        nonces.push(c.recv_ack(CLUSTER, &[]).await.nonce);
        nonces.push(c.recv_ack(LISTENER, &[]).await.nonce);
    }
    let mut unique = nonces.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), nonces.len(), "{nonces:?}");
    assert!(nonces.iter().all(|n| !n.is_empty()));
    let status = h.cache.node_statuses();
    assert_eq!(status[0].node_id, "n1");
    assert_eq!(status[0].fleet, FLEET);
}

/// Rule 2: version_info per type; a NACK is recognised by error_detail alone.
#[tokio::test]
async fn rule02_versions_per_type_and_nack_by_error_detail() {
    let h = Harness::start().await;
    let s = basic("a");
    h.set(s.clone());
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(cds.version_info, s.version(CLUSTER));
    // An ACK that reports another version is still an ACK: no error_detail.
    c.send(request(CLUSTER, &[], "something-else", &cds.nonce))
        .await;
    let lds = c.recv_type(LISTENER).await;
    assert_eq!(lds.version_info, s.version(LISTENER));
    assert_ne!(lds.version_info, cds.version_info);
    // A NACK that (oddly) reports the new version is still a NACK.
    c.nack(&lds, &[], &lds.version_info, "bad listener l1")
        .await;
    c.barrier().await;
    let status = &h.cache.node_statuses()[0];
    assert_eq!(status.types[CLUSTER].state, SyncState::Synced);
    assert_eq!(status.types[LISTENER].state, SyncState::Nacked);
    let nack = status.types[LISTENER].last_nack.as_ref().unwrap();
    assert_eq!(nack.version, lds.version_info);
    assert_eq!(nack.message, "bad listener l1");
    assert_eq!(nack.resource_names, ["l1"]);
}

/// Rule 3: respond only when something changed; an ACK never causes a re-send.
#[tokio::test]
async fn rule03_respond_only_to_changes() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced(&h, "n1").await;
    // Identical content: no push at all.
    assert!(!h.set(basic("a")));
    c.barrier().await;
    // Only the route changed: only RDS is pushed.
    let mut s = basic("a");
    s.insert(ROUTE, "r1", route("r1", "other"));
    assert!(h.set(s));
    let rds = c.recv_ack(ROUTE, &["r1"]).await;
    assert_eq!(names(&rds), ["r1"]);
    c.barrier().await;
}

/// Rule 12 on a per-type stream: the same subscription again (not an ACK) is a re-request,
/// as Envoy sends when an updated cluster warms; it is answered. An ACK is not.
#[tokio::test]
async fn rule12_per_type_rerequest_is_answered() {
    let h = Harness::start().await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "")),
        (ENDPOINT, cla("c2", "")),
    ]));
    let mut c = per_type_sotw(&h, ENDPOINT, "n1").await;
    c.subscribe(ENDPOINT, &["c1", "c2"]).await;
    let r = c.recv_ack(ENDPOINT, &["c1", "c2"]).await;
    assert_eq!(names(&r), ["c1", "c2"]);
    eventually("the ACK to be recorded", || {
        h.cache.node_statuses()[0].types[ENDPOINT].state == SyncState::Synced
    })
    .await;
    c.ack(&r, &["c1", "c2"]).await;
    let again = c.recv_ack(ENDPOINT, &["c1", "c2"]).await;
    assert_eq!(names(&again), ["c1", "c2"]);
    assert_eq!(again.version_info, r.version_info);
}

/// Rule 4: a request with a stale nonce gets no response and changes nothing.
#[tokio::test]
async fn rule04_stale_nonce_is_ignored() {
    let h = Harness::start().await;
    h.set(snap(&[(CLUSTER, cluster("c1", "1"))]));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    let first = c.recv_ack(CLUSTER, &[]).await;
    h.set(snap(&[(CLUSTER, cluster("c1", "2"))]));
    eventually("the second response to be sent", || {
        h.cache.node_statuses()[0].types[CLUSTER]
            .sent_nonce
            .as_deref()
            != Some(&*first.nonce)
    })
    .await;
    // Sent before the client read the second response: its nonce is stale. Were it applied,
    // the stream would switch from the wildcard to explicit names.
    c.send(request(
        CLUSTER,
        &["c1", "zzz"],
        &first.version_info,
        &first.nonce,
    ))
    .await;
    let second = c.recv_ack(CLUSTER, &[]).await;
    assert_ne!(second.nonce, first.nonce);
    c.barrier().await;
    // Still a (legacy) wildcard subscription: a new cluster arrives.
    h.set(snap(&[
        (CLUSTER, cluster("c1", "2")),
        (CLUSTER, cluster("c2", "1")),
    ]));
    assert_eq!(names(&c.recv_ack(CLUSTER, &[]).await), ["c1", "c2"]);
    let status = &h.cache.node_statuses()[0];
    assert_eq!(status.types[CLUSTER].subscribed, ["*"]);
}

/// Rule 5: explicit names, `*`, the legacy wildcard, and an empty list after names.
#[tokio::test]
async fn rule05_subscription_forms() {
    let h = Harness::start().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (CLUSTER, cluster("c2", "")),
        (ENDPOINT, cla("c1", "")),
        (ENDPOINT, cla("c2", "")),
    ]));
    let mut c = SotwClient::ads(&h, "n1").await;
    // Explicit names.
    c.subscribe(ENDPOINT, &["c2"]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c2"]).await), ["c2"]);
    // Explicit wildcard next to a name.
    c.subscribe(CLUSTER, &["*", "c1"]).await;
    assert_eq!(
        names(&c.recv_ack(CLUSTER, &["*", "c1"]).await),
        ["c1", "c2"]
    );
    // The clusters are new to this stream: their endpoints are sent again (warming).
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c2"]).await), ["c2"]);
    // Names only, then an empty list: unsubscribed from everything (not a wildcard).
    let mut d = SotwClient::ads(&h, "n2").await;
    d.subscribe(CLUSTER, &["c1"]).await;
    let r = d.recv_type(CLUSTER).await;
    assert_eq!(names(&r), ["c1"]);
    d.ack(&r, &[]).await;
    d.barrier().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "new")),
        (CLUSTER, cluster("c3", "")),
    ]));
    // c sees the change (wildcard); d is not subscribed to anything any more.
    assert_eq!(
        names(&c.recv_ack(CLUSTER, &["*", "c1"]).await),
        ["c1", "c3"]
    );
    d.barrier().await;
    // The legacy wildcard: a first request with no names.
    let mut e = SotwClient::ads(&h, "n3").await;
    e.subscribe(CLUSTER, &[]).await;
    assert_eq!(names(&e.recv_ack(CLUSTER, &[]).await), ["c1", "c3"]);
}

/// Rule 5: newly requested names are always sent, even if sent before.
#[tokio::test]
async fn rule05_newly_requested_names_are_resent() {
    let h = Harness::start().await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "")),
        (ENDPOINT, cla("c2", "")),
    ]));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(ENDPOINT, &["c1"]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c2"]).await), ["c1"]);
    let r = c.recv_ack(ENDPOINT, &["c2"]).await;
    assert_eq!(names(&r), ["c2"]);
    c.barrier().await;
    // c1 was sent before and did not change; asked for again, it is sent again.
    c.ack(&r, &["c1", "c2"]).await;
    assert_eq!(names(&c.recv_type(ENDPOINT).await), ["c1"]);
}

/// Rule 6: LDS/CDS carry the full set every time; EDS only what changed.
#[tokio::test]
async fn rule06_full_state_for_lds_cds_only() {
    let h = Harness::start().await;
    let s = |c2: &str| {
        snap(&[
            (CLUSTER, cluster("c1", "")),
            (CLUSTER, cluster("c2", c2)),
            (ENDPOINT, cla("c1", "")),
            (ENDPOINT, cla("c2", c2)),
        ])
    };
    h.set(s("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(ENDPOINT, &["c1", "c2"]).await;
    assert_eq!(names(&c.recv_ack(CLUSTER, &[]).await), ["c1", "c2"]);
    assert_eq!(
        names(&c.recv_ack(ENDPOINT, &["c1", "c2"]).await),
        ["c1", "c2"]
    );
    h.set(s("b"));
    assert_eq!(names(&c.recv_ack(CLUSTER, &[]).await), ["c1", "c2"]);
    // c2's cluster changed, so it is re-sent (warming); c1 did not.
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c2"]).await), ["c2"]);
    c.barrier().await;
}

/// Rule 7: no duplicate names in one response.
#[tokio::test]
async fn rule07_no_duplicates() {
    let h = Harness::start().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (ENDPOINT, cla("c1", "")),
    ]));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &["*", "c1", "c1"]).await;
    assert_eq!(
        names(&c.recv_ack(CLUSTER, &["*", "c1", "c1"]).await),
        ["c1"]
    );
    c.subscribe(ENDPOINT, &["c1", "c1"]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c1"]).await), ["c1"]);
}

/// Rule 8: LDS/CDS delete by omission; RDS/EDS go with their parents and come back when
/// asked for again.
#[tokio::test]
async fn rule08_deletion() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced(&h, "n1").await;
    h.set(snap(&[]));
    // Listeners first (deleted by omission); nothing to say about r1 in SotW: Envoy drops it
    // with its listener, and its subscription with it.
    let lds = c.recv_type(LISTENER).await;
    assert!(lds.resources.is_empty());
    c.subscribe(ROUTE, &[]).await;
    c.ack(&lds, &[]).await;
    // Then the clusters (make-before-break), and their endpoints go with them.
    let cds = c.recv_type(CLUSTER).await;
    assert!(cds.resources.is_empty());
    c.subscribe(ENDPOINT, &[]).await;
    c.ack(&cds, &[]).await;
    c.barrier().await;
    // When they come back they are sent again, though unchanged.
    h.set(basic("a"));
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c1"]);
    c.subscribe(ENDPOINT, &["c1"]).await;
    c.ack(&cds, &[]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1"]).await), ["c1"]);
    let lds = c.recv_type(LISTENER).await;
    c.subscribe(ROUTE, &["r1"]).await;
    c.ack(&lds, &[]).await;
    assert_eq!(names(&c.recv_ack(ROUTE, &["r1"]).await), ["r1"]);
    c.barrier().await;
}

/// Rule 8 continued: a route removed from the snapshot while still subscribed is not sent
/// and is sent again when it reappears.
#[tokio::test]
async fn rule08_removed_child_reappears() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced(&h, "n1").await;
    let mut s = snap(&[(CLUSTER, cluster("c1", "")), (ENDPOINT, cla("c1", "a"))]);
    s.insert(LISTENER, "l1", listener("l1", "r1"));
    h.set(s);
    c.barrier().await;
    h.set(basic("a"));
    assert_eq!(names(&c.recv_ack(ROUTE, &["r1"]).await), ["r1"]);
}

/// Rule 9: a requested name that does not exist yet is sent when it appears.
#[tokio::test]
async fn rule09_missing_names_are_remembered() {
    let h = Harness::start().await;
    h.set(snap(&[(ENDPOINT, cla("c1", ""))]));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(ENDPOINT, &["c1", "c9"]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c9"]).await), ["c1"]);
    c.barrier().await;
    h.set(snap(&[
        (ENDPOINT, cla("c1", "")),
        (ENDPOINT, cla("c9", "")),
    ]));
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c9"]).await), ["c9"]);
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
    let mut a = SotwClient::ads(&h, "n1").await;
    let mut b = SotwClient::ads(&h, "n1").await;
    let mut p = per_type_sotw(&h, ENDPOINT, "n1").await;
    a.subscribe(ENDPOINT, &wanted).await;
    b.subscribe(ENDPOINT, &wanted[..10]).await;
    p.subscribe(ENDPOINT, &wanted[40..]).await;
    assert_eq!(names(&a.recv_ack(ENDPOINT, &wanted).await), all);
    assert_eq!(
        names(&b.recv_ack(ENDPOINT, &wanted[..10]).await),
        all[..10].to_vec()
    );
    assert_eq!(
        names(&p.recv_ack(ENDPOINT, &wanted[40..]).await),
        all[40..].to_vec()
    );
    assert_eq!(h.cache.node_statuses().len(), 3);
}

/// Per-type services serve their own type; the wrong type ends the stream.
#[tokio::test]
async fn per_type_services() {
    let h = Harness::start().await;
    h.set(basic("a"));
    for (t, n) in [
        (CLUSTER, "c1"),
        (LISTENER, "l1"),
        (ENDPOINT, "c1"),
        (ROUTE, "r1"),
    ] {
        let mut c = per_type_sotw(&h, t, "n1").await;
        // Per-type clients may leave type_url empty.
        c.send(request("", &[n], "", "")).await;
        let r = c.recv_ack(t, &[n]).await;
        assert_eq!(names(&r), [n]);
    }
    let mut c = per_type_sotw(&h, CLUSTER, "n1").await;
    c.subscribe(LISTENER, &[]).await;
    let status = c.closed().await.expect("an error status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// The first request must carry a node.
#[tokio::test]
async fn first_request_without_node_is_rejected() {
    let h = Harness::start().await;
    let mut c = SotwClient::ads(&h, "n1").await;
    let mut req = request(CLUSTER, &[], "", "");
    req.node = Some(Default::default());
    c.send(req).await;
    // An empty node is still a node; a missing one is not.
    c.recv_type(CLUSTER).await;
    // A nonce from an earlier stream is not stale on a new one.
    let mut n = SotwClient::ads(&h, "n3").await;
    n.send(request(CLUSTER, &[], "v-old", "17")).await;
    n.recv_type(CLUSTER).await;
    let mut d = SotwClient::ads(&h, "n2").await;
    d.node_take();
    d.subscribe(CLUSTER, &[]).await;
    let status = d.closed().await.expect("an error status");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

/// Unary fetch on the per-type services: the node's fleet, the requested names.
#[tokio::test]
async fn unary_fetch() {
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
    let h = Harness::start().await;
    let s = snap(&[(CLUSTER, cluster("c1", "")), (CLUSTER, cluster("c2", ""))]);
    h.set(s.clone());
    let mut client = ClusterDiscoveryServiceClient::new(h.channel().await);
    let mut req = request(CLUSTER, &["c2"], "", "");
    req.node = Some(node("n1"));
    let r = within("fetch", client.fetch_clusters(req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&r), ["c2"]);
    assert_eq!(r.version_info, s.version(CLUSTER));
    req.resource_names.clear();
    let r = within("fetch", client.fetch_clusters(req.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&r), ["c1", "c2"]);
    req.node = None;
    let err = within("fetch", client.fetch_clusters(req))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}
