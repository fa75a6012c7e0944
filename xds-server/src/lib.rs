//! Portico's xDS management server.
//!
//! Callers publish one [`Snapshot`] of already-built Envoy resources per fleet (a fleet is the
//! set of Envoys whose `node.cluster` names it) into a [`Cache`]; a [`Server`] streams them to
//! Envoy over ADS, the per-type services (SotW and delta) and reports client state over CSDS.
//! This crate knows nothing of Kubernetes or of how the resources were built.

mod cache;
mod csds;
mod delta;
mod frames;
mod held;
mod metrics;
mod names;
mod refs;
mod requests;
mod resume;
mod server;
mod services;
mod shared;
mod snapshot;
mod sotw;
mod state;
mod status;
mod stream;
mod view;
mod wire;

pub use cache::{Cache, CacheConfig, SentResources};
pub use envoy_types::pb::google::protobuf::Any;
pub use server::{Error, Server};
pub use snapshot::{Resource, Snapshot};
pub use status::{Nack, NodeStatus, SyncState, TypeStatus, Variant, XdsEvent, XdsEventKind};

/// Full type URLs of the resource types Portico serves.
pub mod type_url {
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
    pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
}
