//! Rules 12 and 13: warming and make-before-break push order on one ADS stream.

mod common;

use common::*;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

async fn synced_sotw(h: &Harness) -> SotwClient {
    let mut c = SotwClient::ads(h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.subscribe(LISTENER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    c.subscribe(ENDPOINT, &["c1"]).await;
    c.ack(&cds, &[]).await;
    c.recv_ack(ENDPOINT, &["c1"]).await;
    let lds = c.recv_type(LISTENER).await;
    c.subscribe(ROUTE, &["r1"]).await;
    c.ack(&lds, &[]).await;
    c.recv_ack(ROUTE, &["r1"]).await;
    c.barrier().await;
    c
}

async fn synced_delta(h: &Harness) -> DeltaClient {
    let mut c = DeltaClient::ads(h, "n1").await;
    c.subscribe(CLUSTER, &[], &[]).await;
    c.subscribe(LISTENER, &[], &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    c.subscribe(ENDPOINT, &["c1"], &[]).await;
    c.ack(&cds).await;
    c.recv_ack(ENDPOINT).await;
    let lds = c.recv_type(LISTENER).await;
    c.subscribe(ROUTE, &["r1"], &[]).await;
    c.ack(&lds).await;
    c.recv_ack(ROUTE).await;
    c.barrier().await;
    c
}

fn with_cluster_tag(tag: &str) -> portico_xds::Snapshot {
    let mut s = basic("a");
    s.insert(CLUSTER, "c1", cluster("c1", tag));
    s
}

/// Rule 12 (SotW): an updated cluster gets a fresh EDS answer though its endpoints did not
/// change; an updated listener a fresh RDS answer.
#[tokio::test]
async fn rule12_warming_sotw() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced_sotw(&h).await;
    h.set(with_cluster_tag("new"));
    assert_eq!(names(&c.recv_ack(CLUSTER, &[]).await), ["c1"]);
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1"]).await), ["c1"]);
    c.barrier().await;
    let mut s = with_cluster_tag("new");
    s.insert(LISTENER, "l1", listener_tagged("l1", "r1", "new"));
    h.set(s);
    assert_eq!(names(&c.recv_ack(LISTENER, &[]).await), ["l1"]);
    assert_eq!(names(&c.recv_ack(ROUTE, &["r1"]).await), ["r1"]);
    c.barrier().await;
}

/// Rule 12 (delta).
#[tokio::test]
async fn rule12_warming_delta() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced_delta(&h).await;
    h.set(with_cluster_tag("new"));
    assert_eq!(delta_names(&c.recv_ack(CLUSTER).await), ["c1"]);
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c1"]);
    c.barrier().await;
}

/// Rule 13: CDS first; EDS and SDS while the clusters warm (Envoy ACKs CDS only once they
/// are warm, so they cannot wait for that ACK); LDS and RDS only after the CDS ACK.
#[tokio::test]
async fn rule13_push_order_sotw() {
    let h = Harness::start().await;
    let full = |tag: &str| {
        let mut s = basic(tag);
        s.insert(CLUSTER, "c1", cluster("c1", tag));
        s.insert(ROUTE, "r1", route("r1", tag));
        s.insert(LISTENER, "l1", listener_tagged("l1", "r1", tag));
        s.insert(SECRET, "s1", secret("s1", tag));
        s
    };
    h.set(full("a"));
    let mut c = synced_sotw(&h).await;
    c.subscribe(SECRET, &["s1"]).await;
    c.recv_ack(SECRET, &["s1"]).await;
    c.barrier().await;
    h.set(full("b"));
    let cds = c.recv_type(CLUSTER).await;
    let eds = c.recv_type(ENDPOINT).await;
    let sds = c.recv_type(SECRET).await;
    // Until CDS is ACKed no listener or route goes out, even one the client asks for.
    c.subscribe(ROUTE, &["r1", "probe"]).await;
    c.ack(&eds, &["c1"]).await;
    c.ack(&sds, &["s1"]).await;
    eventually("the probe subscription to be seen", || {
        h.cache.node_statuses()[0].types[ROUTE]
            .subscribed
            .contains(&"probe".to_string())
    })
    .await;
    let before = h.cache.node_statuses()[0].types.clone();
    for t in [LISTENER, ROUTE] {
        assert_eq!(
            before[t].sent_version, before[t].acked_version,
            "{t} was sent early"
        );
    }
    c.ack(&cds, &[]).await;
    c.recv_ack(LISTENER, &[]).await;
    c.recv_ack(ROUTE, &["r1", "probe"]).await;
    c.barrier().await;
}

/// Rule 13 (delta): a new cluster's endpoints are answered before its CDS ACK.
#[tokio::test]
async fn rule13_endpoints_flow_while_clusters_warm_delta() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced_delta(&h).await;
    let mut s = basic("a");
    s.insert(CLUSTER, "c2", cluster("c2", ""));
    s.insert(ENDPOINT, "c2", cla("c2", ""));
    h.set(s);
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(delta_names(&cds), ["c2"]);
    // Like Envoy: subscribe to the new cluster's endpoints, ACK CDS only once they arrived.
    c.subscribe(ENDPOINT, &["c2"], &[]).await;
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c2"]);
    c.ack(&cds).await;
    c.barrier().await;
}

/// Rule 13: a cluster replaced by another stays until the route that used it moved on.
#[tokio::test]
async fn rule13_make_before_break_sotw() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced_sotw(&h).await;
    h.set(snap(&[
        (CLUSTER, cluster("c2", "")),
        (ENDPOINT, cla("c2", "")),
        (LISTENER, listener("l1", "r1")),
        (ROUTE, route("r1", "c2")),
    ]));
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c1", "c2"], "the old cluster is kept for now");
    // Like Envoy: the new cluster's endpoints first, the CDS ACK once it is warm.
    c.subscribe(ENDPOINT, &["c1", "c2"]).await;
    assert_eq!(names(&c.recv_ack(ENDPOINT, &["c1", "c2"]).await), ["c2"]);
    c.ack(&cds, &[]).await;
    assert_eq!(names(&c.recv_ack(ROUTE, &["r1"]).await), ["r1"]);
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(names(&cds), ["c2"], "now the old cluster goes");
    c.subscribe(ENDPOINT, &["c2"]).await;
    c.ack(&cds, &[]).await;
    c.barrier().await;
}

/// Rule 13 (delta): removal of the old cluster only after the route moved on.
#[tokio::test]
async fn rule13_make_before_break_delta() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = synced_delta(&h).await;
    h.set(snap(&[
        (CLUSTER, cluster("c2", "")),
        (ENDPOINT, cla("c2", "")),
        (LISTENER, listener("l1", "r1")),
        (ROUTE, route("r1", "c2")),
    ]));
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(delta_names(&cds), ["c2"]);
    assert!(cds.removed_resources.is_empty(), "c1 is kept for now");
    c.subscribe(ENDPOINT, &["c2"], &[]).await;
    assert_eq!(delta_names(&c.recv_ack(ENDPOINT).await), ["c2"]);
    c.ack(&cds).await;
    assert_eq!(delta_names(&c.recv_ack(ROUTE).await), ["r1"]);
    let cds = c.recv_type(CLUSTER).await;
    assert_eq!(cds.removed_resources, ["c1"]);
    c.subscribe(ENDPOINT, &[], &["c1"]).await;
    c.ack(&cds).await;
    c.barrier().await;
}
