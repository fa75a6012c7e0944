//! Feeds every golden fleet to real Envoy in `--mode validate`, as a static bootstrap (RDS
//! inlined, EDS turned into static load assignments, SDS secrets made static), so that Envoy
//! itself checks the protos: regexes compile, enums and oneofs are valid, names resolve.
//! Skipped when no Envoy binary is found (`ENVOY` env var or `.venv/bin/envoy`).

mod common;

use std::path::{Path, PathBuf};

use portico_translator::{Feedback, Options, Resources, translate};
use serde_json::{Value, json};

fn envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    p.exists().then_some(p)
}

/// Replaces `rds` with the inline route configuration and drops ADS SDS sources.
fn inline(value: &mut Value, routes: &[Value]) {
    match value {
        Value::Object(map) => {
            if let Some(rds) = map.remove("rds") {
                let name = rds["route_config_name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let mut rc = routes
                    .iter()
                    .find(|r| r["name"] == name.as_str())
                    .cloned()
                    .unwrap_or(json!({"name": name}));
                rc.as_object_mut().unwrap().remove("@type");
                map.insert("route_config".into(), rc);
            }
            map.remove("sds_config");
            for v in map.values_mut() {
                inline(v, routes);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline(v, routes)),
        _ => {}
    }
}

fn bootstrap(fleet: &Value) -> Value {
    let routes = fleet["routes"].as_array().cloned().unwrap_or_default();
    let mut listeners = fleet["listeners"].clone();
    inline(&mut listeners, &routes);
    let endpoints = fleet["endpoints"].as_array().cloned().unwrap_or_default();
    let mut clusters = fleet["clusters"].clone();
    inline(&mut clusters, &routes);
    for c in clusters.as_array_mut().into_iter().flatten() {
        let m = c.as_object_mut().unwrap();
        if m.get("type") == Some(&json!("EDS")) {
            m.remove("eds_cluster_config");
            m.insert("type".into(), json!("STATIC"));
            let name = m["name"].clone();
            let mut cla = endpoints
                .iter()
                .find(|e| e["cluster_name"] == name)
                .cloned()
                .unwrap_or(json!({"cluster_name": name}));
            cla.as_object_mut().unwrap().remove("@type");
            m.insert("load_assignment".into(), cla);
        }
    }
    let mut secrets = fleet["secrets"].clone();
    for list in [&mut listeners, &mut clusters, &mut secrets] {
        for item in list.as_array_mut().into_iter().flatten() {
            item.as_object_mut().unwrap().remove("@type");
        }
    }
    json!({
        "node": {"id": "validate", "cluster": "validate"},
        "static_resources": {"listeners": listeners, "clusters": clusters, "secrets": secrets},
    })
}

/// Runs Envoy in validate mode on every non-empty fleet; returns failure descriptions.
fn validate_all(envoy: &Path, tmp: &Path, label: &str, resources: &Resources) -> Vec<String> {
    let mut failures = Vec::new();
    let t = translate(resources, &Options::default(), &Feedback::default());
    for (name, fleet) in &t.fleets {
        if fleet.listeners.is_empty() && fleet.clusters.is_empty() {
            continue;
        }
        // Short file names: Gateway names can be 253 characters long.
        let short: String = name.replace('/', "_").chars().take(60).collect();
        let config = tmp.join(format!("{label}-{short}.json"));
        std::fs::write(
            &config,
            serde_json::to_string_pretty(&bootstrap(&fleet.to_json())).unwrap(),
        )
        .unwrap();
        let out = std::process::Command::new(envoy)
            .args(["--mode", "validate", "--log-level", "error", "-c"])
            .arg(&config)
            .output()
            .expect("run envoy");
        if !out.status.success() {
            failures.push(format!(
                "{label} fleet {name} ({}):\n{}{}",
                config.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    failures
}

#[test]
fn envoy_accepts_golden_fleets() {
    let Some(envoy) = envoy() else {
        eprintln!("skipping: no Envoy binary");
        return;
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    inputs.sort();
    let tmp = std::env::temp_dir().join(format!("portico-validate-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for input in inputs {
        let file = input.file_name().unwrap().to_string_lossy().to_string();
        let (resources, _) = Resources::from_yaml(&file, &std::fs::read_to_string(&input).unwrap());
        failures.extend(validate_all(&envoy, &tmp, &file, &resources));
    }
    assert!(
        failures.is_empty(),
        "Envoy rejected:\n{}",
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// The same for the conformance cases' manifests (base + each case), which exercise far more
/// combinations than the goldens.
#[test]
fn envoy_accepts_conformance_fleets() {
    let Some(envoy) = envoy() else {
        eprintln!("skipping: no Envoy binary");
        return;
    };
    let dir = common::shared().join("cases");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: {} not found", dir.display());
        return;
    };
    let mut cases: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && !p.to_string_lossy().ends_with(".manifests.yaml")
        })
        .collect();
    cases.sort();
    let tmp = std::env::temp_dir().join(format!("portico-validate-conf-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut failures = Vec::new();
    for path in cases {
        let case: serde_json::Value =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = case["name"].as_str().unwrap_or_default().to_string();
        failures.extend(validate_all(&envoy, &tmp, &name, &common::load(&case)));
    }
    assert!(
        failures.is_empty(),
        "Envoy rejected:\n{}",
        failures.join("\n")
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
