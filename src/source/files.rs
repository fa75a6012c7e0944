//! The GitOps directory: every `*.yaml`/`*.yml` below a root, read into `Resources`.
//!
//! Each file keeps its last good parse: a file that stops parsing, or an object that stops
//! deserializing, keeps serving what it said before, so a bad edit never takes config away
//! from Envoy. The problem is still reported, with file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico_translator::{Document, ObjectKey, Problem, ProblemKind, Resources, Severity};

use super::assembly::{Assembly, FileChange};
use super::watch::Changed;

/// What one load of the directory produced.
#[derive(Default)]
pub struct Loaded {
    /// Shared with the source, which updates it in place on the next load when nobody else
    /// holds it any more (drop it before loading again to avoid a copy).
    pub resources: Arc<Resources>,
    /// Problems found while reading and parsing (translation adds its own).
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// Input that could not be read or parsed at all (exit code 2 for `validate`).
    pub fn unreadable(&self) -> bool {
        self.problems.iter().any(|p| p.kind == ProblemKind::Parse)
    }
}

/// One document in effect for a file: the objects themselves live in the assembly.
#[derive(Clone, PartialEq, Eq)]
struct Entry {
    key: ObjectKey,
    line: usize,
    revision: u64,
}

impl Entry {
    fn of(doc: &Document) -> Self {
        Entry {
            key: doc.key.clone(),
            line: doc.line,
            revision: doc.revision,
        }
    }
}

#[derive(Default)]
struct FileState {
    content_hash: u64,
    /// Documents in effect for this file: the newest parse, with last-good stand-ins.
    entries: Vec<Entry>,
    /// Whether an object is defined twice in `entries`.
    repeats: bool,
    problems: Vec<Problem>,
}

/// A directory source that remembers each file's last good content between loads.
pub struct DirSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    /// The root as the watcher reports paths: absolute, symlinks resolved.
    canonical_root: PathBuf,
    /// Whether a full walk happened yet (changed paths alone cannot build the first view).
    scanned: bool,
    /// Every file's objects, each held once, and the translator's input made of them.
    assembly: Assembly,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            canonical_root: std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone()),
            root,
            files: BTreeMap::new(),
            scanned: false,
            assembly: Assembly::default(),
        }
    }

    /// Reads the whole directory again. Unchanged files are not parsed again.
    pub fn load(&mut self) -> Loaded {
        let mut root_problem = None;
        let mut paths = Vec::new();
        if let Err(err) = collect_yaml_files(&self.root, &mut paths) {
            root_problem = Some(io_problem(&self.root, &err));
            // Keep serving what we had: a vanished or unreadable root is not an empty config.
            paths = self.files.keys().cloned().collect();
        }
        let present: BTreeSet<&PathBuf> = paths.iter().collect();
        let gone: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !present.contains(path))
            .cloned()
            .collect();
        let mut changes: Vec<FileChange> = gone.iter().filter_map(|p| self.forget(p)).collect();
        for path in &paths {
            changes.extend(self.read(path));
        }
        self.scanned = true;
        self.assembly.apply(changes);
        let mut loaded = self.loaded();
        loaded.problems.extend(root_problem);
        loaded
    }

    /// Re-reads only the paths a watcher reported, falling back to a full scan when that
    /// cannot be trusted (first load, a watch error, a new folder).
    pub fn load_changed(&mut self, changed: Changed) -> Loaded {
        if changed.rescan || !self.scanned {
            return self.load();
        }
        let mut changes = Vec::new();
        for reported in &changed.paths {
            // Back to the root's own spelling, which keys the files and names them in problems.
            let Some(path) = self.under_root(reported) else {
                continue;
            };
            let path = &path;
            match std::fs::metadata(path) {
                // A new or moved folder: its files need a walk.
                Ok(meta) if meta.is_dir() => {
                    self.assembly.apply(changes);
                    return self.load();
                }
                Ok(_) => {
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default();
                    if is_yaml(&name) {
                        changes.extend(self.read(path));
                    }
                }
                // Gone: the file, or a folder with every file below it.
                Err(_) => {
                    let gone: Vec<PathBuf> = self
                        .files
                        .keys()
                        .filter(|known| known.starts_with(path))
                        .cloned()
                        .collect();
                    for known in gone {
                        changes.extend(self.forget(&known));
                    }
                }
            }
        }
        self.assembly.apply(changes);
        self.loaded()
    }

    /// Drops a file that disappeared; its objects go with it.
    fn forget(&mut self, path: &Path) -> Option<FileChange> {
        let state = self.files.remove(path)?;
        Some(FileChange {
            path: path.to_path_buf(),
            old: state.entries.into_iter().map(|e| e.key).collect(),
            new: Vec::new(),
        })
    }

    /// A reported path in the root's spelling, if it is one the directory walk would read
    /// (below the root, no hidden or editor temp component).
    fn under_root(&self, reported: &Path) -> Option<PathBuf> {
        let relative = reported
            .strip_prefix(&self.canonical_root)
            .or_else(|_| reported.strip_prefix(&self.root))
            .ok()?;
        let visible = relative.components().all(|c| {
            let name = c.as_os_str().to_string_lossy();
            !(name.starts_with('.') || name.starts_with('#') || name.ends_with('~'))
        });
        visible.then(|| self.root.join(relative))
    }

    /// Reads one file again; returns the objects that changed, if any.
    fn read(&mut self, path: &Path) -> Option<FileChange> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let docs = self.refresh(path, &text)?;
                let state = self.files.get_mut(path)?;
                let entries: Vec<Entry> = docs.iter().map(Entry::of).collect();
                let keys: BTreeSet<&ObjectKey> = entries.iter().map(|e| &e.key).collect();
                state.repeats = keys.len() < entries.len();
                drop(keys);
                let old = std::mem::replace(&mut state.entries, entries);
                Some(changed_documents(path, old, docs))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => self.forget(path),
            Err(err) => {
                let state = self.files.entry(path.to_path_buf()).or_default();
                state.problems = vec![io_problem(path, &err)];
                None
            }
        }
    }

    /// The assembled input and every problem: each file's own, and duplicates. Costs a
    /// look at each file, not at each object.
    fn loaded(&self) -> Loaded {
        let mut problems = Vec::new();
        // Objects defined more than once: in several files, or twice in one.
        let mut duplicated: BTreeMap<&ObjectKey, Vec<&Path>> = self
            .assembly
            .duplicated()
            .map(|(key, files)| (key, files.iter().map(|p| &**p).collect()))
            .collect();
        for (path, state) in &self.files {
            problems.extend(state.problems.iter().cloned());
            if state.repeats {
                let mut seen = BTreeSet::new();
                for entry in state.entries.iter().filter(|e| !seen.insert(&e.key)) {
                    duplicated.entry(&entry.key).or_insert_with(|| vec![path]);
                }
            }
        }
        for (key, paths) in duplicated {
            let mut first: Option<String> = None;
            for path in paths {
                let Some(state) = self.files.get(path) else {
                    continue;
                };
                for entry in state.entries.iter().filter(|e| &e.key == key) {
                    let Some(first) = &first else {
                        first = Some(format!("{}:{}", display(path), entry.line));
                        continue;
                    };
                    problems.push(Problem {
                        severity: Severity::Error,
                        kind: ProblemKind::Invalid,
                        file: Some(display(path)),
                        line: Some(entry.line),
                        object: Some(entry.key.clone()),
                        field: "metadata.name".into(),
                        message: format!(
                            "duplicate object, first defined in {first}; this one is ignored"
                        ),
                    });
                }
            }
        }
        problems.sort();
        Loaded {
            resources: self.assembly.resources().clone(),
            problems,
        }
    }

    /// Parses a file's new text: its documents in effect now, or None when nothing changed
    /// (same text, or unreadable as a whole, which keeps its last good content).
    fn refresh(&mut self, path: &Path, text: &str) -> Option<Vec<Document>> {
        let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        let state = self.files.entry(path.to_path_buf()).or_default();
        if state.content_hash == hash && !state.entries.is_empty() {
            return None;
        }
        let (mut docs, problems) = portico_translator::parse_file(&display(path), text);
        if problems.iter().any(|p| p.kind == ProblemKind::Parse) {
            // The file as a whole is unreadable: keep all of its last good documents.
            state.problems = with_last_good_note(problems, !state.entries.is_empty());
            return None;
        }
        // Objects that no longer deserialize keep their last good version.
        for problem in problems.iter().filter(|p| p.kind == ProblemKind::Invalid) {
            let Some(key) = &problem.object else { continue };
            if docs.iter().any(|d| &d.key == key) || !state.entries.iter().any(|e| &e.key == key) {
                continue;
            }
            docs.extend(self.assembly.definition(path, key));
        }
        let state = self.files.entry(path.to_path_buf()).or_default();
        state.content_hash = hash;
        state.problems = problems;
        Some(docs)
    }
}

/// The change from a file's old entries to its new documents, leaving out documents that
/// are the same (key, line and revision) and defined once before and after.
fn changed_documents(path: &Path, old: Vec<Entry>, new: Vec<Document>) -> FileChange {
    let mut count: BTreeMap<&ObjectKey, (usize, usize)> = BTreeMap::new();
    for entry in &old {
        count.entry(&entry.key).or_default().0 += 1;
    }
    for doc in &new {
        count.entry(&doc.key).or_default().1 += 1;
    }
    let old_of: BTreeMap<&ObjectKey, &Entry> = old.iter().map(|e| (&e.key, e)).collect();
    let same: BTreeSet<ObjectKey> = new
        .iter()
        .filter(|d| {
            count.get(&d.key) == Some(&(1, 1)) && old_of.get(&d.key) == Some(&&Entry::of(d))
        })
        .map(|d| d.key.clone())
        .collect();
    FileChange {
        path: path.to_path_buf(),
        old: old
            .into_iter()
            .filter(|e| !same.contains(&e.key))
            .map(|e| e.key)
            .collect(),
        new: new.into_iter().filter(|d| !same.contains(&d.key)).collect(),
    }
}

fn with_last_good_note(problems: Vec<Problem>, had_good: bool) -> Vec<Problem> {
    if !had_good {
        return problems;
    }
    problems
        .into_iter()
        .map(|mut p| {
            p.message
                .push_str(" (the file's last good content keeps serving)");
            p
        })
        .collect()
}

/// Recursively lists YAML files, skipping hidden files and folders (editor swap files,
/// Kubernetes ConfigMap mount internals such as `..data`).
fn collect_yaml_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('#') || name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        // Follows symlinks: mounted ConfigMaps link each file into a hidden folder.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_yaml_files(&path, out)?;
        } else if is_yaml(&name) {
            out.push(path);
        }
    }
    Ok(())
}

pub fn is_yaml(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn io_problem(path: &Path, err: &std::io::Error) -> Problem {
    Problem {
        severity: Severity::Error,
        kind: ProblemKind::Parse,
        file: Some(display(path)),
        line: None,
        object: None,
        field: String::new(),
        message: format!("cannot read: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE_A: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: a\n  namespace: default\nspec:\n  hostnames: [a.example]\n";
    const ROUTE_B: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: b\n  namespace: default\nspec:\n  hostnames: [b.example]\n";

    fn names(loaded: &Loaded) -> Vec<String> {
        let mut names: Vec<String> = loaded
            .resources
            .http_routes
            .iter()
            .filter_map(|r| r.metadata.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn reads_nested_yaml_and_skips_hidden_and_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("routes/nested")).unwrap();
        std::fs::create_dir_all(dir.path().join("..data")).unwrap();
        std::fs::write(dir.path().join("routes/nested/a.yaml"), ROUTE_A).unwrap();
        std::fs::write(dir.path().join("b.yml"), ROUTE_B).unwrap();
        std::fs::write(dir.path().join(".b.yaml.swp"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("b.yaml~"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("..data/x.yaml"), "garbage: [").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "garbage: [").unwrap();
        let loaded = DirSource::new(dir.path()).load();
        assert_eq!(names(&loaded), ["a", "b"]);
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_content() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, format!("{ROUTE_A}---\n{ROUTE_B}")).unwrap();
        let mut source = DirSource::new(dir.path());
        assert_eq!(names(&source.load()), ["a", "b"]);

        std::fs::write(&file, "kind: HTTPRoute\nmetadata: [unclosed\n").unwrap();
        let loaded = source.load();
        assert_eq!(names(&loaded), ["a", "b"]);
        assert!(loaded.unreadable());
        let problem = loaded.problems[0].to_string();
        assert!(
            problem.starts_with(&format!("{}:", file.display())),
            "{problem}"
        );

        std::fs::write(&file, ROUTE_A).unwrap();
        let loaded = source.load();
        assert_eq!(names(&loaded), ["a"]);
        assert!(loaded.problems.is_empty());
    }

    #[test]
    fn a_file_never_good_contributes_nothing_but_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "a: [").unwrap();
        std::fs::write(dir.path().join("good.yaml"), ROUTE_B).unwrap();
        let loaded = DirSource::new(dir.path()).load();
        assert_eq!(names(&loaded), ["b"]);
        assert!(loaded.unreadable());
    }

    #[test]
    fn an_invalid_object_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, format!("{ROUTE_A}---\n{ROUTE_B}")).unwrap();
        let mut source = DirSource::new(dir.path());
        source.load();
        // hostnames must be a list: this HTTPRoute no longer deserializes.
        let bad_a = ROUTE_A.replace("[a.example]", "{not: a-list}");
        std::fs::write(&file, format!("{bad_a}---\n{ROUTE_B}")).unwrap();
        let loaded = source.load();
        assert_eq!(names(&loaded), ["a", "b"]);
        let a = loaded
            .resources
            .http_routes
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some("a"))
            .unwrap();
        assert_eq!(
            a.spec.hostnames.as_deref(),
            Some(&["a.example".to_string()][..])
        );
        assert!(
            loaded
                .problems
                .iter()
                .any(|p| p.kind == ProblemKind::Invalid),
            "{:?}",
            loaded.problems
        );
        assert!(!loaded.unreadable());
    }

    #[test]
    fn removed_files_take_their_objects_and_duplicates_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("1.yaml"), ROUTE_A).unwrap();
        std::fs::write(dir.path().join("2.yaml"), ROUTE_A).unwrap();
        let mut source = DirSource::new(dir.path());
        let loaded = source.load();
        assert_eq!(names(&loaded), ["a"]);
        assert!(
            loaded.problems[0].message.contains("duplicate"),
            "{:?}",
            loaded.problems
        );
        std::fs::remove_file(dir.path().join("1.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("2.yaml")).unwrap();
        assert!(names(&source.load()).is_empty());
    }

    /// Everything the translator sees, independent of object order.
    fn snapshot(loaded: &Loaded) -> (Vec<String>, Vec<String>) {
        let r = &loaded.resources;
        let mut objects: Vec<String> = r
            .http_routes
            .iter()
            .map(|o| format!("{o:?}"))
            .chain(r.namespaces.iter().map(|o| format!("{o:?}")))
            .chain(r.sources.iter().map(|s| format!("{s:?}")))
            .collect();
        objects.sort();
        let mut problems: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
        problems.sort();
        (objects, problems)
    }

    #[test]
    fn in_place_updates_match_a_fresh_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n";
        let mut source = DirSource::new(dir.path());
        std::fs::write(path("1.yaml"), ROUTE_A).unwrap();
        source.load();
        // (file, content or None to delete) applied one step at a time.
        let steps: [(&str, Option<String>); 8] = [
            ("2.yaml", Some(format!("{ROUTE_B}---\n{ns}"))),
            ("1.yaml", Some(ROUTE_A.replace("a.example", "a2.example"))),
            // A duplicate of 2.yaml's route, then it goes away again.
            ("3.yaml", Some(ROUTE_B.replace("b.example", "dup.example"))),
            ("2.yaml", Some(ns.to_string())),
            ("3.yaml", None),
            ("1.yaml", Some("kind: [broken".into())),
            ("2.yaml", None),
            ("1.yaml", Some(ROUTE_B.into())),
        ];
        for (i, (name, content)) in steps.iter().enumerate() {
            match content {
                Some(text) => std::fs::write(path(name), text).unwrap(),
                None => std::fs::remove_file(path(name)).unwrap(),
            }
            let incremental = source.load_changed(changed(&[&path(name)]));
            let mut fresh = DirSource::new(dir.path());
            // While 1.yaml is broken only this source has its last good content.
            if i == 5 || i == 6 {
                continue;
            }
            assert_eq!(snapshot(&incremental), snapshot(&fresh.load()), "step {i}");
        }
    }

    /// Random edits of files that share objects (duplicates in every order, files with many
    /// objects that take the rebuild path) keep matching a fresh load.
    #[test]
    fn random_edits_match_a_fresh_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = DirSource::new(dir.path());
        source.load();
        let mut next = crate::test_rng::sequence(0x9e37_79b9_7f4a_7c15);
        for step in 0..200 {
            let file = dir.path().join(format!("{}.yaml", next(4)));
            if next(5) == 0 {
                let _ = std::fs::remove_file(&file);
            } else {
                // Up to 80 routes out of 100 names, so some changes remove more than the
                // in-place limit.
                let count = if next(3) == 0 { 70 + next(10) } else { next(4) };
                let docs: Vec<String> = (0..count)
                    .map(|_| {
                        let name = format!("r{}", next(100));
                        ROUTE_A
                            .replace("name: a", &format!("name: {name}"))
                            .replace("a.example", &format!("h{}.example", next(3)))
                    })
                    .collect();
                std::fs::write(&file, docs.join("---\n")).unwrap();
            }
            let incremental = source.load_changed(changed(&[&file]));
            let fresh = DirSource::new(dir.path()).load();
            assert_eq!(snapshot(&incremental), snapshot(&fresh), "step {step}");
        }
    }

    fn changed(paths: &[&Path]) -> Changed {
        Changed {
            paths: paths.iter().map(|p| p.to_path_buf()).collect(),
            ..Changed::default()
        }
    }

    #[test]
    fn only_reported_paths_are_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
        std::fs::write(&a, ROUTE_A).unwrap();
        std::fs::write(&b, ROUTE_B).unwrap();
        let mut source = DirSource::new(dir.path());
        assert_eq!(names(&source.load_changed(Changed::default())), ["a", "b"]);

        // b changes on disk but only a is reported: the view follows the report.
        std::fs::write(&a, ROUTE_A.replace("name: a", "name: a2")).unwrap();
        std::fs::write(&b, ROUTE_B.replace("name: b", "name: b2")).unwrap();
        assert_eq!(names(&source.load_changed(changed(&[&a]))), ["a2", "b"]);
        let rescan = Changed {
            rescan: true,
            ..Changed::default()
        };
        assert_eq!(names(&source.load_changed(rescan)), ["a2", "b2"]);
    }

    #[test]
    fn reported_removals_and_new_folders() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("team");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.yaml"), ROUTE_A).unwrap();
        let mut source = DirSource::new(dir.path());
        assert_eq!(names(&source.load()), ["a"]);

        std::fs::remove_dir_all(&sub).unwrap();
        assert!(names(&source.load_changed(changed(&[&sub]))).is_empty());

        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("b.yaml"), ROUTE_B).unwrap();
        assert_eq!(names(&source.load_changed(changed(&[&other]))), ["b"]);

        // Hidden and temp paths are never read, even when reported.
        let swap = dir.path().join(".b.yaml.swp");
        std::fs::write(&swap, ROUTE_A).unwrap();
        assert_eq!(names(&source.load_changed(changed(&[&swap]))), ["b"]);
    }

    #[test]
    fn absolute_reports_map_onto_a_relative_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE_A).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let relative = pathdiff(dir.path(), &cwd);
        let mut source = DirSource::new(&relative);
        source.load();
        let absolute = std::fs::canonicalize(dir.path()).unwrap().join("a.yaml");
        std::fs::write(&absolute, ROUTE_B).unwrap();
        let loaded = source.load_changed(changed(&[&absolute]));
        assert_eq!(names(&loaded), ["b"]);
        // Problems and sources keep the root's own spelling.
        assert!(
            loaded
                .resources
                .sources
                .values()
                .all(|s| s.file.starts_with(&*relative.to_string_lossy()))
        );
    }

    /// `to` relative to `from` (both absolute), with `..` steps.
    fn pathdiff(to: &Path, from: &Path) -> PathBuf {
        let to: Vec<_> = to.components().collect();
        let from: Vec<_> = from.components().collect();
        let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
        let mut out = PathBuf::new();
        for _ in common..from.len() {
            out.push("..");
        }
        for c in &to[common..] {
            out.push(c);
        }
        out
    }
}
