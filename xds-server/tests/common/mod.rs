//! Test harness: the real server on 127.0.0.1:0 and scripted SotW / delta xDS clients.
//!
//! Every await is bounded by [`TIMEOUT`]. "Nothing was sent" is proven with a barrier: a
//! request for a type the server does not know, which it must answer (empty, legacy wildcard)
//! and which ranks after every real type, so its answer arrives only once nothing else was
//! pending on the stream.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, Rds, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use portico_xds::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
use portico_xds::{Any, Cache, CacheConfig, Server, Snapshot};
use prost::{Message, Name};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const FLEET: &str = "default/gw";

/// Awaits `f`, failing the test if it takes longer than [`TIMEOUT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

pub struct Harness {
    pub cache: Cache,
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), portico_xds::Error>>>,
}

impl Harness {
    /// A server whose snapshots publish immediately (no debounce).
    pub async fn start() -> Self {
        Self::with_config(CacheConfig {
            debounce: Duration::ZERO,
            max_delay: Duration::ZERO,
        })
        .await
    }

    pub async fn with_config(config: CacheConfig) -> Self {
        let cache = Cache::new(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::new(cache.clone());
        let server = tokio::spawn(server.serve(listener, async {
            let _ = stopped.await;
        }));
        Harness {
            cache,
            addr,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn channel(&self) -> Channel {
        let uri = format!("http://{}", self.addr);
        within("connect", Channel::from_shared(uri).unwrap().connect())
            .await
            .unwrap()
    }

    pub fn set(&self, snapshot: Snapshot) -> bool {
        self.cache.set_snapshot(FLEET, snapshot)
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> Result<(), portico_xds::Error> {
        let _ = self.stop.take().unwrap().send(());
        within("server shutdown", self.server.take().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

/// Polls `cond` until it holds, failing after [`TIMEOUT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
}

pub fn node(id: &str) -> Node {
    Node {
        id: id.to_string(),
        cluster: FLEET.to_string(),
        ..Default::default()
    }
}

fn barrier_type(n: u32) -> String {
    format!("type.googleapis.com/portico.test.Barrier{n:04}")
}

/// A scripted SotW client (ADS or one per-type stream).
pub struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    node: Option<Node>,
    barriers: u32,
}

impl SotwClient {
    pub async fn ads(h: &Harness, node_id: &str) -> Self {
        Self::ads_on(h.channel().await, node(node_id)).await
    }

    pub async fn ads_on(channel: Channel, node: Node) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let rx = within(
            "ADS stream",
            client.stream_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .unwrap()
        .into_inner();
        SotwClient {
            tx,
            rx,
            node: Some(node),
            barriers: 0,
        }
    }

    /// A per-type SotW stream: the response stream of the type's service.
    pub fn from_parts(
        tx: mpsc::Sender<DiscoveryRequest>,
        rx: Streaming<DiscoveryResponse>,
        node: Node,
    ) -> Self {
        SotwClient {
            tx,
            rx,
            node: Some(node),
            barriers: 0,
        }
    }

    /// The next request goes without a node.
    pub fn node_take(&mut self) {
        self.node = None;
    }

    /// Sends a request; the node goes only on the first one, as Envoy does.
    pub async fn send(&mut self, mut req: DiscoveryRequest) {
        if req.node.is_none() {
            req.node = self.node.take();
        }
        within("send", self.tx.send(req)).await.unwrap();
    }

    /// Initial request (no nonce).
    pub async fn subscribe(&mut self, type_url: &str, names: &[&str]) {
        self.send(request(type_url, names, "", "")).await;
    }

    /// ACKs `resp`, keeping (or changing to) `names`.
    pub async fn ack(&mut self, resp: &DiscoveryResponse, names: &[&str]) {
        let req = request(&resp.type_url, names, &resp.version_info, &resp.nonce);
        self.send(req).await;
    }

    /// NACKs `resp`, claiming `good_version` as the last accepted one.
    pub async fn nack(
        &mut self,
        resp: &DiscoveryResponse,
        names: &[&str],
        good_version: &str,
        message: &str,
    ) {
        let mut req = request(&resp.type_url, names, good_version, &resp.nonce);
        req.error_detail = Some(RpcStatus {
            code: 3,
            message: message.to_string(),
            details: vec![],
        });
        self.send(req).await;
    }

    pub async fn recv(&mut self) -> DiscoveryResponse {
        match within("a response", self.rx.message()).await {
            Ok(Some(r)) => r,
            other => panic!("stream ended instead of responding: {other:?}"),
        }
    }

    /// Receives a response and checks its type.
    pub async fn recv_type(&mut self, type_url: &str) -> DiscoveryResponse {
        let r = self.recv().await;
        assert_eq!(r.type_url, type_url, "unexpected response {}", describe(&r));
        r
    }

    /// Receives a response of `type_url` and ACKs it with `names`.
    pub async fn recv_ack(&mut self, type_url: &str, names: &[&str]) -> DiscoveryResponse {
        let r = self.recv_type(type_url).await;
        self.ack(&r, names).await;
        r
    }

    /// Proves nothing else is pending on this ADS stream (see module docs).
    pub async fn barrier(&mut self) {
        self.barriers += 1;
        let t = barrier_type(self.barriers);
        self.subscribe(&t, &[]).await;
        let r = self.recv().await;
        assert_eq!(
            r.type_url,
            t,
            "expected nothing before the barrier, got {}",
            describe(&r)
        );
        self.ack(&r, &[]).await;
    }

    /// Waits for the server to end the stream; returns the gRPC status if it ended with one.
    pub async fn closed(&mut self) -> Option<tonic::Status> {
        match within("stream end", self.rx.message()).await {
            Ok(None) => None,
            Ok(Some(r)) => panic!("expected end of stream, got {}", describe(&r)),
            Err(status) => Some(status),
        }
    }
}

pub fn request(type_url: &str, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        type_url: type_url.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

/// A scripted delta client.
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
    node: Option<Node>,
    barriers: u32,
}

impl DeltaClient {
    pub async fn ads(h: &Harness, node_id: &str) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let mut client = AggregatedDiscoveryServiceClient::new(h.channel().await)
            .max_decoding_message_size(usize::MAX);
        let rx = within(
            "delta ADS stream",
            client.delta_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .unwrap()
        .into_inner();
        Self::from_parts(tx, rx, node(node_id))
    }

    pub fn from_parts(
        tx: mpsc::Sender<DeltaDiscoveryRequest>,
        rx: Streaming<DeltaDiscoveryResponse>,
        node: Node,
    ) -> Self {
        DeltaClient {
            tx,
            rx,
            node: Some(node),
            barriers: 0,
        }
    }

    pub async fn send(&mut self, mut req: DeltaDiscoveryRequest) {
        if req.node.is_none() {
            req.node = self.node.take();
        }
        within("send", self.tx.send(req)).await.unwrap();
    }

    /// Subscription change without a nonce.
    pub async fn subscribe(&mut self, type_url: &str, sub: &[&str], unsub: &[&str]) {
        self.send(delta_request(type_url, sub, unsub, "")).await;
    }

    pub async fn ack(&mut self, resp: &DeltaDiscoveryResponse) {
        self.send(delta_request(&resp.type_url, &[], &[], &resp.nonce))
            .await;
    }

    pub async fn nack(&mut self, resp: &DeltaDiscoveryResponse, message: &str) {
        let mut req = delta_request(&resp.type_url, &[], &[], &resp.nonce);
        req.error_detail = Some(RpcStatus {
            code: 3,
            message: message.to_string(),
            details: vec![],
        });
        self.send(req).await;
    }

    pub async fn recv(&mut self) -> DeltaDiscoveryResponse {
        match within("a delta response", self.rx.message()).await {
            Ok(Some(r)) => r,
            other => panic!("stream ended instead of responding: {other:?}"),
        }
    }

    pub async fn recv_type(&mut self, type_url: &str) -> DeltaDiscoveryResponse {
        let r = self.recv().await;
        assert_eq!(
            r.type_url,
            type_url,
            "unexpected response {}",
            describe_delta(&r)
        );
        r
    }

    pub async fn recv_ack(&mut self, type_url: &str) -> DeltaDiscoveryResponse {
        let r = self.recv_type(type_url).await;
        self.ack(&r).await;
        r
    }

    pub async fn barrier(&mut self) {
        self.barriers += 1;
        let t = barrier_type(self.barriers);
        self.subscribe(&t, &[], &[]).await;
        let r = self.recv().await;
        assert_eq!(
            r.type_url,
            t,
            "expected nothing before the barrier, got {}",
            describe_delta(&r)
        );
        self.ack(&r).await;
    }
}

pub fn delta_request(
    type_url: &str,
    sub: &[&str],
    unsub: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names_subscribe: sub.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

// ---- resources -------------------------------------------------------------------------

pub fn any<M: Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// An EDS cluster; `tag` varies its content.
pub fn cluster(name: &str, tag: &str) -> Any {
    any(&Cluster {
        name: name.to_string(),
        alt_stat_name: tag.to_string(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        ..Default::default()
    })
}

pub fn cla(name: &str, tag: &str) -> Any {
    any(&ClusterLoadAssignment {
        cluster_name: name.to_string(),
        named_endpoints: [(tag.to_string(), Default::default())]
            .into_iter()
            .collect(),
        ..Default::default()
    })
}

/// A listener whose HTTP connection manager fetches `route` over RDS.
pub fn listener(name: &str, route: &str) -> Any {
    listener_tagged(name, route, "")
}

/// A listener; `tag` varies its content.
pub fn listener_tagged(name: &str, route: &str, tag: &str) -> Any {
    let hcm = HttpConnectionManager {
        stat_prefix: format!("{name}{tag}"),
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            route_config_name: route.to_string(),
            ..Default::default()
        })),
        ..Default::default()
    };
    any(&Listener {
        name: name.to_string(),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A route config; `tag` stands for the cluster it routes to.
pub fn route(name: &str, tag: &str) -> Any {
    any(&RouteConfiguration {
        name: name.to_string(),
        request_headers_to_remove: vec![tag.to_string()],
        ..Default::default()
    })
}

pub fn secret(name: &str, tag: &str) -> Any {
    let mut a = any(&Secret {
        name: name.to_string(),
        ..Default::default()
    });
    // Secret has no free-text field: vary the content with an unknown field (number 1000).
    prost::encoding::string::encode(1000, &tag.to_string(), &mut a.value);
    a
}

/// Builds a snapshot from (type URL, resource) pairs, naming each by its proto name.
pub fn snap(resources: &[(&str, Any)]) -> Snapshot {
    let mut s = Snapshot::new();
    for (t, a) in resources {
        s.insert(t, name_of(a), a.clone());
    }
    s
}

pub fn name_of(a: &Any) -> String {
    let v = a.value.as_slice();
    match a.type_url.as_str() {
        CLUSTER => Cluster::decode(v).unwrap().name,
        ENDPOINT => ClusterLoadAssignment::decode(v).unwrap().cluster_name,
        LISTENER => Listener::decode(v).unwrap().name,
        ROUTE => RouteConfiguration::decode(v).unwrap().name,
        SECRET => Secret::decode(v).unwrap().name,
        other => panic!("unknown type {other}"),
    }
}

/// Names of the resources in a SotW response, in order.
pub fn names(r: &DiscoveryResponse) -> Vec<String> {
    r.resources.iter().map(name_of).collect()
}

/// Names of the resources in a delta response, in order (checked against the body).
pub fn delta_names(r: &DeltaDiscoveryResponse) -> Vec<String> {
    r.resources
        .iter()
        .map(|res| {
            let body = res.resource.as_ref().expect("resource body");
            assert_eq!(res.name, name_of(body));
            res.name.clone()
        })
        .collect()
}

pub fn describe(r: &DiscoveryResponse) -> String {
    let names: Vec<String> = r
        .resources
        .iter()
        .map(|a| {
            if a.type_url.contains("portico.test") {
                String::new()
            } else {
                name_of(a)
            }
        })
        .collect();
    format!(
        "{} v={} nonce={} {:?}",
        r.type_url, r.version_info, r.nonce, names
    )
}

pub fn describe_delta(r: &DeltaDiscoveryResponse) -> String {
    let names: Vec<&str> = r.resources.iter().map(|r| r.name.as_str()).collect();
    format!(
        "{} nonce={} resources={:?} removed={:?}",
        r.type_url, r.nonce, names, r.removed_resources
    )
}

/// A typical fleet: one listener -> route -> cluster -> endpoints.
pub fn basic(tag: &str) -> Snapshot {
    snap(&[
        (CLUSTER, cluster("c1", "")),
        (ENDPOINT, cla("c1", tag)),
        (LISTENER, listener("l1", "r1")),
        (ROUTE, route("r1", "c1")),
    ])
}

/// A SotW stream on the per-type service of `type_url`.
pub async fn per_type_sotw(h: &Harness, type_url: &str, node_id: &str) -> SotwClient {
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient as Cds;
    use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient as Eds;
    use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_client::ListenerDiscoveryServiceClient as Lds;
    use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient as Rds;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient as Sds;
    let ch = h.channel().await;
    let (tx, rx) = mpsc::channel(16);
    let reqs = ReceiverStream::new(rx);
    let resp = within("per-type stream", async {
        match type_url {
            CLUSTER => Cds::new(ch).stream_clusters(reqs).await,
            ENDPOINT => Eds::new(ch).stream_endpoints(reqs).await,
            LISTENER => Lds::new(ch).stream_listeners(reqs).await,
            ROUTE => Rds::new(ch).stream_routes(reqs).await,
            SECRET => Sds::new(ch).stream_secrets(reqs).await,
            other => panic!("no service for {other}"),
        }
    })
    .await
    .unwrap();
    SotwClient::from_parts(tx, resp.into_inner(), node(node_id))
}

/// A delta stream on the per-type service of `type_url`.
pub async fn per_type_delta(h: &Harness, type_url: &str, node_id: &str) -> DeltaClient {
    use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient as Cds;
    use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient as Eds;
    use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_client::ListenerDiscoveryServiceClient as Lds;
    use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient as Rds;
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient as Sds;
    let ch = h.channel().await;
    let (tx, rx) = mpsc::channel(16);
    let reqs = ReceiverStream::new(rx);
    let resp = within("per-type delta stream", async {
        match type_url {
            CLUSTER => Cds::new(ch).delta_clusters(reqs).await,
            ENDPOINT => Eds::new(ch).delta_endpoints(reqs).await,
            LISTENER => Lds::new(ch).delta_listeners(reqs).await,
            ROUTE => Rds::new(ch).delta_routes(reqs).await,
            SECRET => Sds::new(ch).delta_secrets(reqs).await,
            other => panic!("no service for {other}"),
        }
    })
    .await
    .unwrap();
    DeltaClient::from_parts(tx, resp.into_inner(), node(node_id))
}
