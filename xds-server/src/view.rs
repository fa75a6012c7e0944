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
    /// Per type, a number that changes whenever what the view serves of that type may have
    /// changed (new content version, retained set touched). Lets a stream skip re-comparing
    /// every resource it holds for types a new snapshot left alone.
    generations: BTreeMap<String, u64>,
    next_generation: u64,
}

impl View {
    pub(crate) fn generation(&self, type_url: &str) -> u64 {
        self.generations.get(type_url).copied().unwrap_or(0)
    }

    /// Marks a type as possibly changed.
    pub(crate) fn touch(&mut self, type_url: &str) {
        self.next_generation += 1;
        let generation = self.next_generation;
        match self.generations.get_mut(type_url) {
            Some(g) => *g = generation,
            None => {
                self.generations.insert(type_url.to_string(), generation);
            }
        }
    }

    /// Replaces the snapshot; touches only the types whose content version changed (the
    /// versions are computed once per snapshot and shared by every stream of the fleet).
    pub(crate) fn replace_snapshot(&mut self, new: Snapshot) -> Snapshot {
        let old = std::mem::replace(&mut self.snapshot, new);
        for t in old.changed_types(&self.snapshot) {
            self.touch(&t);
        }
        old
    }

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
