//! NACK handling, slow clients, limits, shutdown, events, metrics and the admin views.

mod common;

use common::*;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE};
use portico_xds::{CacheConfig, SyncState, XdsEventKind};

fn clusters(tag: &str) -> portico_xds::Snapshot {
    snap(&[(CLUSTER, cluster("c1", "")), (CLUSTER, cluster("c2", tag))])
}

/// NACK: hold (no re-send of the same version), tell (status, event, metric), and a changed
/// snapshot clears it.
#[tokio::test]
async fn nack_is_held_and_told_sotw() {
    let h = Harness::start().await;
    let mut events = h.cache.subscribe();
    h.set(clusters("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    let good = c.recv_ack(CLUSTER, &[]).await;
    h.set(clusters("b"));
    let bad = c.recv_type(CLUSTER).await;
    let message = "Error adding/updating cluster(s) c2: bad config";
    c.nack(&bad, &[], &good.version_info, message).await;
    c.barrier().await;
    // The client re-requests at its good version: still nothing (hold).
    c.ack(&bad, &[]).await;
    c.barrier().await;
    let t = &h.cache.node_statuses()[0].types[CLUSTER];
    assert_eq!(t.state, SyncState::Nacked);
    assert_eq!(t.acked_version.as_deref(), Some(&*good.version_info));
    let nack = t.last_nack.as_ref().unwrap();
    assert_eq!(
        (nack.version.as_str(), nack.message.as_str()),
        (&*bad.version_info, message)
    );
    assert_eq!(nack.resource_names, ["c2"]);
    // The same NACK, as a consumer that missed events reads it back.
    let standing = h.cache.nacks();
    assert_eq!(standing.len(), 1);
    assert_eq!(
        (standing[0].0.as_str(), standing[0].1.as_str()),
        (FLEET, CLUSTER)
    );
    assert_eq!(&standing[0].2, nack);
    let metrics = h.cache.render_metrics();
    assert!(
        metrics.contains("portico_xds_nacks_total{type=\"envoy.config.cluster.v3.Cluster\"} 1")
    );
    let mut kinds = vec![];
    while let Ok(e) = events.try_recv() {
        if e.kind == XdsEventKind::Nacked {
            assert_eq!(
                (e.node_id.as_str(), e.fleet.as_str(), e.type_url.as_str()),
                ("n1", FLEET, CLUSTER)
            );
            assert_eq!(e.message, message);
            assert_eq!(e.resource_names, ["c2"]);
        }
        kinds.push(e.kind);
    }
    assert!(kinds.contains(&XdsEventKind::Connected));
    assert!(kinds.contains(&XdsEventKind::Nacked));
    // A fixed snapshot is sent and ACKed.
    h.set(clusters("c"));
    let fixed = c.recv_ack(CLUSTER, &[]).await;
    assert_eq!(names(&fixed), ["c1", "c2"]);
    c.barrier().await;
    let t = &h.cache.node_statuses()[0].types[CLUSTER];
    assert_eq!(t.state, SyncState::Synced);
    assert!(t.last_nack.is_none());
    assert!(h.cache.nacks().is_empty());
}

/// Per-type SotW streams NACK the same way.
#[tokio::test]
async fn nack_per_type_stream() {
    let h = Harness::start().await;
    h.set(clusters("a"));
    let mut c = per_type_sotw(&h, CLUSTER, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    let r = c.recv_type(CLUSTER).await;
    c.nack(&r, &[], "", "nope").await;
    eventually("the NACK to be recorded", || {
        h.cache.node_statuses()[0].types[CLUSTER].state == SyncState::Nacked
    })
    .await;
    h.set(clusters("b"));
    let r = c.recv_ack(CLUSTER, &[]).await;
    assert_eq!(names(&r), ["c1", "c2"]);
}

/// A client that does not read or ACK holds up nobody, and then gets the latest state, not
/// the versions in between.
#[tokio::test]
async fn slow_client_gets_latest_state() {
    let h = Harness::start().await;
    h.set(clusters("0"));
    let mut slow = SotwClient::ads(&h, "slow").await;
    slow.subscribe(CLUSTER, &[]).await;
    let first = slow.recv_type(CLUSTER).await;
    let mut fast = SotwClient::ads(&h, "fast").await;
    fast.subscribe(CLUSTER, &[]).await;
    fast.recv_ack(CLUSTER, &[]).await;
    let last = clusters("20");
    for i in 1..=20 {
        h.set(clusters(&i.to_string()));
        // The fast client keeps up while the slow one sits on its first response.
        let r = fast.recv_ack(CLUSTER, &[]).await;
        assert_eq!(r.version_info, clusters(&i.to_string()).version(CLUSTER));
    }
    slow.ack(&first, &[]).await;
    let r = slow.recv_ack(CLUSTER, &[]).await;
    assert_eq!(r.version_info, last.version(CLUSTER));
    slow.barrier().await;
}

/// Rule 15: requests of at least 32 MiB are accepted; responses above 4 MiB still go out.
#[tokio::test]
async fn rule15_large_messages() {
    let h = Harness::start().await;
    let big = "x".repeat(5 << 20);
    h.set(snap(&[(CLUSTER, cluster("c1", &big))]));
    let mut c = SotwClient::ads(&h, "n1").await;
    let long_names: Vec<String> = (0..33)
        .map(|i| format!("{i}{}", "n".repeat(1 << 20)))
        .collect();
    let refs: Vec<&str> = long_names.iter().map(String::as_str).collect();
    c.subscribe(ENDPOINT, &refs).await;
    c.subscribe(CLUSTER, &[]).await;
    let r = c.recv_ack(CLUSTER, &[]).await;
    assert!(prost::Message::encoded_len(&r) > 5 << 20);
    c.barrier().await;
    assert_eq!(
        h.cache.node_statuses()[0].types[ENDPOINT].subscribed.len(),
        33
    );
}

/// Graceful shutdown ends open streams cleanly and `serve` returns Ok.
#[tokio::test]
async fn graceful_shutdown() {
    let h = Harness::start().await;
    h.set(clusters("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.recv_ack(CLUSTER, &[]).await;
    let mut d = DeltaClient::ads(&h, "n2").await;
    d.subscribe(CLUSTER, &[], &[]).await;
    d.recv_ack(CLUSTER).await;
    let cache = h.cache.clone();
    let mut events = cache.subscribe();
    h.shutdown().await.unwrap();
    assert!(c.closed().await.is_none(), "stream ended with an error");
    let mut gone = 0;
    while gone < 2 {
        let e = within("disconnect events", events.recv()).await.unwrap();
        if e.kind == XdsEventKind::Disconnected {
            gone += 1;
        }
    }
    assert!(cache.node_statuses().is_empty());
}

/// Events for connect, ACK, NACK, disconnect.
#[tokio::test]
async fn events() {
    let h = Harness::start().await;
    h.set(clusters("a"));
    let mut events = h.cache.subscribe();
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    let r = c.recv_ack(CLUSTER, &[]).await;
    c.barrier().await;
    drop(c);
    let mut seen = vec![];
    while seen.last() != Some(&XdsEventKind::Disconnected) {
        let e = within("events", events.recv()).await.unwrap();
        if e.kind == XdsEventKind::Acked && e.type_url == CLUSTER {
            assert_eq!(e.version, r.version_info);
        }
        if e.type_url == CLUSTER || e.type_url.is_empty() {
            seen.push(e.kind);
        }
    }
    assert_eq!(
        seen,
        [
            XdsEventKind::Connected,
            XdsEventKind::Acked,
            XdsEventKind::Disconnected
        ]
    );
}

/// Metrics: streams by fleet and variant, pushes, bytes, ACK latency.
#[tokio::test]
async fn metrics() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    c.recv_ack(CLUSTER, &[]).await;
    let mut d = DeltaClient::ads(&h, "n2").await;
    d.subscribe(CLUSTER, &[], &[]).await;
    d.recv_ack(CLUSTER).await;
    c.barrier().await;
    d.barrier().await;
    let m = h.cache.render_metrics();
    for line in [
        "portico_xds_connected_streams{fleet=\"default/gw\",variant=\"sotw-ads\"} 1",
        "portico_xds_connected_streams{fleet=\"default/gw\",variant=\"delta-ads\"} 1",
        "portico_xds_pushes_total{type=\"envoy.config.cluster.v3.Cluster\"} 2",
        "portico_xds_push_ack_seconds_count{type=\"envoy.config.cluster.v3.Cluster\"} 2",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
    assert!(
        m.contains("portico_xds_config_bytes_sent_total{type=\"envoy.config.cluster.v3.Cluster\"}")
    );
}

/// What a node holds, for config dumps.
#[tokio::test]
async fn sent_resources() {
    let h = Harness::start().await;
    h.set(basic("a"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    let cds = c.recv_type(CLUSTER).await;
    c.subscribe(ENDPOINT, &["c1"]).await;
    c.ack(&cds, &[]).await;
    c.recv_ack(ENDPOINT, &["c1"]).await;
    c.barrier().await;
    let sent = h.cache.sent_resources("n1").unwrap();
    assert_eq!(sent[CLUSTER][0].0, "c1");
    assert_eq!(*sent[CLUSTER][0].1, cluster("c1", ""));
    assert_eq!(sent[ENDPOINT][0].0, "c1");
    assert!(!sent.contains_key(LISTENER) && !sent.contains_key(ROUTE));
    assert!(h.cache.sent_resources("nobody").is_none());
}

/// Snapshots set in quick succession are debounced: the stream ends up at the last one.
#[tokio::test]
async fn debounced_updates_end_at_the_latest() {
    let h = Harness::with_config(CacheConfig::default()).await;
    h.set(clusters("0"));
    let mut c = SotwClient::ads(&h, "n1").await;
    c.subscribe(CLUSTER, &[]).await;
    for i in 1..=10 {
        h.set(clusters(&i.to_string()));
    }
    let want = clusters("10").version(CLUSTER);
    let mut responses = 0;
    loop {
        let r = c.recv_ack(CLUSTER, &[]).await;
        responses += 1;
        if r.version_info == want {
            break;
        }
    }
    assert!(
        responses <= 2,
        "{responses} responses for one debounced burst"
    );
    c.barrier().await;
}

/// `Server::routes` embeds the services in another tonic server.
#[tokio::test]
async fn routes_embed_in_another_server() {
    let cache = portico_xds::Cache::new(CacheConfig {
        debounce: std::time::Duration::ZERO,
        max_delay: std::time::Duration::ZERO,
    });
    cache.set_snapshot(FLEET, clusters("a"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = portico_xds::Server::new(cache.clone()).routes();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = within(
        "connect",
        tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut c = SotwClient::ads_on(channel, node("n1")).await;
    c.subscribe(CLUSTER, &[]).await;
    assert_eq!(names(&c.recv_ack(CLUSTER, &[]).await), ["c1", "c2"]);
    server.abort();
}

/// Streams that get the same response share one encoding; only the nonce is their own.
#[tokio::test]
async fn identical_pushes_share_one_encoding() {
    let h = Harness::start().await;
    h.set(clusters("a"));
    let mut clients = Vec::new();
    for i in 0..3 {
        clients.push(SotwClient::ads(&h, &format!("n{i}")).await);
    }
    let mut first = Vec::new();
    for c in clients.iter_mut() {
        c.subscribe(CLUSTER, &[]).await;
        first.push(c.recv_ack(CLUSTER, &[]).await);
    }
    h.set(clusters("b"));
    let mut second = Vec::new();
    for c in clients.iter_mut() {
        second.push(c.recv_ack(CLUSTER, &[]).await);
        c.barrier().await;
    }
    for responses in [&first, &second] {
        for r in responses.iter() {
            let without_nonce = |r: &DiscoveryResponse| DiscoveryResponse {
                nonce: String::new(),
                ..r.clone()
            };
            assert_eq!(without_nonce(r), without_nonce(&responses[0]));
            assert!(!r.nonce.is_empty());
        }
    }
    assert_ne!(first[0].version_info, second[0].version_info);
    let m = h.cache.render_metrics();
    for line in [
        "portico_xds_pushes_total{type=\"envoy.config.cluster.v3.Cluster\"} 6",
        "portico_xds_encoded_responses_total{type=\"envoy.config.cluster.v3.Cluster\"} 2",
    ] {
        assert!(m.contains(line), "missing {line} in\n{m}");
    }
}
