//! Envoy's own JSON mapping of the generated protos (like Envoy's config_dump), and the
//! `Any` packing the xDS server needs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock};

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;

use crate::par;
use crate::xds::route_config::RouteConfig;
use crate::{FleetConfig, Shared};

static POOL: LazyLock<Result<DescriptorPool, String>> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!("../../proto/envoy.binpb")[..])
        .map_err(|e| e.to_string())
});

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The embedded descriptor set did not load.
    #[error("embedded Envoy descriptors: {0}")]
    Descriptors(String),
    /// The type URL names a message the descriptor set does not have.
    #[error("unknown message type {0}")]
    UnknownType(String),
    /// The bytes do not decode as the named message.
    #[error("decoding {type_url}: {source}")]
    Decode {
        type_url: String,
        #[source]
        source: prost::DecodeError,
    },
    /// serde_json refused the value.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
}

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

fn options() -> SerializeOptions {
    // Envoy's config_dump: proto field names, 64-bit integers as strings, defaults left out.
    SerializeOptions::new()
        .stringify_64_bit_integers(true)
        .skip_default_fields(true)
        .use_proto_field_name(true)
}

/// Renders a packed resource as `{"@type": ..., fields...}`.
pub fn resource_json(any: &Any) -> Result<Value, RenderError> {
    let pool = POOL
        .as_ref()
        .map_err(|e| RenderError::Descriptors(e.clone()))?;
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let desc = pool
        .get_message_by_name(name)
        .ok_or_else(|| RenderError::UnknownType(any.type_url.clone()))?;
    let message = DynamicMessage::decode(desc, any.value.as_slice()).map_err(|source| {
        RenderError::Decode {
            type_url: any.type_url.clone(),
            source,
        }
    })?;
    let body = message.serialize_with_options(serde_json::value::Serializer, &options())?;
    let mut out = serde_json::Map::new();
    out.insert("@type".into(), Value::String(any.type_url.clone()));
    if let Value::Object(fields) = body {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

/// Packs a message into an `Any`.
pub fn pack<T: Message + Name>(message: &T) -> Any {
    Any {
        type_url: T::type_url(),
        value: message.encode_to_vec(),
    }
}

/// A named resource held only as its packed encoding. Clusters and endpoints come by the
/// thousand: each is built, encoded and dropped where it is made (in parallel), so a fleet
/// holds two allocations per resource instead of a tree of proto fields, and `PackCache`
/// shares the `Any` as it is.
pub struct Packed<T> {
    name: Arc<str>,
    any: Arc<Any>,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Message + Name> Packed<T> {
    /// `type_url` is `T::type_url()`, given as a constant: that one is formatted per call.
    pub fn new(name: &str, type_url: &str, message: &T) -> Self {
        debug_assert_eq!(type_url, T::type_url());
        Self::from_encoded(name, type_url, message.encode_to_vec())
    }

    /// A resource encoded already (`value`: the encoding of a T).
    pub fn from_encoded(name: &str, type_url: &str, value: Vec<u8>) -> Self {
        Packed {
            name: name.into(),
            any: Arc::new(Any {
                type_url: type_url.to_string(),
                value,
            }),
            _type: std::marker::PhantomData,
        }
    }

    /// (type URL, name, packed), as `fleet_to_any` lists them.
    fn to_tuple(&self) -> (String, String, Any) {
        let any = Any::clone(&self.any);
        (any.type_url.clone(), self.name.to_string(), any)
    }

    fn shared(&self, type_url: &'static str) -> SharedResource {
        SharedResource {
            type_url,
            name: self.name.clone(),
            any: self.any.clone(),
        }
    }
}

impl<T> Packed<T> {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn any(&self) -> &Any {
        &self.any
    }
}

impl<T> PartialEq for Packed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.any == other.any
    }
}

impl<T> Eq for Packed<T> {}

impl<T> std::fmt::Debug for Packed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("type_url", &self.any.type_url)
            .field("name", &self.name)
            .field("bytes", &self.any.value.len())
            .finish()
    }
}

/// Every resource of a fleet as (type URL, name, packed), in a stable order.
pub fn fleet_to_any(fleet: &FleetConfig) -> Vec<(String, String, Any)> {
    let mut out = Vec::new();
    for l in fleet.listeners.iter() {
        out.push((LISTENER.to_string(), l.name.clone(), pack(l.as_ref())));
    }
    for r in fleet.routes.iter() {
        out.push((ROUTE.to_string(), r.name.clone(), r.pack()));
    }
    out.extend(par::map(&fleet.clusters, |p| p.to_tuple()));
    out.extend(par::map(&fleet.endpoints, |p| p.to_tuple()));
    for s in fleet.secrets.iter() {
        out.push((SECRET.to_string(), s.name.clone(), pack(s.as_ref())));
    }
    out
}

/// Encodings kept between calls, per fleet and list: a list that is the same `Arc` as the
/// last call's gets the same packed list back; in a new list, each resource that is the same
/// `Arc` as one of the old list keeps its packed form (found by walking both lists), so only
/// new resources are encoded. Fleets a call does not mention are forgotten.
#[derive(Default)]
pub struct PackCache {
    fleets: HashMap<String, FleetPacks>,
}

#[derive(Default)]
struct FleetPacks {
    listeners: ListPack<Listener>,
    routes: ListPack<RouteConfig>,
    clusters: ListPack<Packed<Cluster>>,
    endpoints: ListPack<Packed<ClusterLoadAssignment>>,
    secrets: ListPack<Secret>,
}

/// One list as last packed: the list (held, so its address and its resources' addresses
/// are not reused while the entry lives) and its packed resources, in order.
struct ListPack<T> {
    list: Shared<T>,
    packed: Arc<Vec<SharedResource>>,
}

impl<T> Default for ListPack<T> {
    fn default() -> Self {
        ListPack {
            list: Arc::default(),
            packed: Arc::default(),
        }
    }
}

impl<T> ListPack<T> {
    fn update(
        &mut self,
        list: &Shared<T>,
        type_url: &'static str,
        name: impl Fn(&T) -> &str,
        pack: impl Fn(&T) -> Any,
    ) -> Arc<Vec<SharedResource>> {
        if !Arc::ptr_eq(&self.list, list) {
            let packed = reuse_by_ptr(&self.list, &self.packed, list, |m| {
                SharedResource::new(type_url, name(m), pack(m))
            });
            self.list = list.clone();
            self.packed = Arc::new(packed);
        }
        self.packed.clone()
    }
}

/// A map keyed by addresses (`Arc::as_ptr`): tens of thousands of lookups per call, where
/// SipHash would cost more than the lookup.
pub(crate) type PtrMap<V> = HashMap<usize, V, BuildHasherDefault<PtrHasher>>;

#[derive(Default)]
pub(crate) struct PtrHasher(u64);

impl Hasher for PtrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_usize(&mut self, n: usize) {
        // Fibonacci hashing: spreads the (aligned, clustered) addresses over the high bits,
        // which the table's control bytes use, and the low bits.
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// How far `reuse_by_ptr` looks ahead in the old list: a patched list differs from the old
/// one by a removal and an insertion per changed element.
const LOOKAHEAD: usize = 4;

/// Elements `reuse_by_ptr` may miss before it indexes the old list: past this, the list was
/// rebuilt or reordered rather than patched.
const MISSES: usize = 32;

/// What `new`'s elements map to, given what the old list's mapped to (`old_out`, in order):
/// an element that is the same `Arc` as an old one takes that one's result; `make` gives the
/// others. Walks both lists in step (a few pointer comparisons per element) and indexes the
/// old list only once many elements were missed.
pub(crate) fn reuse_by_ptr<T, U: Clone>(
    old: &[Arc<T>],
    old_out: &[U],
    new: &[Arc<T>],
    mut make: impl FnMut(&T) -> U,
) -> Vec<U> {
    debug_assert_eq!(old.len(), old_out.len());
    let mut index: Option<PtrMap<usize>> = None;
    let (mut j, mut misses) = (0, 0);
    new.iter()
        .map(|r| {
            let ahead = old[j.min(old.len())..]
                .iter()
                .take(LOOKAHEAD)
                .position(|o| Arc::ptr_eq(o, r));
            let found = match ahead {
                Some(k) => Some(j + k),
                None if index.is_none() && misses < MISSES => {
                    misses += 1;
                    None
                }
                None => index
                    .get_or_insert_with(|| {
                        old.iter()
                            .enumerate()
                            .map(|(i, o)| (Arc::as_ptr(o) as usize, i))
                            .collect()
                    })
                    .get(&(Arc::as_ptr(r) as usize))
                    .copied(),
            };
            match found {
                Some(i) => {
                    j = i + 1;
                    old_out[i].clone()
                }
                None => make(r),
            }
        })
        .collect()
}

/// One packed resource, shared: a clone copies two pointers. `PackCache` hands out the same
/// `Arc`s again for a resource it saw in the previous call, so an unchanged resource costs a
/// pointer copy, and consumers can tell it is unchanged with `Arc::ptr_eq`.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedResource {
    pub type_url: &'static str,
    pub name: Arc<str>,
    pub any: Arc<Any>,
}

impl SharedResource {
    fn new(type_url: &'static str, name: &str, any: Any) -> Self {
        SharedResource {
            type_url,
            name: name.into(),
            any: Arc::new(any),
        }
    }
}

/// One fleet's packed resources in `fleet_to_any` order, as shared lists (listeners, routes,
/// clusters, endpoints, secrets): a list the fleet did not change is the last call's `Arc`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SharedFleet {
    pub lists: [Arc<Vec<SharedResource>>; 5],
}

type ListIter<'a> = std::slice::Iter<'a, SharedResource>;

impl SharedFleet {
    /// The type URL of each list, in order.
    pub const TYPES: [&'static str; 5] = [LISTENER, ROUTE, CLUSTER, ENDPOINT, SECRET];

    pub fn iter(&self) -> impl Iterator<Item = &SharedResource> {
        self.into_iter()
    }

    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> IntoIterator for &'a SharedFleet {
    type Item = &'a SharedResource;
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<Vec<SharedResource>>>,
        ListIter<'a>,
        fn(&'a Arc<Vec<SharedResource>>) -> ListIter<'a>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        fn items(list: &Arc<Vec<SharedResource>>) -> ListIter<'_> {
            list.iter()
        }
        let items: fn(&'a Arc<Vec<SharedResource>>) -> ListIter<'a> = items;
        self.lists.iter().flat_map(items)
    }
}

impl PackCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// `fleet_to_any` for every fleet of one translation (same resources, same order), as
    /// shared lists, reusing the encodings of resources the previous call saw.
    pub fn fleets_to_shared<'a>(
        &mut self,
        fleets: impl IntoIterator<Item = (&'a String, &'a FleetConfig)>,
    ) -> Vec<(String, SharedFleet)> {
        let out: Vec<(String, SharedFleet)> = fleets
            .into_iter()
            .map(|(name, fleet)| {
                let packs = self.fleets.entry(name.clone()).or_default();
                (name.clone(), packs.update(fleet))
            })
            .collect();
        if self.fleets.len() != out.len() {
            let names: std::collections::HashSet<&String> = out.iter().map(|(n, _)| n).collect();
            self.fleets.retain(|n, _| names.contains(n));
        }
        out
    }
}

impl FleetPacks {
    fn update(&mut self, fleet: &FleetConfig) -> SharedFleet {
        SharedFleet {
            lists: [
                self.listeners
                    .update(&fleet.listeners, LISTENER, |l| &l.name, pack),
                self.routes
                    .update(&fleet.routes, ROUTE, |r| &r.name, RouteConfig::pack),
                self.clusters.update_packed(&fleet.clusters, CLUSTER),
                self.endpoints.update_packed(&fleet.endpoints, ENDPOINT),
                self.secrets
                    .update(&fleet.secrets, SECRET, |s| &s.name, pack),
            ],
        }
    }
}

impl<T: Message + Name> ListPack<Packed<T>> {
    /// `update` for a list packed already: the packed resources are shared as they are.
    fn update_packed(
        &mut self,
        list: &Shared<Packed<T>>,
        type_url: &'static str,
    ) -> Arc<Vec<SharedResource>> {
        if !Arc::ptr_eq(&self.list, list) {
            self.list = list.clone();
            self.packed = Arc::new(list.iter().map(|p| p.shared(type_url)).collect());
        }
        self.packed.clone()
    }
}

fn render_all<T: Message + Name>(items: &[std::sync::Arc<T>]) -> Value {
    render_packed(items.iter().map(|m| pack(m.as_ref())))
}

fn render_packed(items: impl Iterator<Item = Any>) -> Value {
    Value::Array(
        items
            .map(|any| {
                resource_json(&any)
                    .unwrap_or_else(|e| Value::String(format!("<unrenderable: {e}>")))
            })
            .collect(),
    )
}

impl FleetConfig {
    /// `{"listeners":[...],"routes":[...],"clusters":[...],"endpoints":[...],"secrets":[...]}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "listeners": render_all(&self.listeners),
            "routes": render_packed(self.routes.iter().map(|r| r.pack())),
            "clusters": render_packed(self.clusters.iter().map(|p| Any::clone(&p.any))),
            "endpoints": render_packed(self.endpoints.iter().map(|p| Any::clone(&p.any))),
            "secrets": render_all(&self.secrets),
        })
    }

    /// Like `to_json`, with private keys and generic secrets replaced by "[redacted]".
    pub fn to_json_redacted(&self) -> Value {
        let mut value = self.to_json();
        if let Some(Value::Array(secrets)) = value.get_mut("secrets") {
            for secret in secrets {
                redact(secret, false);
            }
        }
        value
    }
}

/// Replaces inline data below a `private_key` or a `generic_secret`.
fn redact(value: &mut Value, inside_key: bool) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let sensitive =
                    inside_key || k == "private_key" || k == "generic_secret" || k == "password";
                if sensitive && (k == "inline_bytes" || k == "inline_string") {
                    *v = Value::String("[redacted]".into());
                } else {
                    redact(v, sensitive);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, inside_key)),
        _ => {}
    }
}
