//! The translator's input built from the watches, updated in place: watch events queue the
//! objects that changed, and each load applies the queue to the `Resources` it handed out
//! last time, instead of copying every object again.
//!
//! Objects live here only (the stores keep hashes and, for status, the raw objects), except
//! Secrets: the stores keep every Secret, and only those something refers to are copied in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use portico_translator::{Document, ObjectKey, Resources};

/// Above this many removals, rebuilding beats removing one by one (each scans its kind).
const IN_PLACE_REMOVALS: usize = 64;

#[derive(Default)]
pub struct Input {
    /// Changes not applied yet: the new object, or None when it went away.
    queue: BTreeMap<ObjectKey, Option<Document>>,
    resources: Arc<Resources>,
    /// Secrets in `resources`, with the store's hash of the version copied in.
    secrets: BTreeMap<ObjectKey, u64>,
}

impl Input {
    /// Queues a new version of an object (None: it went away).
    pub fn record(&mut self, key: ObjectKey, doc: Option<Document>) {
        self.queue.insert(key, doc);
    }

    /// Applies the queue and brings the Secrets in line with `wanted` (key, store hash, and
    /// the Secret): those present but no longer wanted or changed go, the others come in.
    /// Drop the previous result before calling, or the input is copied.
    pub fn load<'a>(
        &mut self,
        wanted: impl Iterator<Item = (&'a ObjectKey, u64, &'a Document)>,
    ) -> Arc<Resources> {
        let mut changes = std::mem::take(&mut self.queue);
        let mut keep = BTreeSet::new();
        for (key, hash, doc) in wanted {
            keep.insert(key);
            if self.secrets.get(key) != Some(&hash) {
                self.secrets.insert(key.clone(), hash);
                changes.insert(key.clone(), Some(doc.clone()));
            }
        }
        let gone: Vec<ObjectKey> = self
            .secrets
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for key in gone {
            self.secrets.remove(&key);
            changes.insert(key, None);
        }
        if !changes.is_empty() {
            apply(&mut self.resources, changes);
        }
        self.resources.clone()
    }
}

/// Replaces or removes objects by key.
fn apply(resources: &mut Arc<Resources>, changes: BTreeMap<ObjectKey, Option<Document>>) {
    let removals = changes
        .keys()
        .filter(|k| resources.revisions.contains_key(*k))
        .count();
    if removals <= IN_PLACE_REMOVALS {
        let resources = Arc::make_mut(resources);
        for (key, doc) in changes {
            if resources.revisions.contains_key(&key) {
                resources.remove(&key);
            }
            if let Some(doc) = doc {
                resources.insert("", doc);
            }
        }
        return;
    }
    let old = Arc::try_unwrap(std::mem::take(resources)).unwrap_or_else(|s| (*s).clone());
    let mut objects: BTreeMap<ObjectKey, Document> = old
        .into_documents()
        .into_iter()
        .map(|d| (d.key.clone(), d))
        .collect();
    for (key, doc) in changes {
        match doc {
            Some(doc) => objects.insert(key, doc),
            None => objects.remove(&key),
        };
    }
    let mut fresh = Resources::default();
    for doc in objects.into_values() {
        fresh.insert("", doc);
    }
    *resources = Arc::new(fresh);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, host: &str) -> Document {
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: ns\nspec:\n  hostnames: [{host}]\n"
        );
        portico_translator::parse_file("", &text).0.remove(0)
    }

    fn hosts(resources: &Resources) -> Vec<String> {
        let mut out: Vec<String> = resources
            .http_routes
            .iter()
            .map(|r| {
                let name = r.metadata.name.clone().unwrap_or_default();
                format!("{name}={}", r.spec.hostnames.as_ref().unwrap()[0])
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn in_place_and_bulk_updates_agree() {
        let mut input = Input::default();
        for i in 0..100 {
            let doc = route(&format!("r{i}"), "a");
            input.record(doc.key.clone(), Some(doc));
        }
        let first = input.load(std::iter::empty());
        assert_eq!(first.http_routes.len(), 100);
        assert!(first.sources.is_empty());
        drop(first);
        let mut model: BTreeMap<String, String> = (0..100)
            .map(|i| (format!("r{i}"), "a".to_string()))
            .collect();
        // A few changes go in place, many through a rebuild: the same result either way.
        for (count, host, gone) in [(3, "b", 99), (90, "c", 98)] {
            for i in 0..count {
                let doc = route(&format!("r{i}"), host);
                input.record(doc.key.clone(), Some(doc));
                model.insert(format!("r{i}"), host.to_string());
            }
            input.record(ObjectKey::new("HTTPRoute", "ns", &format!("r{gone}")), None);
            model.remove(&format!("r{gone}"));
            let loaded = input.load(std::iter::empty());
            let mut expected: Vec<String> = model.iter().map(|(k, v)| format!("{k}={v}")).collect();
            expected.sort();
            assert_eq!(hosts(&loaded), expected);
            assert_eq!(loaded.revisions.len(), model.len());
            // The translator can follow the change log (incremental translation's fast path).
            assert!(loaded.changes().is_some());
        }
    }
}
