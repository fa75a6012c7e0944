//! What the client holds of one type, as far as its stream knows.
//!
//! Stored as a resource map of a snapshot (shared by `Arc` with the snapshot and with every
//! other stream that was brought up to it) plus the names whose state differs from it: an idle
//! synced stream costs a pointer per type, not a name -> version entry per resource.

use std::cmp::Ordering;
use std::collections::{BTreeMap, btree_map};
use std::iter::Peekable;
use std::sync::Arc;

use crate::Any;
use crate::snapshot::{Resource, ResourceMap};

/// What the client holds of one resource.
#[derive(Clone, Debug)]
pub(crate) enum Held {
    /// Delta: the client was told the resource does not exist.
    Absent,
    /// The client has this version. The body is unknown for versions the client announced
    /// itself (delta `initial_resource_versions`).
    Has {
        version: String,
        body: Option<Arc<Any>>,
    },
}

impl Held {
    fn as_ref(&self) -> HeldRef<'_> {
        match self {
            Held::Absent => HeldRef::Absent,
            Held::Has { version, body } => HeldRef::Has {
                version,
                body: body.as_ref(),
            },
        }
    }
}

/// A borrowed [`Held`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum HeldRef<'a> {
    Absent,
    Has {
        version: &'a str,
        body: Option<&'a Arc<Any>>,
    },
}

impl<'a> HeldRef<'a> {
    fn of(r: &'a Resource) -> Self {
        HeldRef::Has {
            version: &r.version,
            body: Some(&r.body),
        }
    }

    /// The client holds this version of `r`.
    pub(crate) fn is(self, r: &Resource) -> bool {
        matches!(self, HeldRef::Has { version, .. } if version == r.version)
    }

    fn to_owned(self) -> Held {
        match self {
            HeldRef::Absent => Held::Absent,
            HeldRef::Has { version, body } => Held::Has {
                version: version.to_string(),
                body: body.cloned(),
            },
        }
    }
}

static EMPTY: ResourceMap = BTreeMap::new();

/// Name -> [`Held`], sorted by name.
#[derive(Debug, Default)]
pub(crate) struct HeldMap {
    /// Every name of this map is held, in the map's version, unless `over` says otherwise.
    base: Option<Arc<ResourceMap>>,
    /// Names whose state differs from `base`; `None`: not held although `base` has it.
    over: BTreeMap<String, Option<Held>>,
    len: usize,
}

impl HeldMap {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, name: &str) -> Option<HeldRef<'_>> {
        match self.over.get(name) {
            Some(over) => over.as_ref().map(Held::as_ref),
            None => self.base.as_ref()?.get(name).map(HeldRef::of),
        }
    }

    /// Holds exactly `map` (no exceptions): then the client has every resource of it, in
    /// its version, and nothing else.
    pub(crate) fn is_exactly(&self, map: &Arc<ResourceMap>) -> bool {
        self.over.is_empty() && self.base.as_ref().is_some_and(|b| Arc::ptr_eq(b, map))
    }

    pub(crate) fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn base_get(&self, name: &str) -> Option<&Resource> {
        self.base.as_ref()?.get(name)
    }

    pub(crate) fn insert(&mut self, name: String, held: Held) {
        if !self.contains_key(&name) {
            self.len += 1;
        }
        // Equal versions are equal content, so the base's body serves as well.
        if self.base_get(&name).is_some_and(|r| held.as_ref().is(r)) {
            self.over.remove(&name);
        } else {
            self.over.insert(name, Some(held));
        }
    }

    /// Records that the client now has `r` (allocates only if `base` has another version).
    pub(crate) fn insert_resource(&mut self, r: &Resource) {
        if self
            .base_get(&r.name)
            .is_some_and(|b| b.version == r.version)
        {
            if !self.contains_key(&r.name) {
                self.len += 1;
            }
            self.over.remove(&r.name);
        } else {
            self.insert(
                r.name.clone(),
                Held::Has {
                    version: r.version.clone(),
                    body: Some(r.body.clone()),
                },
            );
        }
    }

    pub(crate) fn remove(&mut self, name: &str) {
        if !self.contains_key(name) {
            return;
        }
        self.len -= 1;
        if self.base_get(name).is_some() {
            self.over.insert(name.to_string(), None);
        } else {
            self.over.remove(name);
        }
    }

    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str, HeldRef<'_>) -> bool) {
        let gone: Vec<String> = self
            .iter()
            .filter(|(name, held)| !keep(name, *held))
            .map(|(name, _)| name.to_string())
            .collect();
        for name in gone {
            self.remove(&name);
        }
    }

    /// Entries sorted by name.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            base: self.base.as_deref().unwrap_or(&EMPTY).iter().peekable(),
            over: self.over.iter().peekable(),
        }
    }

    /// Entries whose name `map` does not have. Without going through every entry when the
    /// map is the base (a synced stream after a snapshot that left this type alone).
    pub(crate) fn outside<'a>(
        &'a self,
        map: Option<&'a Arc<ResourceMap>>,
    ) -> Vec<(&'a str, HeldRef<'a>)> {
        let missing = |name: &str| !map.is_some_and(|m| m.contains_key(name));
        if let (Some(base), Some(m)) = (&self.base, map)
            && Arc::ptr_eq(base, m)
        {
            return self
                .over
                .iter()
                .filter_map(|(name, h)| Some((name.as_str(), h.as_ref()?.as_ref())))
                .filter(|(name, _)| missing(name))
                .collect();
        }
        self.iter().filter(|(name, _)| missing(name)).collect()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(name, _)| name)
    }

    /// Makes the map hold exactly `resources` (sorted by name, no duplicates), expressed
    /// against `map` (the snapshot's resources of this type) where that is smaller.
    pub(crate) fn assign(&mut self, resources: &[&Resource], map: Option<&Arc<ResourceMap>>) {
        let exact = map.filter(|m| {
            m.len() == resources.len()
                && resources
                    .iter()
                    .zip(m.values())
                    .all(|(r, m)| r.name == m.name && r.version == m.version)
        });
        if let Some(map) = exact {
            *self = HeldMap {
                base: Some(map.clone()),
                over: BTreeMap::new(),
                len: map.len(),
            };
            return;
        }
        *self = HeldMap::default();
        for r in resources {
            self.insert_resource(r);
        }
        self.rebase(map);
    }

    /// Re-expresses the same content against `map` where that needs no more exceptions than
    /// there are entries; keeps streams from holding on to the maps of old snapshots.
    pub(crate) fn rebase(&mut self, map: Option<&Arc<ResourceMap>>) {
        let Some(map) = map else {
            self.materialize();
            return;
        };
        if self.base.as_ref().is_some_and(|b| Arc::ptr_eq(b, map)) {
            return;
        }
        // A small subscription of a large type: comparing costs more than it can save.
        if self.len * 4 < map.len() {
            self.materialize();
            return;
        }
        let mut over = BTreeMap::new();
        let mut held = self.iter().peekable();
        let mut snap = map.iter().peekable();
        loop {
            let order = match (held.peek(), snap.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((h, _)), Some((s, _))) => (*h).cmp(s.as_str()),
            };
            match order {
                Ordering::Less => {
                    if let Some((name, h)) = held.next() {
                        over.insert(name.to_string(), Some(h.to_owned()));
                    }
                }
                Ordering::Greater => {
                    if let Some((name, _)) = snap.next() {
                        over.insert(name.clone(), None);
                    }
                }
                Ordering::Equal => {
                    if let (Some((name, h)), Some((_, r))) = (held.next(), snap.next())
                        && !h.is(r)
                    {
                        over.insert(name.to_string(), Some(h.to_owned()));
                    }
                }
            }
            if over.len() > self.len {
                drop(held);
                self.materialize();
                return;
            }
        }
        drop(held);
        self.base = Some(map.clone());
        self.over = over;
    }

    /// The same content without a base.
    fn materialize(&mut self) {
        if self.base.is_none() {
            return;
        }
        let all = self
            .iter()
            .map(|(name, h)| (name.to_string(), Some(h.to_owned())))
            .collect();
        self.over = all;
        self.base = None;
    }
}

/// Iterator over a [`HeldMap`]: the base merged with the exceptions.
pub(crate) struct Iter<'a> {
    base: Peekable<btree_map::Iter<'a, String, Resource>>,
    over: Peekable<btree_map::Iter<'a, String, Option<Held>>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, HeldRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let order = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((b, _)), Some((o, _))) => b.cmp(o),
            };
            if order == Ordering::Less {
                let (name, r) = self.base.next()?;
                return Some((name, HeldRef::of(r)));
            }
            if order == Ordering::Equal {
                self.base.next();
            }
            if let (name, Some(held)) = self.over.next()? {
                return Some((name, held.as_ref()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::type_url::CLUSTER;

    fn res(name: &str, version: &str) -> Resource {
        let mut s = crate::Snapshot::new();
        s.insert(
            CLUSTER,
            name,
            Any {
                type_url: CLUSTER.into(),
                value: version.as_bytes().to_vec(),
            },
        );
        s.get(CLUSTER, name).cloned().expect("inserted")
    }

    fn map(rs: &[&Resource]) -> Arc<ResourceMap> {
        Arc::new(rs.iter().map(|r| (r.name.clone(), (*r).clone())).collect())
    }

    fn dump(h: &HeldMap) -> Vec<(String, Option<String>)> {
        h.iter()
            .map(|(n, h)| match h {
                HeldRef::Absent => (n.to_string(), None),
                HeldRef::Has { version, .. } => (n.to_string(), Some(version.to_string())),
            })
            .collect()
    }

    #[test]
    fn exact_assignment_is_only_the_shared_map() {
        let (a, b) = (res("a", "1"), res("b", "2"));
        let m = map(&[&a, &b]);
        let mut h = HeldMap::default();
        h.assign(&[&a, &b], Some(&m));
        assert!(h.over.is_empty() && h.len() == 2);
        assert!(h.get("a").unwrap().is(&a) && h.get("c").is_none());
        h.remove("a");
        assert_eq!(h.len(), 1);
        assert_eq!(dump(&h), vec![("b".to_string(), Some(b.version.clone()))]);
        h.insert_resource(&a);
        assert!(h.over.is_empty() && h.len() == 2);
    }

    #[test]
    fn exceptions_merge_in_order_and_rebase_to_a_newer_map() {
        let (a, b, b2, c) = (res("a", "1"), res("b", "2"), res("b", "3"), res("c", "4"));
        let old = map(&[&a, &b]);
        let mut h = HeldMap::default();
        h.assign(&[&a, &b], Some(&old));
        h.insert_resource(&b2);
        h.insert("d".into(), Held::Absent);
        h.insert_resource(&c);
        assert_eq!(h.len(), 4);
        let expect = vec![
            ("a".to_string(), Some(a.version.clone())),
            ("b".to_string(), Some(b2.version.clone())),
            ("c".to_string(), Some(c.version.clone())),
            ("d".to_string(), None),
        ];
        assert_eq!(dump(&h), expect);
        let new = map(&[&a, &b2, &c]);
        h.rebase(Some(&new));
        assert!(Arc::ptr_eq(h.base.as_ref().unwrap(), &new));
        assert_eq!(h.over.len(), 1);
        assert_eq!(dump(&h), expect);
        assert_eq!(h.outside(Some(&new)).len(), 1);
        assert_eq!(h.outside(Some(&old)).len(), 2);
        assert_eq!(h.outside(None).len(), 4);
        h.retain(|n, _| n != "b");
        assert_eq!(h.len(), 3);
        assert!(h.get("b").is_none());
        let mut fresh = HeldMap::default();
        fresh.assign(&[&a, &c], None);
        assert_eq!(dump(&fresh), vec![expect[0].clone(), expect[2].clone()]);
        assert_eq!(fresh.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    }
}
