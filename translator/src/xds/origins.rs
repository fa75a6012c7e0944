//! `FleetConfig::origins`: which input objects produced each resource of a fleet.
//!
//! A fleet with thousands of clusters has tens of thousands of entries, and building the map
//! is mostly allocation (two key strings and a list of keys per entry). Incremental calls
//! usually produce the same map again, so the entries are first gathered by reference, in
//! map order, and compared with the previous call's map: when equal, that map is shared
//! (`Arc`) instead of rebuilt.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ObjectKey;

/// (type URL, resource name) -> the input objects that produced it.
pub type Origins = BTreeMap<(String, String), Vec<ObjectKey>>;

/// One entry, borrowed from the IR where it can be.
pub struct Entry<'a> {
    pub type_url: &'static str,
    pub name: &'a str,
    pub keys: Cow<'a, [ObjectKey]>,
}

/// Entries gathered in insertion order; a later entry for the same resource replaces an
/// earlier one, as `BTreeMap::insert` would.
#[derive(Default)]
pub struct Builder<'a> {
    entries: Vec<Entry<'a>>,
}

impl<'a> Builder<'a> {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, type_url: &'static str, name: &'a str, keys: Cow<'a, [ObjectKey]>) {
        self.entries.push(Entry {
            type_url,
            name,
            keys,
        });
    }

    /// The map, shared with `previous` when it has exactly these entries.
    pub fn finish(mut self, previous: Option<&Arc<Origins>>) -> Arc<Origins> {
        // Stable: among equal keys the last pushed ends up last, and is the one kept.
        self.entries
            .sort_by(|a, b| (a.type_url, a.name).cmp(&(b.type_url, b.name)));
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(self.entries.len());
        for e in self.entries {
            match entries.last_mut() {
                Some(last) if (last.type_url, last.name) == (e.type_url, e.name) => *last = e,
                _ => entries.push(e),
            }
        }
        if let Some(prev) = previous {
            let same = prev.len() == entries.len()
                && prev.iter().zip(&entries).all(|((k, v), e)| {
                    k.0 == e.type_url && k.1 == e.name && v.as_slice() == e.keys.as_ref()
                });
            if same {
                return prev.clone();
            }
        }
        // Mostly allocation (key strings, key lists): in parallel when many; the sorted
        // result then builds the map in bulk.
        let owned = crate::par::map(&entries, |e| {
            (
                (e.type_url.to_string(), e.name.to_string()),
                e.keys.to_vec(),
            )
        });
        Arc::new(owned.into_iter().collect())
    }
}

/// A port's origins list as the IR shares it.
type PortOrigins = Option<Arc<Vec<ObjectKey>>>;

/// What a fleet's map is made from, held (`Arc`s) so that addresses compared are live ones.
pub struct Inputs {
    pub clusters: Arc<BTreeMap<String, Arc<crate::ir::Cluster>>>,
    /// (type URL, resource name, the port's origins list; None when it was not used as is).
    pub ports: Vec<(&'static str, String, PortOrigins)>,
    pub secrets: Vec<String>,
}

impl Inputs {
    fn same(&self, other: &Inputs) -> bool {
        let list_eq =
            |a: &Option<Arc<Vec<ObjectKey>>>, b: &Option<Arc<Vec<ObjectKey>>>| match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            };
        Arc::ptr_eq(&self.clusters, &other.clusters)
            && self.secrets == other.secrets
            && self.ports.len() == other.ports.len()
            && self
                .ports
                .iter()
                .zip(&other.ports)
                .all(|(a, b)| a.0 == b.0 && a.1 == b.1 && list_eq(&a.2, &b.2))
    }
}

/// The previous call's maps, by fleet, with what they were made from.
#[derive(Default)]
pub struct OriginsMemo {
    prev: HashMap<ObjectKey, (Arc<Origins>, Inputs)>,
    next: HashMap<ObjectKey, (Arc<Origins>, Inputs)>,
}

impl OriginsMemo {
    pub fn previous(&self, gateway: &ObjectKey) -> Option<&Arc<Origins>> {
        self.prev.get(gateway).map(|p| &p.0)
    }

    /// The previous map, when it was made from the same inputs.
    pub fn unchanged(&self, gateway: &ObjectKey, inputs: &Inputs) -> Option<Arc<Origins>> {
        self.prev
            .get(gateway)
            .filter(|p| p.1.same(inputs))
            .map(|p| p.0.clone())
    }

    pub fn keep(&mut self, gateway: &ObjectKey, origins: &Arc<Origins>, inputs: Inputs) {
        self.next.insert(gateway.clone(), (origins.clone(), inputs));
    }

    /// Ends a call: maps of fleets this call did not build are forgotten.
    pub fn end(&mut self) {
        self.prev = std::mem::take(&mut self.next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("HTTPRoute", "ns", name)
    }

    #[test]
    fn later_entries_win_and_equal_maps_are_shared() {
        let (a, b) = ([key("a")], [key("b")]);
        let build = |previous| {
            let mut o = Builder::default();
            o.push("t2", "x", Cow::Borrowed(&a[..]));
            o.push("t1", "y", Cow::Borrowed(&a[..]));
            o.push("t2", "x", Cow::Borrowed(&b[..]));
            o.finish(previous)
        };
        let first = build(None);
        let want: Origins = [
            (("t1".into(), "y".into()), vec![key("a")]),
            (("t2".into(), "x".into()), vec![key("b")]),
        ]
        .into_iter()
        .collect();
        assert_eq!(*first, want);
        assert!(Arc::ptr_eq(&build(Some(&first)), &first));
        let mut other = Builder::default();
        other.push("t1", "y", Cow::Borrowed(&a[..]));
        let other = other.finish(Some(&first));
        assert!(!Arc::ptr_eq(&other, &first));
        assert_eq!(other.len(), 1);
    }
}
