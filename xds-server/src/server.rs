//! The gRPC server: every xDS service and CSDS on one port.

use std::future::Future;
use std::time::Duration;

use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;

use crate::cache::Cache;
use crate::csds::Csds;
use crate::services::{Ads, Cds, Eds, Lds, MAX_MESSAGE, Rds, Sds, Xds, XdsService};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gRPC transport failed (accepting connections or serving HTTP/2).
    #[error("xDS gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
}

/// Serves ADS (SotW + delta), the per-type services and CSDS from one [`Cache`].
pub struct Server {
    cache: Cache,
}

impl Server {
    pub fn new(cache: Cache) -> Self {
        Server { cache }
    }

    /// Serves until `shutdown` completes, then ends every open stream cleanly and returns once
    /// connections have drained.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let (stop, stopped) = watch::channel(false);
        let routes = self.routes_with(stopped);
        let signal = async move {
            shutdown.await;
            // Streams end on this; tonic then waits for their connections to finish.
            let _ = stop.send(true);
        };
        // The builder's TCP options apply only to a listener tonic binds itself. Without
        // TCP_NODELAY the tail of a push waits for the client's delayed ACK (~40 ms).
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(60)));
        tonic::transport::Server::builder()
            // Find Envoys that vanished without closing their connection, so their streams
            // (and statuses) go away.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, signal)
            .await
            .map_err(Error::Transport)
    }

    /// The services, for embedding in another tonic server. Streams then end only when their
    /// clients leave.
    pub fn routes(self) -> tonic::service::Routes {
        let (_, never) = watch::channel(false);
        self.routes_with(never)
    }

    fn routes_with(self, shutdown: watch::Receiver<bool>) -> tonic::service::Routes {
        let xds = Xds {
            cache: self.cache.clone(),
            shutdown,
        };
        let csds = Csds { cache: self.cache };
        tonic::service::Routes::new(XdsService::<Ads>::new(xds.clone()))
            .add_service(XdsService::<Cds>::new(xds.clone()))
            .add_service(XdsService::<Eds>::new(xds.clone()))
            .add_service(XdsService::<Lds>::new(xds.clone()))
            .add_service(XdsService::<Rds>::new(xds.clone()))
            .add_service(XdsService::<Sds>::new(xds))
            .add_service(
                ClientStatusDiscoveryServiceServer::new(csds)
                    .max_decoding_message_size(MAX_MESSAGE),
            )
    }
}
