//! Stage two: IR -> Envoy protos, one file per Envoy concern.

mod cluster;
mod endpoint;
mod listener;
mod metadata;
pub mod origins;
mod rds;
mod route;
pub mod route_config;
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
use crate::render::{self, Packed};
use crate::{FleetConfig, ObjectKey, Shared};

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
    /// Each fleet's last output, with the call that made it.
    configs: HashMap<ObjectKey, (u64, FleetConfig)>,
    /// Port origin lists found sorted, by the last call and this one: a list that is the
    /// same `Arc` is not checked again (thousands of key comparisons).
    sorted_origins: [Vec<Arc<Vec<ObjectKey>>>; 2],
    stamp: u64,
    routes: rds::RdsMemo,
    origins: origins::OriginsMemo,
}

/// A cluster's resources: the Cluster, and its ClusterLoadAssignment when it uses EDS.
type Protos = (
    Arc<Packed<Cluster>>,
    Option<Arc<Packed<ClusterLoadAssignment>>>,
);

type ClusterLists = (
    Shared<Packed<Cluster>>,
    Shared<Packed<ClusterLoadAssignment>>,
);

/// One fleet's cluster protos, in the order of its IR cluster map.
struct FleetClusters {
    clusters: Arc<std::collections::BTreeMap<String, Arc<ir::Cluster>>>,
    infrastructure: ir::Infrastructure,
    protos: Arc<Vec<Protos>>,
    /// The cluster and endpoint lists made from `protos`.
    lists: ClusterLists,
    /// The call that last used the entry.
    stamp: u64,
}

impl Memo {
    /// Ends a call: what this call did not use is forgotten.
    pub fn end(&mut self) {
        let stamp = self.stamp;
        self.fleets.retain(|_, f| f.stamp == stamp);
        self.configs.retain(|_, c| c.0 == stamp);
        self.sorted_origins[0] = std::mem::take(&mut self.sorted_origins[1]);
        self.stamp += 1;
        self.routes.end();
        self.origins.end();
    }

    /// The fleet's cluster protos: the previous call's list when the IR map is the same
    /// `Arc`; else the previous protos of the clusters that are the same `Arc`, found by
    /// walking both (sorted) maps, and new ones for the rest.
    fn fleet_clusters(&mut self, gateway: &ObjectKey, fleet: &ir::Fleet) -> ClusterLists {
        let stamp = self.stamp;
        let prev = self
            .fleets
            .get_mut(gateway)
            .filter(|p| p.infrastructure == fleet.infrastructure);
        if let Some(p) = prev
            && Arc::ptr_eq(&p.clusters, &fleet.clusters)
        {
            p.stamp = stamp;
            return p.lists.clone();
        }
        let prev = self
            .fleets
            .get(gateway)
            .filter(|p| p.infrastructure == fleet.infrastructure);
        let mut old = prev
            .map(|p| p.clusters.iter().zip(p.protos.iter()))
            .into_iter()
            .flatten()
            .peekable();
        let mut reused = 0;
        let packer = cluster::Packer::new(metadata::infrastructure(&fleet.infrastructure));
        let clusters: Vec<_> = fleet.clusters.iter().collect();
        let protos: Vec<Protos> = crate::par::map_or_make(
            &clusters,
            |(name, c)| {
                while old.next_if(|((n, _), _)| n < name).is_some() {}
                match old.next_if(|((n, _), _)| n == name) {
                    Some(((_, was), protos)) if Arc::ptr_eq(was, c) => {
                        reused += 1;
                        Ok(protos.clone())
                    }
                    _ => Err(*c),
                }
            },
            |c| cluster_protos(c, &packer),
        );
        // Every proto the same as before (a new map of the same clusters): the same lists.
        let lists = match prev {
            Some(p) if reused == protos.len() && reused == p.protos.len() => p.lists.clone(),
            _ => cluster_lists(&protos),
        };
        self.fleets.insert(
            gateway.clone(),
            FleetClusters {
                clusters: fleet.clusters.clone(),
                infrastructure: fleet.infrastructure.clone(),
                protos: Arc::new(protos),
                lists: lists.clone(),
                stamp,
            },
        );
        lists
    }
}

/// Builds and packs a cluster's resources.
fn cluster_protos(c: &ir::Cluster, packer: &cluster::Packer) -> Protos {
    let endpoints = match &c.discovery {
        ir::Discovery::Eds(endpoints) => Some(Arc::new(Packed::new(
            &c.name,
            render::ENDPOINT,
            &endpoint::load_assignment(&c.name, endpoints),
        ))),
        ir::Discovery::Dns(_) => None,
    };
    (Arc::new(packer.pack(c)), endpoints)
}

/// Builds one fleet's Envoy resources from its IR.
pub fn fleet_config(fleet: &ir::Fleet, gateway: &ObjectKey) -> FleetConfig {
    fleet_config_with(fleet, gateway, None)
}

/// `fleet_config`, reusing from `memo` the protos of unchanged clusters and routes, and the
/// previous call's lists (the same `Arc`) where every resource in them is the same.
pub fn fleet_config_with(
    fleet: &ir::Fleet,
    gateway: &ObjectKey,
    mut memo: Option<&mut Memo>,
) -> FleetConfig {
    let prev = memo
        .as_deref()
        .and_then(|m| m.configs.get(gateway))
        .map(|(_, c)| c.clone());
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let mut secrets = Vec::new();
    let mut origins = origins::Origins::new(fleet.clusters.clone());
    for port in &fleet.ports {
        let mut l = listener::listener(port, &fleet.addresses);
        l.metadata = metadata::infrastructure(&fleet.infrastructure);
        // Envoy rejects a TCP listener without filter chains (e.g. a TLS listener without
        // routes), and with it the whole update: such a port is left out.
        if l.filter_chains.is_empty() && port.protocol != ir::PortProtocol::Udp {
            continue;
        }
        listeners.push(Arc::new(l));
        // Stage one sorts them already; sorting a copy is the fallback.
        let known = memo.as_deref().is_some_and(|m| {
            m.sorted_origins[0]
                .iter()
                .any(|o| Arc::ptr_eq(o, &port.origins))
        });
        let keys = if known || port.origins.is_sorted() {
            if let Some(m) = memo.as_deref_mut() {
                m.sorted_origins[1].push(port.origins.clone());
            }
            port.origins.clone()
        } else {
            let mut sorted = port.origins.to_vec();
            sorted.sort();
            Arc::new(sorted)
        };
        origins.push(render::LISTENER, port.name.clone(), keys.clone());
        if !port.virtual_hosts.is_empty() {
            let memo = memo.as_deref_mut().map(|m| &mut m.routes);
            for rc in rds::route_configurations(port, memo) {
                origins.push(render::ROUTE, rc.name.clone(), keys.clone());
                routes.push(Arc::new(rc));
            }
        }
    }
    let (clusters, endpoints) = match memo.as_deref_mut() {
        None => {
            let packer = cluster::Packer::new(metadata::infrastructure(&fleet.infrastructure));
            cluster_lists(&crate::par::map(
                &fleet.clusters.values().collect::<Vec<_>>(),
                |c| cluster_protos(c, &packer),
            ))
        }
        Some(m) => m.fleet_clusters(gateway, fleet),
    };
    for s in fleet.secrets.values() {
        secrets.push(Arc::new(secret::secret(s)));
        let (ns, name) = s.name.split_once('/').unwrap_or(("", &s.name));
        let keys = vec![ObjectKey::new("Secret", ns, name), gateway.clone()];
        origins.push(render::SECRET, s.name.clone(), Arc::new(keys));
    }
    let origins = match memo.as_deref_mut() {
        Some(m) => m.origins.share(gateway, origins),
        None => Arc::new(origins),
    };
    listeners.sort_by(|a, b| a.name.cmp(&b.name));
    routes.sort_by(|a, b| a.name.cmp(&b.name));
    secrets.sort_by(|a, b| a.name.cmp(&b.name));
    let out = FleetConfig {
        listeners: share(listeners, prev.as_ref().map(|p| &p.listeners)),
        routes: share(routes, prev.as_ref().map(|p| &p.routes)),
        clusters,
        endpoints,
        secrets: share(secrets, prev.as_ref().map(|p| &p.secrets)),
        origins,
    };
    if let Some(m) = memo {
        m.configs.insert(gateway.clone(), (m.stamp, out.clone()));
    }
    out
}

/// `new` as a shared list: each resource equal to the previous list's at its place is
/// that one (the same `Arc`), and when all are, the previous list itself.
fn share<T: PartialEq>(new: Vec<Arc<T>>, prev: Option<&Shared<T>>) -> Shared<T> {
    let Some(prev) = prev else {
        return Arc::new(new);
    };
    let mut same = new.len() == prev.len();
    let list: Vec<Arc<T>> = new
        .into_iter()
        .enumerate()
        .map(|(i, x)| match prev.get(i) {
            Some(p) if Arc::ptr_eq(p, &x) || **p == *x => p.clone(),
            _ => {
                same = false;
                x
            }
        })
        .collect();
    if same { prev.clone() } else { Arc::new(list) }
}

/// A fleet's cluster and endpoint lists from its cluster protos, sorted by name.
fn cluster_lists(protos: &[Protos]) -> ClusterLists {
    let mut clusters = Vec::with_capacity(protos.len());
    let mut endpoints = Vec::with_capacity(protos.len());
    for (cluster, e) in protos {
        clusters.push(cluster.clone());
        endpoints.extend(e.iter().cloned());
    }
    (sorted(clusters), sorted(endpoints))
}

/// In the IR map's (name) order already; sorting is the fallback.
fn sorted<T>(mut list: Vec<Arc<Packed<T>>>) -> Shared<Packed<T>> {
    if !list.is_sorted_by(|a, b| a.name() <= b.name()) {
        list.sort_by(|a, b| a.name().cmp(b.name()));
    }
    Arc::new(list)
}
