//! The directory's objects as one `Resources`, kept up to date file by file.
//!
//! Every object is held once: the definition in effect (the first in path order) in the
//! `Resources` handed to the translator, a later duplicate in `shadowed` until the one before
//! it goes away. Files remember only their keys. A one-file change removes that file's old
//! objects and inserts its new ones in place; a change touching many objects moves everything
//! out and builds a fresh `Resources` instead (removal in place costs a scan of the kind's list
//! per object). The translator does not depend on input order.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico_translator::{Document, ObjectKey, Resources};

/// Above this many removals, rebuilding beats removing one by one.
const IN_PLACE_REMOVALS: usize = 64;

/// One file re-read: the objects it defined before, and its documents now.
pub struct FileChange {
    pub path: PathBuf,
    pub old: Vec<ObjectKey>,
    pub new: Vec<Document>,
}

/// The objects of every file, each held once.
#[derive(Default)]
pub struct Assembly {
    /// The definitions in effect, as the translator's input. Updated in place when nobody else
    /// holds it, else copied first.
    resources: Arc<Resources>,
    /// Which files define each object, in path order: the first one's is in effect.
    definitions: BTreeMap<ObjectKey, Files>,
    /// Definitions not in effect (duplicates), by object and file.
    shadowed: BTreeMap<ObjectKey, BTreeMap<Arc<Path>, Document>>,
    /// The objects defined in more than one file.
    duplicated: BTreeSet<ObjectKey>,
}

/// The files defining one object, in path order. Almost always one: a sorted `Vec` of paths
/// shared by the file's objects costs a fraction of a `BTreeSet<PathBuf>` per object.
#[derive(Default)]
struct Files(Vec<Arc<Path>>);

impl Files {
    fn first(&self) -> Option<&Arc<Path>> {
        self.0.first()
    }

    fn insert(&mut self, path: &Arc<Path>) {
        if let Err(i) = self.0.binary_search(path) {
            self.0.insert(i, path.clone());
        }
    }

    /// Whether the path was there.
    fn remove(&mut self, path: &Path) -> bool {
        match self.0.binary_search_by(|p| (**p).cmp(path)) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
}

/// Where the definitions in effect live while changes are applied.
trait Effective {
    fn remove(&mut self, key: &ObjectKey);
    fn take(&mut self, key: &ObjectKey) -> Option<Document>;
    fn put(&mut self, file: &Path, doc: Document);
}

impl Effective for Resources {
    fn remove(&mut self, key: &ObjectKey) {
        Resources::remove(self, key);
    }
    fn take(&mut self, key: &ObjectKey) -> Option<Document> {
        let doc = Resources::get(self, key);
        Resources::remove(self, key);
        doc
    }
    fn put(&mut self, file: &Path, doc: Document) {
        self.insert(&file.display().to_string(), doc);
    }
}

/// The bulk form: objects by key, inserted into a fresh `Resources` at the end.
impl Effective for BTreeMap<ObjectKey, Document> {
    fn remove(&mut self, key: &ObjectKey) {
        BTreeMap::remove(self, key);
    }
    fn take(&mut self, key: &ObjectKey) -> Option<Document> {
        BTreeMap::remove(self, key)
    }
    fn put(&mut self, _file: &Path, doc: Document) {
        self.insert(doc.key.clone(), doc);
    }
}

impl Assembly {
    /// The translator's input. Drop every clone before the next [`Assembly::apply`] to avoid
    /// a copy.
    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    /// A copy of `path`'s definition of `key`, in effect or not (for last-good stand-ins).
    pub fn definition(&self, path: &Path, key: &ObjectKey) -> Option<Document> {
        let files = self.definitions.get(key)?;
        if files.first().map(|p| &**p) == Some(path) {
            self.resources.get(key)
        } else {
            self.shadowed.get(key)?.get(path).cloned()
        }
    }

    /// The objects defined in more than one file, with those files in path order.
    pub fn duplicated(&self) -> impl Iterator<Item = (&ObjectKey, &[Arc<Path>])> {
        self.duplicated
            .iter()
            .filter_map(|k| Some((k, self.definitions.get(k)?.0.as_slice())))
    }

    /// Applies file changes, in place when few objects go away.
    pub fn apply(&mut self, changes: Vec<FileChange>) {
        let removals: usize = changes.iter().map(|c| c.old.len()).sum();
        if removals <= IN_PLACE_REMOVALS {
            let mut resources = std::mem::take(&mut self.resources);
            let effective = Arc::make_mut(&mut resources);
            for change in changes {
                self.apply_one(effective, change);
            }
            self.resources = resources;
            return;
        }
        let resources = std::mem::take(&mut self.resources);
        let resources = Arc::try_unwrap(resources).unwrap_or_else(|shared| (*shared).clone());
        let mut effective: BTreeMap<ObjectKey, Document> = resources
            .into_documents()
            .into_iter()
            .map(|d| (d.key.clone(), d))
            .collect();
        for change in changes {
            self.apply_one(&mut effective, change);
        }
        let mut fresh = Resources::default();
        for (key, doc) in effective {
            let Some(file) = self.definitions.get(&key).and_then(|f| f.first()) else {
                continue;
            };
            fresh.insert(&file.display().to_string(), doc);
        }
        self.resources = Arc::new(fresh);
    }

    fn apply_one(&mut self, effective: &mut impl Effective, change: FileChange) {
        let path: Arc<Path> = change.path.into();
        for key in &change.old {
            let Some(files) = self.definitions.get_mut(key) else {
                continue;
            };
            let in_effect = files.first() == Some(&path);
            if !files.remove(&path) {
                continue; // listed twice in the file
            }
            let next = files.first().cloned();
            if files.0.len() < 2 {
                self.duplicated.remove(key);
            }
            if files.0.is_empty() {
                self.definitions.remove(key);
            }
            if !in_effect {
                self.unshadow(key, &path);
                continue;
            }
            effective.remove(key);
            // The next file's duplicate takes over.
            if let Some(next) = next
                && let Some(doc) = self.unshadow(key, &next)
            {
                effective.put(&next, doc);
            }
        }
        let mut seen = BTreeSet::new();
        for doc in change.new {
            // A second definition within the file is ignored, like any later duplicate.
            if !seen.insert(doc.key.clone()) {
                continue;
            }
            let files = self.definitions.entry(doc.key.clone()).or_default();
            files.insert(&path);
            if files.0.len() > 1 {
                self.duplicated.insert(doc.key.clone());
            }
            if files.first() != Some(&path) {
                self.shadowed
                    .entry(doc.key.clone())
                    .or_default()
                    .insert(path.clone(), doc);
                continue;
            }
            // This file comes first now: the definition in effect so far steps back.
            if let Some(previous) = files.0.get(1).cloned()
                && let Some(old) = effective.take(&doc.key)
            {
                self.shadowed
                    .entry(doc.key.clone())
                    .or_default()
                    .insert(previous, old);
            }
            effective.put(&path, doc);
        }
    }

    fn unshadow(&mut self, key: &ObjectKey, path: &Path) -> Option<Document> {
        let files = self.shadowed.get_mut(key)?;
        let doc = files.remove(path);
        if files.is_empty() {
            self.shadowed.remove(key);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: a\nspec: {}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n";
    const B: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: a\n  namespace: other\nspec: {}\n";

    fn add(file: &str, docs: &[Document]) -> FileChange {
        FileChange {
            path: file.into(),
            old: Vec::new(),
            new: docs.to_vec(),
        }
    }

    #[test]
    fn removes_exactly_the_objects_of_a_file() {
        let (a, _) = portico_translator::parse_file("a.yaml", A);
        let (b, _) = portico_translator::parse_file("b.yaml", B);
        let mut assembly = Assembly::default();
        assembly.apply(vec![add("a.yaml", &a), add("b.yaml", &b)]);
        assert_eq!(assembly.resources().http_routes.len(), 2);
        assert_eq!(assembly.resources().namespaces.len(), 1);
        assembly.apply(vec![FileChange {
            path: "a.yaml".into(),
            old: a.into_iter().map(|d| d.key).collect(),
            new: Vec::new(),
        }]);
        let resources = assembly.resources();
        assert_eq!(resources.http_routes.len(), 1);
        assert_eq!(
            resources.http_routes[0].metadata.namespace.as_deref(),
            Some("other")
        );
        assert!(resources.namespaces.is_empty());
        assert_eq!(resources.sources.len(), 1);
    }

    #[test]
    fn the_first_file_in_path_order_wins_and_the_next_takes_over() {
        let (a, _) = portico_translator::parse_file("a.yaml", A);
        let ns = |r: &Resources| {
            r.sources
                .values()
                .map(|s| s.file.clone())
                .collect::<Vec<_>>()
        };
        let mut assembly = Assembly::default();
        assembly.apply(vec![add("2.yaml", &a)]);
        assembly.apply(vec![add("3.yaml", &a)]);
        assert_eq!(ns(assembly.resources()), ["2.yaml", "2.yaml"]);
        assert_eq!(assembly.duplicated().count(), 2);
        // An earlier file takes over, and leaves again.
        assembly.apply(vec![add("1.yaml", &a)]);
        assert_eq!(ns(assembly.resources()), ["1.yaml", "1.yaml"]);
        let keys: Vec<ObjectKey> = a.iter().map(|d| d.key.clone()).collect();
        let gone = |file: &str| FileChange {
            path: file.into(),
            old: keys.clone(),
            new: Vec::new(),
        };
        assembly.apply(vec![gone("1.yaml")]);
        assert_eq!(ns(assembly.resources()), ["2.yaml", "2.yaml"]);
        assembly.apply(vec![gone("2.yaml")]);
        assert_eq!(ns(assembly.resources()), ["3.yaml", "3.yaml"]);
        assert_eq!(assembly.resources().http_routes.len(), 1);
        assert!(assembly.definition(Path::new("3.yaml"), &keys[0]).is_some());
        assert!(assembly.definition(Path::new("2.yaml"), &keys[0]).is_none());
        assembly.apply(vec![gone("3.yaml")]);
        assert!(assembly.resources().sources.is_empty());
        assert!(assembly.shadowed.is_empty() && assembly.definitions.is_empty());
        assert!(assembly.duplicated.is_empty());
    }
}
