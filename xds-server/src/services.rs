//! tonic service implementations: ADS and the per-type CDS/EDS/LDS/RDS/SDS services, each with
//! SotW, delta and unary fetch.

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::ClusterDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::EndpointDiscoveryService;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::ListenerDiscoveryService;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::RouteDiscoveryService;
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::cache::Cache;
use crate::delta::Delta;
use crate::sotw::Sotw;
use crate::state::Protocol;
use crate::status::Variant;
use crate::stream;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

pub(crate) type SotwStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
pub(crate) type DeltaStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

/// Every xDS service; cheap to clone.
#[derive(Clone)]
pub(crate) struct Xds {
    pub(crate) cache: Cache,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Xds {
    fn spawn<P: Protocol>(
        &self,
        variant: Variant,
        fixed_type: Option<&'static str>,
        requests: Streaming<P::Request>,
    ) -> ReceiverStream<Result<P::Response, Status>> {
        // One slot: a client that does not read holds up only its own stream, and the next
        // response is built from the latest state when the slot frees up.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(stream::run::<P>(
            self.cache.clone(),
            self.shutdown.clone(),
            variant,
            fixed_type,
            requests,
            tx,
        ));
        ReceiverStream::new(rx)
    }

    /// Unary fetch: the requested (or all) resources of the node's fleet.
    fn fetch(&self, type_url: &str, req: DiscoveryRequest) -> Result<DiscoveryResponse, Status> {
        if !req.type_url.is_empty() && req.type_url != type_url {
            return Err(Status::invalid_argument(format!(
                "type_url {} on the {type_url} service",
                req.type_url
            )));
        }
        let node = req
            .node
            .ok_or_else(|| Status::invalid_argument("request must carry node"))?;
        let snapshot = self.cache.snapshot(&node.cluster).unwrap_or_default();
        let wanted = |name: &str| {
            req.resource_names.is_empty()
                || req.resource_names.iter().any(|n| n == name || n == "*")
        };
        Ok(DiscoveryResponse {
            version_info: snapshot.version(type_url),
            resources: snapshot
                .resources(type_url)
                .filter(|r| wanted(&r.name))
                .map(|r| (*r.body).clone())
                .collect(),
            type_url: type_url.to_string(),
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Xds {
    type StreamAggregatedResourcesStream = SotwStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwStream>, Status> {
        Ok(Response::new(self.spawn::<Sotw>(
            Variant::SotwAds,
            None,
            req.into_inner(),
        )))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Ok(Response::new(self.spawn::<Delta>(
            Variant::DeltaAds,
            None,
            req.into_inner(),
        )))
    }
}

macro_rules! per_type_service {
    ($trait:ident, $type_url:expr, $sotw_ty:ident, $sotw:ident, $delta_ty:ident, $delta:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $trait for Xds {
            type $sotw_ty = SotwStream;
            type $delta_ty = DeltaStream;

            async fn $sotw(
                &self,
                req: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<SotwStream>, Status> {
                let stream =
                    self.spawn::<Sotw>(Variant::SotwPerType, Some($type_url), req.into_inner());
                Ok(Response::new(stream))
            }

            async fn $delta(
                &self,
                req: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<DeltaStream>, Status> {
                let stream =
                    self.spawn::<Delta>(Variant::DeltaPerType, Some($type_url), req.into_inner());
                Ok(Response::new(stream))
            }

            async fn $fetch(
                &self,
                req: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                self.fetch($type_url, req.into_inner()).map(Response::new)
            }
        }
    };
}

per_type_service!(
    ClusterDiscoveryService,
    CLUSTER,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters
);
per_type_service!(
    EndpointDiscoveryService,
    ENDPOINT,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints
);
per_type_service!(
    ListenerDiscoveryService,
    LISTENER,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners
);
per_type_service!(
    RouteDiscoveryService,
    ROUTE,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes
);
per_type_service!(
    SecretDiscoveryService,
    SECRET,
    StreamSecretsStream,
    stream_secrets,
    DeltaSecretsStream,
    delta_secrets,
    fetch_secrets
);
