//! CSDS: per node, what was sent and whether it was ACKed, NACKed or never sent.

mod common;

use common::*;
use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
use envoy_types::pb::envoy::service::status::v3::{ClientStatusRequest, ConfigStatus};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{NodeMatcher, StringMatcher};
use portico_xds::type_url::{CLUSTER, ENDPOINT};

fn matcher(pattern: MatchPattern) -> NodeMatcher {
    NodeMatcher {
        node_id: Some(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        }),
        node_metadatas: vec![],
    }
}

#[tokio::test]
async fn csds_reports_sync_state_per_resource() {
    let h = Harness::start().await;
    h.set(snap(&[
        (CLUSTER, cluster("c1", "")),
        (CLUSTER, cluster("c2", "")),
        (ENDPOINT, cla("c1", "")),
    ]));
    // n1: clusters ACKed; endpoints NACKed; one endpoint name that does not exist.
    let mut a = SotwClient::ads(&h, "n1").await;
    a.subscribe(CLUSTER, &[]).await;
    a.recv_ack(CLUSTER, &[]).await;
    a.subscribe(ENDPOINT, &["c1", "c9"]).await;
    let eds = a.recv_type(ENDPOINT).await;
    a.nack(&eds, &["c1", "c9"], "", "endpoint c1 rejected")
        .await;
    a.barrier().await;
    // n2: a delta client told that c9 does not exist.
    let mut b = DeltaClient::ads(&h, "n2").await;
    b.subscribe(ENDPOINT, &["c9"], &[]).await;
    b.recv_ack(ENDPOINT).await;
    b.barrier().await;

    let mut client = ClientStatusDiscoveryServiceClient::new(h.channel().await);
    let all = within(
        "CSDS fetch",
        client.fetch_client_status(ClientStatusRequest::default()),
    )
    .await
    .unwrap()
    .into_inner();
    assert_eq!(all.config.len(), 2);
    let n1 = &all.config[0];
    assert_eq!(n1.node.as_ref().unwrap().id, "n1");
    let find = |t: &str, name: &str| {
        n1.generic_xds_configs
            .iter()
            .find(|g| g.type_url == t && g.name == name)
            .unwrap_or_else(|| panic!("{t} {name} missing"))
    };
    let c1 = find(CLUSTER, "c1");
    assert_eq!(c1.config_status, ConfigStatus::Synced as i32);
    assert_eq!(c1.client_status, ClientResourceStatus::Acked as i32);
    assert_eq!(c1.xds_config.as_ref(), Some(&cluster("c1", "")));
    let e1 = find(ENDPOINT, "c1");
    assert_eq!(e1.config_status, ConfigStatus::Error as i32);
    assert_eq!(e1.client_status, ClientResourceStatus::Nacked as i32);
    assert_eq!(
        e1.error_state.as_ref().unwrap().details,
        "endpoint c1 rejected"
    );
    let e9 = find(ENDPOINT, "c9");
    assert_eq!(e9.client_status, ClientResourceStatus::Requested as i32);
    let n2 = &all.config[1];
    assert_eq!(n2.generic_xds_configs.len(), 1);
    assert_eq!(
        n2.generic_xds_configs[0].client_status,
        ClientResourceStatus::DoesNotExist as i32
    );

    // Node matchers and exclude_resource_contents.
    let req = ClientStatusRequest {
        node_matchers: vec![matcher(MatchPattern::Prefix("n2".into()))],
        exclude_resource_contents: true,
        ..Default::default()
    };
    let one = within("CSDS fetch", client.fetch_client_status(req))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.config.len(), 1);
    assert_eq!(one.config[0].node.as_ref().unwrap().id, "n2");
    assert!(
        one.config[0]
            .generic_xds_configs
            .iter()
            .all(|g| g.xds_config.is_none())
    );

    // The streaming variant answers each request.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut stream = within(
        "CSDS stream",
        client.stream_client_status(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .into_inner();
    let exact = ClientStatusRequest {
        node_matchers: vec![matcher(MatchPattern::Exact("n1".into()))],
        ..Default::default()
    };
    tx.send(exact).await.unwrap();
    let r = within("CSDS stream response", stream.message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.config.len(), 1);
    assert_eq!(r.config[0].node.as_ref().unwrap().id, "n1");
}
