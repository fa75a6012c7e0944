//! Which child resources a Cluster or Listener refers to (its EDS name, its RDS route configs).
//!
//! Decoded with minimal message types that carry only the fields we need: prost skips the rest,
//! so this stays cheap for large resources and indifferent to fields we do not know.

use crate::Any;
use crate::type_url::{CLUSTER, LISTENER};

const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// `envoy.config.cluster.v3.Cluster.DiscoveryType.EDS`.
const EDS: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
struct ClusterRefs {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int32, optional, tag = "2")]
    discovery_type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    eds_cluster_config: Option<EdsClusterConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EdsClusterConfig {
    #[prost(string, tag = "2")]
    service_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ListenerRefs {
    #[prost(message, repeated, tag = "3")]
    filter_chains: Vec<FilterChain>,
    #[prost(message, optional, tag = "25")]
    default_filter_chain: Option<FilterChain>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FilterChain {
    #[prost(message, repeated, tag = "3")]
    filters: Vec<Filter>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Filter {
    #[prost(message, optional, tag = "4")]
    typed_config: Option<Any>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HcmRefs {
    #[prost(message, optional, tag = "3")]
    rds: Option<Rds>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Rds {
    #[prost(string, tag = "2")]
    route_config_name: String,
}

/// Names of the resources (of the child type) that a resource needs: the ClusterLoadAssignment
/// of an EDS cluster, the RouteConfigurations of a listener's HTTP connection managers.
/// Anything undecodable refers to nothing.
pub(crate) fn children(type_url: &str, body: &Any) -> Vec<String> {
    match type_url {
        CLUSTER => eds_name(body).into_iter().collect(),
        LISTENER => rds_names(body),
        _ => Vec::new(),
    }
}

fn eds_name(body: &Any) -> Option<String> {
    let c = <ClusterRefs as prost::Message>::decode(body.value.as_slice()).ok()?;
    if c.discovery_type != Some(EDS) {
        return None;
    }
    let service = c
        .eds_cluster_config
        .map(|e| e.service_name)
        .unwrap_or_default();
    Some(if service.is_empty() { c.name } else { service })
}

fn rds_names(body: &Any) -> Vec<String> {
    let Ok(l) = <ListenerRefs as prost::Message>::decode(body.value.as_slice()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = l
        .filter_chains
        .iter()
        .chain(l.default_filter_chain.as_ref())
        .flat_map(|fc| &fc.filters)
        .filter_map(|f| f.typed_config.as_ref())
        .filter(|tc| tc.type_url == HCM)
        .filter_map(|tc| {
            <HcmRefs as prost::Message>::decode(tc.value.as_slice())
                .ok()?
                .rds
        })
        .map(|rds| rds.route_config_name)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
    use envoy_types::pb::envoy::config::listener::v3::{
        Filter as PbFilter, FilterChain as PbChain, Listener, filter,
    };
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, Rds as PbRds, http_connection_manager::RouteSpecifier,
    };

    fn any<M: prost::Name>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    #[test]
    fn eds_cluster_names_its_load_assignment() {
        let mut c = Cluster {
            name: "backend".into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            ..Default::default()
        };
        assert_eq!(children(CLUSTER, &any(&c)), vec!["backend".to_string()]);
        c.eds_cluster_config = Some(cluster::EdsClusterConfig {
            service_name: "svc".into(),
            ..Default::default()
        });
        assert_eq!(children(CLUSTER, &any(&c)), vec!["svc".to_string()]);
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        ));
        assert!(children(CLUSTER, &any(&c)).is_empty());
    }

    #[test]
    fn listener_names_its_route_configs() {
        let hcm = |route: &str| HttpConnectionManager {
            route_specifier: Some(RouteSpecifier::Rds(PbRds {
                route_config_name: route.into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let chain = |route: &str| PbChain {
            filters: vec![PbFilter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm(route)))),
            }],
            ..Default::default()
        };
        let l = Listener {
            name: "l".into(),
            filter_chains: vec![chain("b"), chain("a"), chain("b")],
            default_filter_chain: Some(chain("c")),
            ..Default::default()
        };
        assert_eq!(children(LISTENER, &any(&l)), vec!["a", "b", "c"]);
        let garbage = Any {
            type_url: LISTENER.into(),
            value: vec![0xff, 0xff],
        };
        assert!(children(LISTENER, &garbage).is_empty());
    }
}
