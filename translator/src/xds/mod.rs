//! Stage two: IR -> Envoy protos, one file per Envoy concern.

mod cluster;
mod endpoint;
mod listener;
mod metadata;
mod route;
mod secret;

use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};

use crate::ir;
use crate::render;
use crate::{FleetConfig, ObjectKey};

/// Name of the cluster that never exists: routes send invalid backends' shares there and
/// answer 500 (cluster_not_found_response_code).
pub const INVALID_CLUSTER: &str = "portico:invalid-backend";

pub fn any<T: Message + Name>(m: &T) -> Any {
    render::pack(m)
}

/// ADS with the v3 API: every dynamic resource comes over the one stream.
pub fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

pub fn duration_ms(ms: u64) -> Duration {
    Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn socket(
    address: &str,
    port: u16,
    udp: bool,
) -> envoy_types::pb::envoy::config::core::v3::Address {
    envoy_types::pb::envoy::config::core::v3::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            protocol: if udp {
                socket_address::Protocol::Udp as i32
            } else {
                socket_address::Protocol::Tcp as i32
            },
            address: address.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

/// Builds one fleet's Envoy resources from its IR.
pub fn fleet_config(fleet: &ir::Fleet, gateway: &ObjectKey) -> FleetConfig {
    // Envoy's Cluster is a large struct: growing these Vecs by doubling would copy them
    // over and over.
    let mut out = FleetConfig {
        clusters: Vec::with_capacity(fleet.clusters.len()),
        endpoints: Vec::with_capacity(fleet.clusters.len()),
        ..Default::default()
    };
    for port in &fleet.ports {
        let mut l = listener::listener(port, &fleet.addresses);
        l.metadata = metadata::infrastructure(&fleet.infrastructure);
        // Envoy rejects a TCP listener without filter chains (e.g. a TLS listener without
        // routes), and with it the whole update: such a port is left out.
        if l.filter_chains.is_empty() && port.protocol != ir::PortProtocol::Udp {
            continue;
        }
        out.listeners.push(l);
        let mut origins = port.origins.clone();
        origins.sort();
        out.origins.insert(
            (render::LISTENER.into(), port.name.clone()),
            origins.clone(),
        );
        if !port.virtual_hosts.is_empty() {
            for rc in route::route_configurations(port) {
                out.origins
                    .insert((render::ROUTE.into(), rc.name.clone()), origins.clone());
                out.routes.push(rc);
            }
        }
    }
    for c in fleet.clusters.values() {
        let mut cluster = cluster::cluster(c);
        cluster.metadata = metadata::infrastructure(&fleet.infrastructure);
        out.clusters.push(cluster);
        out.origins
            .insert((render::CLUSTER.into(), c.name.clone()), c.origins.clone());
        if let ir::Discovery::Eds(endpoints) = &c.discovery {
            out.endpoints
                .push(endpoint::load_assignment(&c.name, endpoints));
            out.origins
                .insert((render::ENDPOINT.into(), c.name.clone()), c.origins.clone());
        }
    }
    for s in fleet.secrets.values() {
        out.secrets.push(secret::secret(s));
        let (ns, name) = s.name.split_once('/').unwrap_or(("", &s.name));
        out.origins.insert(
            (render::SECRET.into(), s.name.clone()),
            vec![ObjectKey::new("Secret", ns, name), gateway.clone()],
        );
    }
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
