//! One fleet's complete configuration: resources by type URL and name, each with a content hash.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

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
        Self::shared(type_url, name, Arc::new(body))
    }

    fn shared(type_url: &str, name: String, body: Arc<Any>) -> Self {
        Resource {
            children: crate::refs::children(type_url, &body).into(),
            version: hex(any_hash(&body)),
            name,
            body,
        }
    }
}

/// One type's resources by name. Shared (`Arc`) between snapshots that did not change the
/// type, and with the streams that hold exactly this set (`held.rs`).
pub(crate) type ResourceMap = BTreeMap<String, Resource>;

#[derive(Clone, Debug, Default)]
pub(crate) struct TypeSet {
    pub(crate) resources: Arc<ResourceMap>,
    /// Computed on first use, reset by every insert.
    version: OnceLock<String>,
}

impl TypeSet {
    pub(crate) fn version(&self) -> &str {
        self.version
            .get_or_init(|| version_of(self.resources.values().map(|r| (&*r.name, &*r.version))))
    }
}

type Types = BTreeMap<String, TypeSet>;

/// One fleet's complete config. Cheap to clone (Arc inside).
#[derive(Default, Debug)]
pub struct Snapshot {
    types: Arc<Types>,
    /// Set by [`Snapshot::reusing`]: resources to reuse when an insert brings identical bytes.
    /// Only the previous snapshot's own types, so snapshots never chain up in memory.
    previous: Option<Arc<Types>>,
}

impl Clone for Snapshot {
    /// Clones share everything but the reuse source (a clone is a finished snapshot).
    fn clone(&self) -> Self {
        Snapshot {
            types: self.types.clone(),
            previous: None,
        }
    }
}

impl Snapshot {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty snapshot that takes over `previous`'s resource of the same type and name
    /// whenever an insert brings the same bytes: no hashing, no reference decoding, and the
    /// body stays the one already shared with the streams. Build the next snapshot of a fleet
    /// with this (say from `cache.snapshot(fleet)`); the result is the same as with
    /// [`Snapshot::new`]. The reference to `previous` is dropped once the snapshot is published
    /// or cloned.
    pub fn reusing(previous: &Snapshot) -> Self {
        Snapshot {
            types: Arc::default(),
            previous: Some(previous.types.clone()),
        }
    }

    /// Adds (or replaces) a resource. Its version is the xxh3 of the encoded `Any`, so identical
    /// input gives identical versions across restarts and replicas. Encoded once here; every
    /// stream shares the same body.
    pub fn insert(&mut self, type_url: &str, name: impl Into<String>, resource: Any) {
        let name = name.into();
        let reused = self
            .previous
            .as_ref()
            .and_then(|p| p.get(type_url)?.resources.get(&name))
            .filter(|old| *old.body == resource);
        let resource = match reused {
            Some(old) => old.clone(),
            None => Resource::new(type_url, name, resource),
        };
        self.put(type_url, resource);
    }

    /// [`Snapshot::insert`] for a body the caller already shares: when it is the very `Arc`
    /// the previous snapshot holds (a producer that hands out unchanged resources again), reuse
    /// costs a pointer comparison instead of a byte comparison.
    pub fn insert_shared(&mut self, type_url: &str, name: &str, resource: Arc<Any>) {
        let reused = self
            .previous
            .as_ref()
            .and_then(|p| p.get(type_url)?.resources.get(name))
            .filter(|old| Arc::ptr_eq(&old.body, &resource) || *old.body == *resource);
        let resource = match reused {
            Some(old) => old.clone(),
            None => Resource::shared(type_url, name.to_string(), resource),
        };
        self.put(type_url, resource);
    }

    /// Takes `other`'s resources of one type as they are (the same shared map and version),
    /// replacing any of that type inserted before: for a producer that knows they are what it
    /// would insert again. False (nothing taken) when `other` has no resource of the type.
    pub fn keep_type(&mut self, other: &Snapshot, type_url: &str) -> bool {
        let Some(set) = other.types.get(type_url) else {
            return false;
        };
        Arc::make_mut(&mut self.types).insert(type_url.to_string(), set.clone());
        true
    }

    fn put(&mut self, type_url: &str, resource: Resource) {
        let types = Arc::make_mut(&mut self.types);
        if !types.contains_key(type_url) {
            types.insert(type_url.to_string(), TypeSet::default());
        }
        let Some(set) = types.get_mut(type_url) else {
            return;
        };
        set.version = OnceLock::new();
        Arc::make_mut(&mut set.resources).insert(resource.name.clone(), resource);
    }

    /// Drops the reuse source of [`Snapshot::reusing`] (done on publication).
    pub(crate) fn seal(&mut self) {
        self.previous = None;
    }

    /// Takes over `previous`'s resource map for every type whose content did not change, so
    /// that streams (which keep the map they were brought up to, see `held.rs`) see the very
    /// same map and the old one can be freed.
    pub(crate) fn share_unchanged(&mut self, previous: &Snapshot) {
        if Arc::ptr_eq(&self.types, &previous.types) {
            return;
        }
        let same: Vec<String> = self
            .types
            .iter()
            .filter(|(t, set)| {
                previous.types.get(*t).is_some_and(|old| {
                    !Arc::ptr_eq(&old.resources, &set.resources) && old.version() == set.version()
                })
            })
            .map(|(t, _)| t.clone())
            .collect();
        if same.is_empty() {
            return;
        }
        let types = Arc::make_mut(&mut self.types);
        for t in same {
            if let (Some(set), Some(old)) = (types.get_mut(&t), previous.types.get(&t)) {
                *set = old.clone();
            }
        }
    }

    pub fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.types.get(type_url)?.resources.get(name)
    }

    /// One type's resources, shared. Empty for an unknown type.
    pub(crate) fn type_map(&self, type_url: &str) -> Option<&Arc<ResourceMap>> {
        self.types.get(type_url).map(|t| &t.resources)
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

    /// Type URLs whose content differs between the two snapshots (an absent type is an empty
    /// one), sorted. One pass over both type maps, no lookups: every stream of a fleet does
    /// this on every change.
    pub(crate) fn changed_types(&self, other: &Snapshot) -> Vec<String> {
        let mut changed = Vec::new();
        if Arc::ptr_eq(&self.types, &other.types) {
            return changed;
        }
        let mut a = self.types.iter().peekable();
        let mut b = other.types.iter().peekable();
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some((ta, _)), Some((tb, _))) => ta.cmp(tb),
            };
            let (t, differs) = match order {
                std::cmp::Ordering::Less => match a.next() {
                    Some((t, set)) => (t, !set.resources.is_empty()),
                    None => break,
                },
                std::cmp::Ordering::Greater => match b.next() {
                    Some((t, set)) => (t, !set.resources.is_empty()),
                    None => break,
                },
                std::cmp::Ordering::Equal => match (a.next(), b.next()) {
                    (Some((t, x)), Some((_, y))) => (
                        t,
                        !Arc::ptr_eq(&x.resources, &y.resources) && x.version() != y.version(),
                    ),
                    _ => break,
                },
            };
            if differs {
                changed.push(t.clone());
            }
        }
        changed
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

/// xxh3 of the `Any` as protobuf encodes it (type_url = 1, value = 2, empty fields omitted).
/// Written into a reused per-thread buffer rather than a fresh `encode_to_vec`: one copy, no
/// allocation, and the one-shot hash (much faster than the streaming one on small inputs).
fn any_hash(any: &Any) -> u64 {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|scratch| {
        let Ok(mut buf) = scratch.try_borrow_mut() else {
            return xxhash_rust::xxh3::xxh3_64(&prost::Message::encode_to_vec(any));
        };
        buf.clear();
        for (key, bytes) in [
            (0x0a_u8, any.type_url.as_bytes()),
            (0x12, any.value.as_slice()),
        ] {
            if bytes.is_empty() {
                continue;
            }
            buf.push(key);
            let mut len = bytes.len() as u64;
            while len >= 0x80 {
                buf.push((len as u8) | 0x80);
                len >>= 7;
            }
            buf.push(len as u8);
            buf.extend_from_slice(bytes);
        }
        let hash = xxhash_rust::xxh3::xxh3_64(&buf);
        // Do not keep a huge buffer around after one huge resource.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        hash
    })
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::{CLUSTER, LISTENER, ROUTE};

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
    fn hash_is_of_the_encoded_any() {
        use prost::Message;
        for (t, v) in [
            ("", 0),
            (CLUSTER, 0),
            ("", 5),
            (CLUSTER, 300),
            (CLUSTER, 70_000),
        ] {
            let a = Any {
                type_url: t.to_string(),
                value: vec![7; v],
            };
            assert_eq!(any_hash(&a), xxhash_rust::xxh3::xxh3_64(&a.encode_to_vec()));
        }
    }

    #[test]
    fn reusing_keeps_identical_resources_and_drops_the_source_on_clone() {
        let mut a = Snapshot::new();
        a.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        a.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        let mut b = Snapshot::reusing(&a);
        b.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        b.insert(CLUSTER, "b", any(CLUSTER, b"3"));
        b.insert(LISTENER, "l", any(LISTENER, b"4"));
        let same = |s: &Snapshot, n| {
            Arc::ptr_eq(
                &s.get(CLUSTER, n).unwrap().body,
                &a.get(CLUSTER, n).unwrap().body,
            )
        };
        assert!(same(&b, "a"));
        assert!(!same(&b, "b"));
        let mut fresh = Snapshot::new();
        fresh.insert(CLUSTER, "b", any(CLUSTER, b"3"));
        fresh.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        fresh.insert(LISTENER, "l", any(LISTENER, b"4"));
        assert!(fresh.same_content(&b));
        assert_eq!(fresh.get(CLUSTER, "a"), b.get(CLUSTER, "a"));
        assert!(b.previous.is_some() && b.clone().previous.is_none());
        let mut c = fresh.clone();
        c.insert(LISTENER, "l", any(LISTENER, b"5"));
        c.share_unchanged(&a);
        let map = |s: &Snapshot, t| s.type_map(t).unwrap().clone();
        assert!(!Arc::ptr_eq(&map(&c, CLUSTER), &map(&a, CLUSTER)));
        c.share_unchanged(&b);
        assert!(Arc::ptr_eq(&map(&c, CLUSTER), &map(&b, CLUSTER)));
        assert!(!Arc::ptr_eq(&map(&c, LISTENER), &map(&b, LISTENER)));
    }

    #[test]
    fn keep_type_takes_the_same_map_and_version() {
        let mut a = Snapshot::new();
        a.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        a.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        let mut b = Snapshot::reusing(&a);
        assert!(b.keep_type(&a, CLUSTER));
        assert!(!b.keep_type(&a, "type.googleapis.com/none"));
        let (ta, tb) = (&a.types[CLUSTER], &b.types[CLUSTER]);
        assert!(Arc::ptr_eq(&ta.resources, &tb.resources));
        assert_eq!(ta.version(), tb.version());
        let mut fresh = Snapshot::new();
        fresh.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        fresh.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        assert_eq!(fresh.types[CLUSTER].version(), tb.version());
    }

    #[test]
    fn insert_shared_reuses_by_pointer_or_bytes_and_versions_like_insert() {
        let mut a = Snapshot::new();
        let body = Arc::new(any(CLUSTER, b"1"));
        a.insert_shared(CLUSTER, "a", body.clone());
        a.insert(CLUSTER, "b", any(CLUSTER, b"2"));
        let mut plain = Snapshot::new();
        plain.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        assert_eq!(a.get(CLUSTER, "a"), plain.get(CLUSTER, "a"));
        let mut b = Snapshot::reusing(&a);
        b.insert_shared(CLUSTER, "a", body);
        b.insert_shared(CLUSTER, "b", Arc::new(any(CLUSTER, b"2")));
        for n in ["a", "b"] {
            let old = a.get(CLUSTER, n).unwrap();
            assert!(Arc::ptr_eq(&b.get(CLUSTER, n).unwrap().body, &old.body));
        }
        assert!(a.same_content(&b));
    }

    #[test]
    fn changed_types_are_those_with_other_content() {
        let mut a = Snapshot::new();
        a.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        a.insert(LISTENER, "l", any(LISTENER, b"1"));
        assert!(a.changed_types(&a.clone()).is_empty());
        let mut b = Snapshot::new();
        b.insert(LISTENER, "l", any(LISTENER, b"1"));
        b.insert(CLUSTER, "a", any(CLUSTER, b"1"));
        assert!(a.changed_types(&b).is_empty());
        b.insert(LISTENER, "l", any(LISTENER, b"2"));
        b.insert(ROUTE, "r", any(ROUTE, b"3"));
        assert_eq!(a.changed_types(&b), vec![LISTENER, ROUTE]);
        assert_eq!(b.changed_types(&a), vec![LISTENER, ROUTE]);
        assert_eq!(Snapshot::new().changed_types(&a), vec![CLUSTER, LISTENER]);
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
