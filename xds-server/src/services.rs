//! The xDS gRPC services: ADS and the per-type CDS/EDS/LDS/RDS/SDS services, each with SotW,
//! delta and (per-type) unary fetch.
//!
//! Hand-written rather than the generated servers so responses can be the encode-only types of
//! `wire.rs`; otherwise this is what tonic generates: route by method, decode with prost,
//! hand the stream to `stream::run`.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::marker::PhantomData;
use std::task::{Context, Poll};

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tonic::codegen::{Body as HttpBody, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::cache::Cache;
use crate::delta::Delta;
use crate::frames::FrameBody;
use crate::requests::Requests;
use crate::shared::Outgoing;
use crate::sotw::Sotw;
use crate::state::Protocol;
use crate::status::Variant;
use crate::stream;
use crate::type_url::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};

/// Largest request accepted: a node with very many subscriptions sends long name lists.
pub(crate) const MAX_MESSAGE: usize = 64 << 20;

/// Everything a stream needs from the server; cheap to clone.
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
        requests: Requests<P::Request>,
    ) -> mpsc::Receiver<Result<Outgoing, Status>> {
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
        rx
    }

    /// A SotW or delta stream: decoded by tonic, answered with [`FrameBody`] (see
    /// `frames.rs` for why not tonic's encoder).
    fn stream<P: Protocol, B>(
        &self,
        variant: Variant,
        fixed_type: Option<&'static str>,
        req: http::Request<B>,
    ) -> http::Response<Body>
    where
        B: HttpBody + Send + 'static,
        B::Error: Into<StdError> + Send + 'static,
    {
        if let Some(encoding) = req.headers().get("grpc-encoding")
            && encoding != "identity"
        {
            let message = format!("request compression {encoding:?} is not supported");
            return Status::unimplemented(message).into_http();
        }
        let requests = Requests::new(req.into_body(), MAX_MESSAGE);
        let rx = self.spawn::<P>(variant, fixed_type, requests);
        let mut response = http::Response::new(Body::new(FrameBody::new(rx)));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        response
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

/// One xDS gRPC service: its name, the type it serves (None: ADS), its method names.
pub(crate) trait XdsApi: Send + Sync + 'static {
    const NAME: &'static str;
    const TYPE: Option<&'static str>;
    const SOTW: &'static str;
    const DELTA: &'static str;
    const FETCH: Option<&'static str>;
}

macro_rules! xds_api {
    ($marker:ident, $name:expr, $type_url:expr, $sotw:expr, $delta:expr, $fetch:expr) => {
        pub(crate) struct $marker;
        impl XdsApi for $marker {
            const NAME: &'static str = $name;
            const TYPE: Option<&'static str> = $type_url;
            const SOTW: &'static str = $sotw;
            const DELTA: &'static str = $delta;
            const FETCH: Option<&'static str> = $fetch;
        }
    };
}

xds_api!(
    Ads,
    "envoy.service.discovery.v3.AggregatedDiscoveryService",
    None,
    "StreamAggregatedResources",
    "DeltaAggregatedResources",
    None
);
xds_api!(
    Cds,
    "envoy.service.cluster.v3.ClusterDiscoveryService",
    Some(CLUSTER),
    "StreamClusters",
    "DeltaClusters",
    Some("FetchClusters")
);
xds_api!(
    Eds,
    "envoy.service.endpoint.v3.EndpointDiscoveryService",
    Some(ENDPOINT),
    "StreamEndpoints",
    "DeltaEndpoints",
    Some("FetchEndpoints")
);
xds_api!(
    Lds,
    "envoy.service.listener.v3.ListenerDiscoveryService",
    Some(LISTENER),
    "StreamListeners",
    "DeltaListeners",
    Some("FetchListeners")
);
xds_api!(
    Rds,
    "envoy.service.route.v3.RouteDiscoveryService",
    Some(ROUTE),
    "StreamRoutes",
    "DeltaRoutes",
    Some("FetchRoutes")
);
xds_api!(
    Sds,
    "envoy.service.secret.v3.SecretDiscoveryService",
    Some(SECRET),
    "StreamSecrets",
    "DeltaSecrets",
    Some("FetchSecrets")
);

/// The tonic service for one [`XdsApi`].
pub(crate) struct XdsService<A> {
    xds: Xds,
    api: PhantomData<fn() -> A>,
}

impl<A> XdsService<A> {
    pub(crate) fn new(xds: Xds) -> Self {
        XdsService {
            xds,
            api: PhantomData,
        }
    }
}

impl<A> Clone for XdsService<A> {
    fn clone(&self) -> Self {
        XdsService::new(self.xds.clone())
    }
}

impl<A: XdsApi> NamedService for XdsService<A> {
    const NAME: &'static str = A::NAME;
}

impl<A: XdsApi, B> Service<http::Request<B>> for XdsService<A>
where
    B: HttpBody + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or_default();
        let (ads, fixed) = (A::TYPE.is_none(), A::TYPE);
        let xds = self.xds.clone();
        if method == A::SOTW {
            let variant = if ads {
                Variant::SotwAds
            } else {
                Variant::SotwPerType
            };
            let response = xds.stream::<Sotw, B>(variant, fixed, req);
            Box::pin(async move { Ok(response) })
        } else if method == A::DELTA {
            let variant = if ads {
                Variant::DeltaAds
            } else {
                Variant::DeltaPerType
            };
            let response = xds.stream::<Delta, B>(variant, fixed, req);
            Box::pin(async move { Ok(response) })
        } else if let (Some(type_url), true) = (fixed, A::FETCH == Some(method)) {
            let method = FetchMethod { xds, type_url };
            let codec = ProstCodec::<DiscoveryResponse, DiscoveryRequest>::default();
            Box::pin(async move { Ok(grpc(codec).unary(method, req).await) })
        } else {
            Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

fn grpc<T, U>(codec: ProstCodec<T, U>) -> Grpc<ProstCodec<T, U>>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    Grpc::new(codec).apply_max_message_size_config(Some(MAX_MESSAGE), None)
}

struct FetchMethod {
    xds: Xds,
    type_url: &'static str,
}

impl UnaryService<DiscoveryRequest> for FetchMethod {
    type Response = DiscoveryResponse;
    type Future = Ready<Result<Response<DiscoveryResponse>, Status>>;

    fn call(&mut self, request: Request<DiscoveryRequest>) -> Self::Future {
        ready(
            self.xds
                .fetch(self.type_url, request.into_inner())
                .map(Response::new),
        )
    }
}
