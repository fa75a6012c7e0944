//! EDS: ClusterLoadAssignments.

use envoy_types::pb::envoy::config::core::v3::{Address, Pipe, address};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};

use crate::ir::Endpoint;
use crate::xds::socket;

pub fn address_of(e: &Endpoint) -> Address {
    match e {
        Endpoint::Socket { address, port } => socket(address, *port, false),
        Endpoint::Unix { path } => Address {
            address: Some(address::Address::Pipe(Pipe {
                path: path.clone(),
                mode: 0,
            })),
        },
    }
}

/// Named like its cluster. No endpoints = a cluster with no hosts (Envoy answers 503).
pub fn load_assignment(cluster: &str, endpoints: &[Endpoint]) -> ClusterLoadAssignment {
    let mut out = ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        ..Default::default()
    };
    if endpoints.is_empty() {
        return out;
    }
    // Built where they live (pushed defaults, filled in place): these protos are large, and
    // building them on the stack moved each one again.
    let mut locality = LocalityLbEndpoints::default();
    locality.lb_endpoints.reserve_exact(endpoints.len());
    for e in endpoints {
        locality.lb_endpoints.push(LbEndpoint::default());
        if let Some(lb) = locality.lb_endpoints.last_mut() {
            lb.host_identifier = Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(address_of(e)),
                ..Default::default()
            }));
        }
    }
    out.endpoints = vec![locality];
    out
}
