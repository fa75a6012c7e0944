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

/// Stage-two work kept between `Translator` calls: each fleet's cluster protos, valid while
/// the IR cluster is the same (`Arc`) and the fleet's infrastructure metadata is; each
/// route's proto, valid while the IR route is the same (`Arc`).
#[derive(Default)]
pub struct Memo {
    fleets: HashMap<ObjectKey, FleetClusters>,
    stamp: u64,
    routes: route::RouteMemo,
    origins: origins::OriginsMemo,
}

/// A cluster's protos: the Cluster, and its ClusterLoadAssignment when it uses EDS.
type Protos = (Arc<Cluster>, Option<Arc<ClusterLoadAssignment>>);

/// One fleet's cluster protos, in the order of its IR cluster map.
struct FleetClusters {
    clusters: Arc<std::collections::BTreeMap<String, Arc<ir::Cluster>>>,
    infrastructure: ir::Infrastructure,
    protos: Arc<Vec<Protos>>,
    /// The call that last used the entry.
    stamp: u64,
}

impl Memo {
    /// Ends a call: what this call did not use is forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.fleets.retain(|_, f| f.stamp == stamp);
        self.stamp += 1;
        self.routes.end();
        self.origins.end();
    }

    /// The fleet's cluster protos: the previous call's list when the IR map is the same
    /// `Arc`; else the previous protos of the clusters that are the same `Arc`, found by
    /// walking both (sorted) maps, and new ones for the rest.
    fn fleet_clusters(&mut self, gateway: &ObjectKey, fleet: &ir::Fleet) -> Arc<Vec<Protos>> {
        let stamp = self.stamp;
        let prev = self
            .fleets
            .get(gateway)
            .filter(|p| p.infrastructure == fleet.infrastructure);
        if let Some(p) = prev
            && Arc::ptr_eq(&p.clusters, &fleet.clusters)
        {
            let protos = p.protos.clone();
            if let Some(p) = self.fleets.get_mut(gateway) {
                p.stamp = stamp;
            }
            return protos;
        }
        let mut old = prev
            .map(|p| p.clusters.iter().zip(p.protos.iter()))
            .into_iter()
            .flatten()
            .peekable();
        let protos: Vec<Protos> = fleet
            .clusters
            .iter()
            .map(|(name, c)| {
                while old.next_if(|((n, _), _)| *n < name).is_some() {}
                match old.next_if(|((n, _), _)| *n == name) {
                    Some(((_, was), protos)) if Arc::ptr_eq(was, c) => protos.clone(),
                    _ => cluster_protos(c, &fleet.infrastructure),
                }
            })
            .collect();
        let protos = Arc::new(protos);
        self.fleets.insert(
            gateway.clone(),
            FleetClusters {
                clusters: fleet.clusters.clone(),
                infrastructure: fleet.infrastructure.clone(),
                protos: protos.clone(),
                stamp,
            },
        );
        protos
    }
}

/// Builds a cluster's protos.
fn cluster_protos(c: &ir::Cluster, infrastructure: &ir::Infrastructure) -> Protos {
    let cluster = cluster::cluster(c, metadata::infrastructure(infrastructure));
    let endpoints = match &c.discovery {
        ir::Discovery::Eds(endpoints) => {
            Some(Arc::new(endpoint::load_assignment(&c.name, endpoints)))
        }
        ir::Discovery::Dns(_) => None,
    };
    (cluster, endpoints)
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
            Cow::Borrowed(&port.origins[..])
        } else {
            let mut sorted = port.origins.to_vec();
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
    let protos = match memo.as_deref_mut() {
        None => Arc::new(
            fleet
                .clusters
                .values()
                .map(|c| cluster_protos(c, &fleet.infrastructure))
                .collect(),
        ),
        Some(m) => m.fleet_clusters(gateway, fleet),
    };
    let mut with_endpoints = Vec::with_capacity(fleet.clusters.len());
    for (c, (cluster, endpoints)) in fleet.clusters.values().zip(protos.iter()) {
        out.clusters.push(cluster.clone());
        if let Some(e) = endpoints {
            out.endpoints.push(e.clone());
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
    // The map follows from the cluster map, each port's (type, name, origins list) and the
    // secret names: when those are the same (`Arc`s), so is the map.
    let sig = origins::Inputs {
        clusters: fleet.clusters.clone(),
        ports: port_origins
            .iter()
            .map(|(t, name, keys)| {
                let list = fleet
                    .ports
                    .iter()
                    .find(|p| matches!(keys, Cow::Borrowed(k) if std::ptr::eq(*k, &p.origins[..])))
                    .map(|p| p.origins.clone());
                (*t, name.clone(), list)
            })
            .collect(),
        secrets: secret_origins.iter().map(|(n, _)| (*n).clone()).collect(),
    };
    if let Some(m) = memo.as_deref_mut()
        && let Some(same) = m.origins.unchanged(gateway, &sig)
    {
        out.origins = same;
    } else {
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
        out.origins = entries.finish(memo.as_deref().and_then(|m| m.origins.previous(gateway)));
    }
    if let Some(m) = memo {
        m.origins.keep(gateway, &out.origins, sig);
    }
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name.cmp(&b.name));
    out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    out.endpoints
        .sort_by(|a, b| a.cluster_name.cmp(&b.cluster_name));
    out.secrets.sort_by(|a, b| a.name.cmp(&b.name));
    out
}
