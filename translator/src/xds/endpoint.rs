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
    let lb_endpoints: Vec<LbEndpoint> = endpoints
        .iter()
        .map(|e| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(EnvoyEndpoint {
                address: Some(address_of(e)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}
