//! The GitOps directory: every `*.yaml`/`*.yml` below a root, read into `Resources`.
//!
//! Each file keeps its last good parse: a file that stops parsing, or an object that stops
//! deserializing, keeps serving what it said before, so a bad edit never takes config away
//! from Envoy. The problem is still reported, with file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portico_translator::{Document, ObjectKey, Problem, ProblemKind, Resources, Severity};

/// What one load of the directory produced.
#[derive(Default)]
pub struct Loaded {
    pub resources: Resources,
    /// Problems found while reading and parsing (translation adds its own).
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// Input that could not be read or parsed at all (exit code 2 for `validate`).
    pub fn unreadable(&self) -> bool {
        self.problems.iter().any(|p| p.kind == ProblemKind::Parse)
    }
}

#[derive(Default)]
struct FileState {
    content_hash: u64,
    /// Documents in effect for this file: the newest parse, with last-good stand-ins.
    docs: Vec<Document>,
    problems: Vec<Problem>,
}

/// A directory source that remembers each file's last good content between loads.
pub struct DirSource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
}

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            files: BTreeMap::new(),
        }
    }

    /// Reads the directory again. Unchanged files are not parsed again.
    pub fn load(&mut self) -> Loaded {
        let mut loaded = Loaded::default();
        let mut paths = Vec::new();
        if let Err(err) = collect_yaml_files(&self.root, &mut paths) {
            loaded.problems.push(io_problem(&self.root, &err));
            // Keep serving what we had: a vanished or unreadable root is not an empty config.
            paths = self.files.keys().cloned().collect();
        }
        paths.sort();
        let present: BTreeSet<&PathBuf> = paths.iter().collect();
        self.files.retain(|path, _| present.contains(path));

        for path in &paths {
            match std::fs::read_to_string(path) {
                Ok(text) => self.refresh(path, &text),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    self.files.remove(path);
                    continue;
                }
                Err(err) => {
                    let state = self.files.entry(path.clone()).or_default();
                    state.problems = vec![io_problem(path, &err)];
                }
            }
        }

        let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
        for (path, state) in &self.files {
            let file = display(path);
            loaded.problems.extend(state.problems.iter().cloned());
            for doc in &state.docs {
                if let Some(first) = seen.get(&doc.key) {
                    loaded.problems.push(Problem {
                        severity: Severity::Error,
                        kind: ProblemKind::Invalid,
                        file: Some(file.clone()),
                        line: Some(doc.line),
                        object: Some(doc.key.clone()),
                        field: "metadata.name".into(),
                        message: format!(
                            "duplicate object, first defined in {first}; this one is ignored"
                        ),
                    });
                    continue;
                }
                seen.insert(doc.key.clone(), format!("{file}:{}", doc.line));
                loaded.resources.insert(&file, doc.clone());
            }
        }
        loaded
    }

    fn refresh(&mut self, path: &Path, text: &str) {
        let hash = xxhash_rust::xxh3::xxh3_64(text.as_bytes());
        let state = self.files.entry(path.to_path_buf()).or_default();
        if state.content_hash == hash && !state.docs.is_empty() {
            return;
        }
        let (mut docs, problems) = portico_translator::parse_file(&display(path), text);
        if problems.iter().any(|p| p.kind == ProblemKind::Parse) {
            // The file as a whole is unreadable: keep all of its last good documents.
            state.problems = with_last_good_note(problems, !state.docs.is_empty());
            return;
        }
        // Objects that no longer deserialize keep their last good version.
        for problem in problems.iter().filter(|p| p.kind == ProblemKind::Invalid) {
            let Some(key) = &problem.object else { continue };
            if docs.iter().any(|d| &d.key == key) {
                continue;
            }
            if let Some(old) = state.docs.iter().find(|d| &d.key == key) {
                docs.push(old.clone());
            }
        }
        state.content_hash = hash;
        state.docs = docs;
        state.problems = problems;
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
}
