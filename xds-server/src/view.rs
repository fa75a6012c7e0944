//! What a stream serves: the fleet snapshot plus resources kept alive for make-before-break.

use std::collections::BTreeMap;

use crate::snapshot::{Resource, Snapshot, version_of};

/// The fleet snapshot plus resources kept alive for make-before-break.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) snapshot: Snapshot,
    /// Clusters (and their endpoints) the snapshot dropped but the client still needs until the
    /// listeners and routes that used them are replaced. By type URL, then name.
    pub(crate) retained: BTreeMap<String, BTreeMap<String, Resource>>,
}

impl View {
    pub(crate) fn get(&self, type_url: &str, name: &str) -> Option<&Resource> {
        self.snapshot
            .get(type_url, name)
            .or_else(|| self.retained.get(type_url)?.get(name))
    }

    pub(crate) fn resources(&self, type_url: &str) -> Vec<&Resource> {
        let mut all: Vec<&Resource> = self.snapshot.resources(type_url).collect();
        if let Some(kept) = self.retained.get(type_url).filter(|k| !k.is_empty()) {
            all.extend(kept.values());
            all.sort_by(|a, b| a.name.cmp(&b.name));
        }
        all
    }

    pub(crate) fn version(&self, type_url: &str) -> String {
        match self.retained.get(type_url) {
            Some(kept) if !kept.is_empty() => version_of(
                self.resources(type_url)
                    .into_iter()
                    .map(|r| (&*r.name, &*r.version)),
            ),
            _ => self.snapshot.version(type_url),
        }
    }
}
