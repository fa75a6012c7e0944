//! What a simulated Envoy needs to know about the resources it receives: their names, which
//! EDS/RDS resources they refer to, and whether they carry the marker of a change. Every
//! stream receives the same bodies, so answers are cached by content version and computed
//! once for the whole fleet: the simulator must not spend the CPU that Portico is measured on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
const HCM: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";

/// The child type a type's resources refer to (CDS -> EDS, LDS -> RDS).
pub fn child_type(type_url: &str) -> Option<&'static str> {
    match type_url {
        CLUSTER => Some(ENDPOINT),
        LISTENER => Some(ROUTE),
        _ => None,
    }
}

/// One decoded resource: its name and the child resources it needs.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub name: String,
    pub children: Vec<String>,
}

/// Decodes a packed resource (names and references only).
pub fn summarize(any: &Any) -> Summary {
    let bytes = any.value.as_slice();
    match any.type_url.as_str() {
        CLUSTER => match Cluster::decode(bytes) {
            Ok(c) => {
                let eds = matches!(
                    c.cluster_discovery_type,
                    Some(cluster::ClusterDiscoveryType::Type(t)) if t == cluster::DiscoveryType::Eds as i32
                );
                let children = if !eds {
                    Vec::new()
                } else {
                    match c
                        .eds_cluster_config
                        .as_ref()
                        .map(|e| e.service_name.clone())
                    {
                        Some(service) if !service.is_empty() => vec![service],
                        _ => vec![c.name.clone()],
                    }
                };
                Summary {
                    name: c.name,
                    children,
                }
            }
            Err(_) => Summary::default(),
        },
        LISTENER => match Listener::decode(bytes) {
            Ok(l) => {
                let mut children = Vec::new();
                let chains = l
                    .filter_chains
                    .iter()
                    .chain(l.default_filter_chain.as_ref());
                for f in chains.flat_map(|c| &c.filters) {
                    if let Some(filter::ConfigType::TypedConfig(typed)) = &f.config_type
                        && typed.type_url == HCM
                        && let Ok(hcm) = HttpConnectionManager::decode(typed.value.as_slice())
                        && let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier
                    {
                        children.push(rds.route_config_name);
                    }
                }
                children.sort();
                children.dedup();
                Summary {
                    name: l.name,
                    children,
                }
            }
            Err(_) => Summary::default(),
        },
        ROUTE => Summary {
            name: RouteConfiguration::decode(bytes)
                .map(|r| r.name)
                .unwrap_or_default(),
            children: vec![],
        },
        ENDPOINT => Summary {
            name: ClusterLoadAssignment::decode(bytes)
                .map(|c| c.cluster_name)
                .unwrap_or_default(),
            children: vec![],
        },
        _ => Summary::default(),
    }
}

/// A cache whose entries are computed once even when many streams ask at the same moment
/// (they all receive the same response together).
struct OnceMap<K, V>(Mutex<HashMap<K, Arc<OnceLock<V>>>>);

impl<K: std::hash::Hash + Eq, V: Clone> OnceMap<K, V> {
    fn get(&self, key: K, compute: impl FnOnce() -> V) -> V {
        let cell = lock(&self.0).entry(key).or_default().clone();
        cell.get_or_init(compute).clone()
    }

    fn retain(&self, keep: impl FnMut(&K, &mut Arc<OnceLock<V>>) -> bool) {
        lock(&self.0).retain(keep);
    }
}

impl<K, V> Default for OnceMap<K, V> {
    fn default() -> Self {
        OnceMap(Mutex::default())
    }
}

/// Fleet-wide caches, keyed by content version.
#[derive(Default)]
pub struct Decoder {
    /// SotW: (type URL, response version) -> every resource of that response.
    responses: OnceMap<(String, String), Arc<[Summary]>>,
    /// Delta: (type URL, name, resource version) -> children.
    resources: OnceMap<(String, String, String), Arc<[String]>>,
    /// (probe id, content key) -> whether the marker is in it.
    markers: OnceMap<(u64, String), bool>,
}

impl Decoder {
    pub fn sotw(&self, type_url: &str, version: &str, resources: &[Any]) -> Arc<[Summary]> {
        self.responses
            .get((type_url.to_string(), version.to_string()), || {
                resources.iter().map(summarize).collect()
            })
    }

    pub fn delta_children(
        &self,
        type_url: &str,
        name: &str,
        version: &str,
        body: Option<&Any>,
    ) -> Arc<[String]> {
        self.resources.get(
            (type_url.to_string(), name.to_string(), version.to_string()),
            || {
                body.map(|b| summarize(b).children)
                    .unwrap_or_default()
                    .into()
            },
        )
    }

    /// Whether `marker` occurs in any of `bodies`; `key` names the content (a version).
    pub fn has_marker<'a>(
        &self,
        probe: u64,
        key: String,
        marker: &[u8],
        bodies: impl Iterator<Item = &'a Any>,
    ) -> bool {
        self.markers.get((probe, key), || {
            let finder = memchr::memmem::Finder::new(marker);
            bodies.into_iter().any(|b| finder.find(&b.value).is_some())
        })
    }

    /// Forgets marker answers of earlier probes.
    pub fn new_probe(&self, probe: u64) {
        self.markers.retain(|(p, _), _| *p == probe);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
