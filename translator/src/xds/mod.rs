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
    for port in &fleet.ports {
        let mut l = listener::listener(port, &fleet.addresses);
        l.metadata = metadata::infrastructure(&fleet.infrastructure);
        // Envoy rejects a TCP listener without filter chains (e.g. a TLS listener without
        // routes), and with it the whole update: such a port is left out.
        if l.filter_chains.is_empty() && port.protocol != ir::PortProtocol::Udp {
            continue;
        }
        out.listeners.push(Arc::new(l));
        let mut origins = port.origins.clone();
        origins.sort();
        let mut named = vec![(render::LISTENER, port.name.clone())];
        if !port.virtual_hosts.is_empty() {
            let routes = memo.as_deref_mut().map(|m| &mut m.routes);
            for rc in route::route_configurations(port, routes) {
                named.push((render::ROUTE, rc.name.clone()));
                out.routes.push(Arc::new(rc));
            }
        }
        // The list can be long (every route of the port): the last user takes it.
        let last = named.pop();
        for (type_url, name) in named {
            out.origins
                .insert((type_url.to_string(), name), origins.clone());
        }
        if let Some((type_url, name)) = last {
            out.origins.insert((type_url.to_string(), name), origins);
        }
    }
    // In name order, as the clusters are: each list is sorted.
    let mut cluster_origins = Vec::with_capacity(fleet.clusters.len());
    let mut endpoint_origins = Vec::with_capacity(fleet.clusters.len());
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
        // Collected, then built in bulk below: cheaper than thousands of inserts.
        cluster_origins.push(((render::CLUSTER.into(), c.name.clone()), c.origins.clone()));
        if let Some(e) = endpoints {
            out.endpoints.push(e);
            endpoint_origins.push(((render::ENDPOINT.into(), c.name.clone()), c.origins.clone()));
        }
    }
    // Type URLs differ, so no key is in both.
    let few = std::mem::take(&mut out.origins);
    out.origins = cluster_origins
        .into_iter()
        .chain(endpoint_origins)
        .collect();
    out.origins.extend(few);
    for s in fleet.secrets.values() {
        out.secrets.push(Arc::new(secret::secret(s)));
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
