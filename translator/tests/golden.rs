//! Golden tests: `testdata/<feature>-<scenario>.in.yaml` -> `.status.yaml`, `.envoy.yaml` and,
//! when there are problems, `.problems.txt`. `UPDATE_GOLDEN=1` rewrites the outputs and deletes
//! stale ones; otherwise a mismatch fails with a diff.
//!
//! An input may set translation options in comment lines:
//! `# address-pool: 127.0.1.0/24`, `# default-address: 10.0.0.1`,
//! `# rejected: <ns>/<gateway>: <Envoy's message>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use portico_translator::{Feedback, Options, Rejection, Resources, status_documents, translate};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

fn options_from(text: &str) -> (Options, Feedback) {
    let mut options = Options::default();
    let mut feedback = Feedback::default();
    for line in text.lines().filter_map(|l| l.strip_prefix("# ")) {
        if let Some(pool) = line.strip_prefix("address-pool: ") {
            let (ip, len) = pool.trim().split_once('/').expect("address-pool A.B.C.D/N");
            options.address_pool =
                Some((ip.parse().expect("pool ip"), len.parse().expect("pool len")));
        } else if let Some(addr) = line.strip_prefix("default-address: ") {
            options.default_address = Some(addr.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("rejected: ") {
            let (fleet, message) = rest.split_once(": ").expect("rejected: ns/name: message");
            feedback
                .rejected
                .entry(fleet.to_string())
                .or_default()
                .push(Rejection {
                    type_url: portico_translator::render::LISTENER.into(),
                    resource_names: Vec::new(),
                    message: message.to_string(),
                });
        }
    }
    (options, feedback)
}

/// Renders every output of one input.
fn render(name: &str, text: &str) -> BTreeMap<&'static str, String> {
    let (resources, mut problems) = Resources::from_yaml(name, text);
    let (options, feedback) = options_from(text);
    let t = translate(&resources, &options, &feedback);
    problems.extend(t.problems.iter().cloned());
    problems.sort();
    problems.dedup();
    let mut out = BTreeMap::new();
    out.insert(
        "status.yaml",
        serde_yaml::to_string(&status_documents(&t.statuses)).unwrap(),
    );
    let fleets: serde_json::Map<String, serde_json::Value> = t
        .fleets
        .iter()
        .map(|(k, f)| (k.clone(), f.to_json_redacted()))
        .collect();
    out.insert("envoy.yaml", serde_yaml::to_string(&fleets).unwrap());
    if !problems.is_empty() {
        out.insert(
            "problems.txt",
            problems.iter().map(|p| format!("{p}\n")).collect(),
        );
    }
    out
}

/// A small line diff: the first differing region with a little context.
fn diff(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let first = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let mut out = format!("first difference at line {}\n", first + 1);
    let from = first.saturating_sub(3);
    for (i, line) in e.iter().enumerate().skip(from).take(12) {
        out.push_str(&format!("-{:5} {line}\n", i + 1));
    }
    for (i, line) in a.iter().enumerate().skip(from).take(12) {
        out.push_str(&format!("+{:5} {line}\n", i + 1));
    }
    out
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = testdata();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("testdata/")
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no golden inputs in {}", dir.display());
    let mut failures = Vec::new();
    let mut expected_files = std::collections::BTreeSet::new();
    for input in &inputs {
        let file = input.file_name().unwrap().to_string_lossy().to_string();
        let stem = file.trim_end_matches(".in.yaml").to_string();
        let text = std::fs::read_to_string(input).unwrap();
        assert!(
            text.starts_with('#'),
            "{file} must open with a comment stating its intent"
        );
        let outputs = render(&file, &text);
        for ext in ["status.yaml", "envoy.yaml", "problems.txt"] {
            let path = dir.join(format!("{stem}.{ext}"));
            match outputs.get(ext) {
                Some(actual) => {
                    expected_files.insert(path.clone());
                    if update {
                        std::fs::write(&path, actual).unwrap();
                        continue;
                    }
                    let expected = std::fs::read_to_string(&path).unwrap_or_default();
                    if &expected != actual {
                        failures.push(format!("{}:\n{}", path.display(), diff(&expected, actual)));
                    }
                }
                None if path.exists() => {
                    if update {
                        std::fs::remove_file(&path).unwrap();
                    } else {
                        failures.push(format!(
                            "{} is stale (no such output any more)",
                            path.display()
                        ));
                    }
                }
                None => {}
            }
        }
    }
    // Outputs whose input is gone.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let is_output = ["status.yaml", "envoy.yaml", "problems.txt"]
            .iter()
            .any(|e| name.ends_with(&format!(".{e}")));
        if is_output && !expected_files.contains(&path) {
            if update {
                std::fs::remove_file(&path).unwrap();
            } else {
                failures.push(format!("{} has no input", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 rewrites):\n{}",
        failures.join("\n")
    );
}
