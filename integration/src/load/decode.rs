//! What a simulated Envoy needs to know about the resources it receives: their names, which
//! EDS/RDS resources they refer to, and whether they carry the marker of a change. Every
//! stream receives the same bodies, so answers are cached by content version and computed
//! once for the whole fleet: the simulator must not spend the CPU that Portico is measured on.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;

use super::envelope::DeltaResource;
use super::rope::Rope;

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

/// What a SotW response holds: its resources' names, and the child names they need (with
/// their encoding as `resource_names`, for the subscription request).
#[derive(Debug, Default)]
pub struct SotwSummary {
    pub names: HashSet<String>,
    pub children: Arc<BTreeSet<String>>,
    pub children_encoded: Bytes,
}

/// Resource name -> (version, children) of every version seen.
type ChildrenByName = HashMap<String, Vec<(String, Arc<[String]>)>>;

/// Fleet-wide caches, keyed by content version.
#[derive(Default)]
pub struct Decoder {
    /// SotW: (type URL, response version) -> every resource of that response.
    responses: OnceMap<(String, String), Arc<SotwSummary>>,
    /// Delta: type URL -> name -> (resource version, children). Looked up by reference, one
    /// lock per response: a CDS response holds every cluster.
    resources: Mutex<HashMap<String, ChildrenByName>>,
    /// The children of a resource of a type without children.
    none: OnceLock<Arc<[String]>>,
    /// (probe id, content key) -> whether the marker is in it.
    markers: OnceMap<(u64, String), bool>,
    /// (subscription, responses received) -> whether those responses hold every subscribed
    /// name. Keyed by address: both are values of `responses`, which are never dropped.
    covers: OnceMap<(usize, Vec<usize>), bool>,
}

impl Decoder {
    /// Summaries of every resource of a SotW response; `bodies` is called only for a
    /// (type, version) no stream has seen yet.
    pub fn sotw(
        &self,
        type_url: &str,
        version: &str,
        bodies: impl FnOnce() -> Vec<Any>,
    ) -> Arc<SotwSummary> {
        self.responses
            .get((type_url.to_string(), version.to_string()), || {
                let summaries: Vec<Summary> = bodies().iter().map(summarize).collect();
                let children: BTreeSet<String> = summaries
                    .iter()
                    .flat_map(|s| s.children.iter().cloned())
                    .collect();
                Arc::new(SotwSummary {
                    names: summaries.into_iter().map(|s| s.name).collect(),
                    children_encoded: super::envelope::encode_names(children.iter()),
                    children: Arc::new(children),
                })
            })
    }

    /// Children of every resource of a delta response, in order; bodies are decoded only for
    /// versions not seen yet.
    pub fn delta_children(
        &self,
        type_url: &str,
        resources: &[DeltaResource],
        rope: &Rope,
    ) -> Vec<Arc<[String]>> {
        let mut all = lock(&self.resources);
        if !all.contains_key(type_url) {
            all.insert(type_url.to_string(), HashMap::new());
        }
        let Some(by_name) = all.get_mut(type_url) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(resources.len());
        for r in resources {
            if !by_name.contains_key(&r.name) {
                by_name.insert(r.name.clone(), Vec::new());
            }
            let Some(versions) = by_name.get_mut(&r.name) else {
                continue;
            };
            let children = match versions.iter().find(|(v, _)| *v == r.version) {
                Some((_, children)) => children.clone(),
                None => {
                    let body = r
                        .body
                        .and_then(|b| super::envelope::delta_body(rope, b).ok());
                    let children: Arc<[String]> = body
                        .map(|b| summarize(&b).children)
                        .unwrap_or_default()
                        .into();
                    versions.push((r.version.clone(), children.clone()));
                    children
                }
            };
            out.push(children);
        }
        out
    }

    /// No children, shared.
    pub fn no_children(&self) -> Arc<[String]> {
        self.none.get_or_init(|| Arc::from(Vec::new())).clone()
    }

    /// Whether `marker` occurs in any of `bodies`; `key` names the content (a version), and
    /// `bodies` is called once per probe and key.
    pub fn has_marker(
        &self,
        probe: u64,
        key: String,
        marker: &[u8],
        bodies: impl FnOnce() -> Vec<Any>,
    ) -> bool {
        self.markers.get((probe, key), || {
            let finder = memchr::memmem::Finder::new(marker);
            bodies().iter().any(|b| finder.find(&b.value).is_some())
        })
    }

    /// Whether `received` (SotW responses of one type) hold every name of `names` (a
    /// subscription taken from a summary of the parent type).
    pub fn covers(&self, names: &Arc<BTreeSet<String>>, received: &[Arc<SotwSummary>]) -> bool {
        if names.is_empty() {
            return true;
        }
        let key = (
            Arc::as_ptr(names) as usize,
            received.iter().map(|r| Arc::as_ptr(r) as usize).collect(),
        );
        self.covers.get(key, || {
            names
                .iter()
                .all(|n| received.iter().any(|r| r.names.contains(n)))
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
