//! A scripted ADS client for what real Envoy cannot be made to do on cue: connect the moment
//! Portico's xDS port accepts connections.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use prost::Message;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// Connects to `xds` as soon as it accepts (retrying for up to `deadline`).
pub async fn connect_asap(xds: SocketAddr, deadline: Duration) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{xds}"))?;
    let start = Instant::now();
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(err) if start.elapsed() >= deadline => {
                bail!("xDS port {xds} never accepted within {deadline:?}: {err}")
            }
            // Polling a port that is about to open; 1 ms keeps the race with startup tight.
            Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

/// Opens a SotW ADS stream as node `node_id` of `fleet`, asks for every cluster, and returns
/// the names in the first CDS response.
pub async fn first_clusters(
    channel: Channel,
    node_id: &str,
    fleet: &str,
) -> anyhow::Result<Vec<String>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: node_id.to_string(),
            cluster: fleet.to_string(),
            ..Default::default()
        }),
        type_url: CLUSTER.to_string(),
        ..Default::default()
    })?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let mut responses = client
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await
        .context("opening the ADS stream")?
        .into_inner();
    let response = tokio::time::timeout(Duration::from_secs(20), responses.message())
        .await
        .context("no CDS response within 20 s")??
        .context("the stream ended without a response")?;
    drop(tx);
    Ok(response
        .resources
        .iter()
        .map(|any| cluster_name(&any.value))
        .collect())
}

fn cluster_name(bytes: &[u8]) -> String {
    Cluster::decode(bytes).map(|c| c.name).unwrap_or_default()
}
