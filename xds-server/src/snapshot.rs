//! One fleet's complete configuration: resources by type URL and name, each with a content hash.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use prost::Message;

use crate::Any;

/// One named resource of a snapshot. Cloning is cheap: the body is shared.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// The resource name (Listener name, Cluster name, ...).
    pub name: String,
    /// xxh3 of the encoded `Any`, in hex: equal content gives equal versions everywhere.
    pub version: String,
    /// The encoded resource, shared by every stream that sends it.
    pub body: Arc<Any>,
    /// Resources of the child type this one needs (a cluster's EDS name, a listener's route
    /// configs), decoded once here rather than per stream.
    pub(crate) children: Arc<[String]>,
}

impl Resource {
    pub(crate) fn new(type_url: &str, name: String, body: Any) -> Self {
        let version = hex(xxhash_rust::xxh3::xxh3_64(&body.encode_to_vec()));
        Resource {
            children: crate::refs::children(type_url, &body).into(),
            name,
            version,
            body: Arc::new(body),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct TypeSet {
    pub(crate) resources: BTreeMap<String, Resource>,
    /// Computed on first use, reset by every insert.
    version: OnceLock<String>,
}

impl TypeSet {
    pub(crate) fn version(&self) -> &str {
        self.version
            .get_or_init(|| version_of(self.resources.values().map(|r| (&*r.name, &*r.version))))
    }
}

/// One fleet's complete config. Cheap to clone (Arc inside).
#[derive(Clone, Default, Debug)]
pub struct Snapshot {
    types: Arc<BTreeMap<String, TypeSet>>,
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a resource. Its version is the xxh3 of the encoded `Any`, so identical
    /// input gives identical versions across restarts and replicas. Encoded once here; every
    /// stream shares the same body.
    pub fn insert(&mut self, type_url: &str, name: impl Into<String>, resource: Any) {
        let resource = Resource::new(type_url, name.into(), resource);
        let set = Arc::make_mut(&mut self.types)
            .entry(type_url.to_string())
            .or_default();
        set.version = OnceLock::new();
        set.resources.insert(resource.name.clone(), resource);
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.types.get(type_url)?.resources.get(name)
    }

    /// Resource names of one type, sorted.
    pub fn names(&self, type_url: &str) -> Vec<&str> {
        self.types
            .get(type_url)
            .map(|t| t.resources.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Hash over the (name, version) pairs of one type; stable for equal content.
    pub fn version(&self, type_url: &str) -> String {
        match self.types.get(type_url) {
            Some(set) => set.version().to_string(),
            None => version_of(std::iter::empty()),
        }
    }

    /// Type URLs that hold at least one resource, sorted.
    pub fn type_urls(&self) -> Vec<&str> {
        self.types
            .iter()
            .filter(|(_, set)| !set.resources.is_empty())
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// All resources of one type, sorted by name.
    pub fn resources(&self, type_url: &str) -> impl Iterator<Item = &Resource> {
        self.types
            .get(type_url)
            .into_iter()
            .flat_map(|t| t.resources.values())
    }

    /// Same resources (names and versions) of every type.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        if Arc::ptr_eq(&self.types, &other.types) {
            return true;
        }
        let a = self.type_urls();
        a == other.type_urls() && a.iter().all(|t| self.version(t) == other.version(t))
    }
}

pub(crate) fn version_of<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    for (name, version) in pairs {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        hasher.update(&(name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update(&(version.len() as u64).to_le_bytes());
        hasher.update(version.as_bytes());
    }
    hex(hasher.digest())
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::{CLUSTER, LISTENER};

    fn any(type_url: &str, value: &[u8]) -> Any {
        Any {
            type_url: type_url.to_string(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn versions_are_content_hashes() {
        let mut a = Snapshot::new();
        a.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        a.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        let mut b = Snapshot::new();
        b.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        b.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        assert_eq!(a.version(CLUSTER), b.version(CLUSTER));
        assert_eq!(a.get(CLUSTER, "a"), b.get(CLUSTER, "a"));
        assert!(a.same_content(&b));
        assert_eq!(a.names(CLUSTER), vec!["a", "b"]);
        b.insert(CLUSTER, "b", any(CLUSTER, b"3"));
        assert_ne!(a.version(CLUSTER), b.version(CLUSTER));
        assert!(!a.same_content(&b));
        assert_eq!(a.version(LISTENER), Snapshot::new().version(LISTENER));
    }

    #[test]
    fn clones_share_bodies_and_stay_independent() {
        let mut a = Snapshot::new();
        a.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        let b = a.clone();
        a.insert(CLUSTER, "c", any(CLUSTER, b"3"));
        assert_eq!(b.names(CLUSTER), vec!["a"]);
        assert!(Arc::ptr_eq(
            &a.get(CLUSTER, "a").unwrap().body,
            &b.get(CLUSTER, "a").unwrap().body
        ));
    }
}
