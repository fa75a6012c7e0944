//! Envoy's own JSON mapping of the generated protos (like Envoy's config_dump), and the
//! `Any` packing the xDS server needs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, LazyLock};

use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::FleetConfig;

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

/// Every resource of a fleet as (type URL, name, packed), in a stable order.
pub fn fleet_to_any(fleet: &FleetConfig) -> Vec<(String, String, Any)> {
    let mut out = Vec::new();
    for l in &fleet.listeners {
        out.push((LISTENER.to_string(), l.name.clone(), pack(l.as_ref())));
    }
    for r in &fleet.routes {
        out.push((ROUTE.to_string(), r.name.clone(), r.pack()));
    }
    for c in &fleet.clusters {
        out.push((CLUSTER.to_string(), c.name.clone(), pack(c.as_ref())));
    }
    for e in &fleet.endpoints {
        out.push((
            ENDPOINT.to_string(),
            e.cluster_name.clone(),
            pack(e.as_ref()),
        ));
    }
    for s in &fleet.secrets {
        out.push((SECRET.to_string(), s.name.clone(), pack(s.as_ref())));
    }
    out
}

/// Encodings kept between calls, by resource: `Translator` hands out the same `Arc` for an
/// unchanged resource, so its encoding is copied rather than redone. Each entry holds its
/// resource, so an address is never reused while its entry lives.
#[derive(Default)]
pub struct PackCache {
    /// By address, with the call that last used the entry.
    packed: PtrMap<(u64, Packed)>,
    stamp: u64,
    /// The last call's output with each resource's address (the entries above keep those
    /// resources alive): handed out again when every address is the same.
    last: Vec<(String, Vec<usize>, Vec<SharedResource>)>,
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

/// A cached encoding: the resource it encodes (kept alive so that its address is not
/// reused), and the shared packed form.
type Packed = (Arc<dyn std::any::Any + Send + Sync>, SharedResource);

/// One packed resource, shared: a clone copies three pointers. `PackCache` hands out the same
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

impl PackCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// `fleet_to_any` for every fleet of one translation (same resources, same order), as
    /// shared values, reusing the encodings of resources the previous call saw; encodings of
    /// resources no longer used are forgotten.
    pub fn fleets_to_shared<'a>(
        &mut self,
        fleets: impl IntoIterator<Item = (&'a String, &'a FleetConfig)>,
    ) -> Vec<(String, Vec<SharedResource>)> {
        let fleets: Vec<_> = fleets.into_iter().collect();
        let same = fleets.len() == self.last.len()
            && fleets
                .iter()
                .zip(&self.last)
                .all(|((name, fleet), (n, addrs, _))| {
                    *name == n && addresses(fleet).eq(addrs.iter().copied())
                });
        if same {
            // Nothing to stamp or forget: every entry the last call used is used again.
            return self
                .last
                .iter()
                .map(|(name, _, list)| (name.clone(), list.clone()))
                .collect();
        }
        let out: Vec<(String, Vec<SharedResource>)> = fleets
            .iter()
            .map(|(name, fleet)| ((*name).clone(), self.fleet_to_shared(fleet)))
            .collect();
        self.last = fleets
            .iter()
            .zip(&out)
            .map(|((name, fleet), (_, list))| {
                ((*name).clone(), addresses(fleet).collect(), list.clone())
            })
            .collect();
        let stamp = self.stamp;
        self.packed.retain(|_, e| e.0 == stamp);
        self.stamp += 1;
        out
    }

    fn fleet_to_shared(&mut self, fleet: &FleetConfig) -> Vec<SharedResource> {
        let mut out = Vec::with_capacity(
            fleet.listeners.len()
                + fleet.routes.len()
                + fleet.clusters.len()
                + fleet.endpoints.len()
                + fleet.secrets.len(),
        );
        for l in &fleet.listeners {
            out.push(self.pack_with(l, LISTENER, |l| &l.name, pack));
        }
        for r in &fleet.routes {
            out.push(self.pack_with(r, ROUTE, |r| &r.name, |r| r.pack()));
        }
        for c in &fleet.clusters {
            out.push(self.pack_with(c, CLUSTER, |c| &c.name, pack));
        }
        for e in &fleet.endpoints {
            out.push(self.pack_with(e, ENDPOINT, |e| &e.cluster_name, pack));
        }
        for s in &fleet.secrets {
            out.push(self.pack_with(s, SECRET, |s| &s.name, pack));
        }
        out
    }

    fn pack_with<T: Send + Sync + 'static>(
        &mut self,
        m: &Arc<T>,
        type_url: &'static str,
        name: impl Fn(&T) -> &String,
        pack: impl Fn(&T) -> Any,
    ) -> SharedResource {
        let key = Arc::as_ptr(m) as *const () as usize;
        let stamp = self.stamp;
        let entry = self.packed.entry(key).or_insert_with(|| {
            let packed = SharedResource::new(type_url, name(m), pack(m.as_ref()));
            (
                stamp,
                (m.clone() as Arc<dyn std::any::Any + Send + Sync>, packed),
            )
        });
        entry.0 = stamp;
        entry.1.1.clone()
    }
}

/// Addresses of a fleet's resources, in `fleet_to_any` order.
fn addresses(fleet: &FleetConfig) -> impl Iterator<Item = usize> + '_ {
    fn addr<T>(m: &Arc<T>) -> usize {
        Arc::as_ptr(m) as *const () as usize
    }
    (fleet.listeners.iter().map(addr))
        .chain(fleet.routes.iter().map(addr))
        .chain(fleet.clusters.iter().map(addr))
        .chain(fleet.endpoints.iter().map(addr))
        .chain(fleet.secrets.iter().map(addr))
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
            "clusters": render_all(&self.clusters),
            "endpoints": render_all(&self.endpoints),
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
