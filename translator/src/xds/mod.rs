//! Stage two: IR -> Envoy protos, one file per Envoy concern.

mod cluster;
mod endpoint;
mod listener;
mod metadata;
pub mod origins;
mod route;
pub mod route_config;
mod secret;

use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, address, config_source,
    socket_address,
};
use envoy_types::pb::google::protobuf::{Any, Duration};
use prost::{Message, Name};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

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

/// Stage-two work kept between `Translator` calls: each cluster's protos, by cluster name,
/// valid while the IR cluster is the same (`Arc`) and the fleet's infrastructure metadata is;
/// each route's proto, valid while the IR route is the same (`Arc`).
#[derive(Default)]
pub struct Memo {
    clusters: HashMap<String, ClusterProtos>,
    stamp: u64,
    routes: route::RouteMemo,
    origins: origins::OriginsMemo,
}

struct ClusterProtos {
    ir: Arc<ir::Cluster>,
    infrastructure: ir::Infrastructure,
    cluster: Arc<Cluster>,
    endpoints: Option<Arc<ClusterLoadAssignment>>,
    /// The call that last used the entry.
    stamp: u64,
}

impl Memo {
    /// Ends a call: what this call did not use is forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.clusters.retain(|_, c| c.stamp == stamp);
        self.stamp += 1;
        self.routes.end();
        self.origins.end();
    }
}

/// Builds one fleet's Envoy resources from its IR.
pub fn fleet_config(fleet: &ir::Fleet, gateway: &ObjectKey) -> FleetConfig {
    fleet_config_with(fleet, gateway, None)
}

/// `fleet_config`, reusing the protos of unchanged clusters from `memo`.
pub fn fleet_config_with(
    fleet: &ir::Fleet,
    gateway: &ObjectKey,
    mut memo: Option<&mut Memo>,
) -> FleetConfig {
    // Envoy's Cluster is a large struct: growing these Vecs by doubling would copy them
    // over and over.
    let mut out = FleetConfig {
        clusters: Vec::with_capacity(fleet.clusters.len()),
        endpoints: Vec::with_capacity(fleet.clusters.len()),
        ..Default::default()
    };
    // Gathered by reference in insertion order (clusters, endpoints, ports, secrets).
    let mut port_origins = Vec::new();
    for port in &fleet.ports {
        let mut l = listener::listener(port, &fleet.addresses);
        l.metadata = metadata::infrastructure(&fleet.infrastructure);
        // Envoy rejects a TCP listener without filter chains (e.g. a TLS listener without
        // routes), and with it the whole update: such a port is left out.
        if l.filter_chains.is_empty() && port.protocol != ir::PortProtocol::Udp {
            continue;
        }
        out.listeners.push(Arc::new(l));
        // Stage one sorts them already; sorting a copy is the fallback.
        let keys: Cow<'_, [ObjectKey]> = if port.origins.is_sorted() {
            Cow::Borrowed(&port.origins)
        } else {
            let mut sorted = port.origins.clone();
            sorted.sort();
            Cow::Owned(sorted)
        };
        port_origins.push((render::LISTENER, port.name.clone(), keys.clone()));
        if !port.virtual_hosts.is_empty() {
            let routes = memo.as_deref_mut().map(|m| &mut m.routes);
            for rc in route::route_configurations(port, routes) {
                port_origins.push((render::ROUTE, rc.name.clone(), keys.clone()));
                out.routes.push(Arc::new(rc));
            }
        }
    }
    let mut with_endpoints = Vec::with_capacity(fleet.clusters.len());
    for c in fleet.clusters.values() {
        let build = || {
            let mut cluster = cluster::cluster(c);
            cluster.metadata = metadata::infrastructure(&fleet.infrastructure);
            let endpoints = match &c.discovery {
                ir::Discovery::Eds(endpoints) => {
                    Some(Arc::new(endpoint::load_assignment(&c.name, endpoints)))
                }
                ir::Discovery::Dns(_) => None,
            };
            (Arc::new(cluster), endpoints)
        };
        let (cluster, endpoints) = match memo.as_deref_mut() {
            None => build(),
            Some(m) => {
                let stamp = m.stamp;
                match m.clusters.get_mut(&c.name) {
                    Some(p)
                        if Arc::ptr_eq(&p.ir, c) && p.infrastructure == fleet.infrastructure =>
                    {
                        p.stamp = stamp;
                        (p.cluster.clone(), p.endpoints.clone())
                    }
                    found => {
                        let (cluster, endpoints) = build();
                        let p = ClusterProtos {
                            ir: c.clone(),
                            infrastructure: fleet.infrastructure.clone(),
                            cluster: cluster.clone(),
                            endpoints: endpoints.clone(),
                            stamp,
                        };
                        match found {
                            Some(old) => *old = p,
                            None => {
                                m.clusters.insert(c.name.clone(), p);
                            }
                        }
                        (cluster, endpoints)
                    }
                }
            }
        };
        out.clusters.push(cluster);
        if let Some(e) = endpoints {
            out.endpoints.push(e);
            with_endpoints.push(c);
        }
    }
    let secret_origins: Vec<(&String, Vec<ObjectKey>)> = fleet
        .secrets
        .values()
        .map(|s| {
            out.secrets.push(Arc::new(secret::secret(s)));
            let (ns, name) = s.name.split_once('/').unwrap_or(("", &s.name));
            (
                &s.name,
                vec![ObjectKey::new("Secret", ns, name), gateway.clone()],
            )
        })
        .collect();
    let mut entries = origins::Builder::with_capacity(
        fleet.clusters.len() + with_endpoints.len() + port_origins.len() + secret_origins.len(),
    );
    for c in fleet.clusters.values() {
        entries.push(render::CLUSTER, &c.name, Cow::Borrowed(&c.origins));
    }
    for c in with_endpoints {
        entries.push(render::ENDPOINT, &c.name, Cow::Borrowed(&c.origins));
    }
    for (type_url, name, keys) in &port_origins {
        entries.push(type_url, name, Cow::Borrowed(keys));
    }
    for (name, keys) in secret_origins {
        entries.push(render::SECRET, name, Cow::Owned(keys));
    }
    match memo {
        None => out.origins = entries.finish(None),
        Some(m) => {
            out.origins = entries.finish(m.origins.previous(gateway));
            m.origins.keep(gateway, &out.origins);
        }
    }
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
