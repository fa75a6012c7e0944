//! Replaying run-time steps under a running `portico serve`: the runner's config directory is
//! edited as the API server would store the change (metadata.generation bumped when the spec
//! changes), then the live `/status?format=json` is polled until the step's status holds.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::harness::http::{HttpRequest, send};
use crate::harness::{ConfigDir, Portico, eventually};

use super::applied::{as_created, unix_now};
use super::manifests::{kind, name, to_yaml};
use super::status::check_all;
use super::steps::{Change, Step};

/// The test's objects as last written: `40-test.yaml` (the manifests) and `60-created.yaml`
/// (what steps created).
pub struct Applied {
    pub test: Vec<Value>,
    pub created: Vec<Value>,
}

const TEST_FILE: &str = "40-test.yaml";
const CREATED_FILE: &str = "60-created.yaml";

/// Status Portico serves right now (a `kind: List`).
pub async fn live_status(portico: &Portico) -> anyhow::Result<Value> {
    let request = HttpRequest::get("/status?format=json");
    let response = send(portico.admin, &request, Duration::from_secs(5)).await?;
    if response.status != 200 {
        bail!("/status answered {}: {}", response.status, response.text());
    }
    serde_json::from_slice(&response.body).context("parsing /status?format=json")
}

/// Runs `steps` in order; stops at the first step whose status never settles. Returns one
/// failure line (or none).
pub async fn run_steps(
    steps: &[Step],
    applied: &mut Applied,
    dir: &ConfigDir,
    portico: &Portico,
    deadline: Duration,
) -> Vec<String> {
    for (index, step) in steps.iter().enumerate() {
        let label = format!(
            "run-time step {}/{} ({})",
            index + 1,
            steps.len(),
            step.label
        );
        let outcome = async {
            let generation = apply(&step.change, applied)?;
            write(applied, dir)?;
            eventually(deadline, || check_step(step, generation.as_ref(), portico)).await
        }
        .await;
        if let Err(err) = outcome {
            return vec![format!("{label}: {}", root_message(&err))];
        }
    }
    Vec::new()
}

/// The last error's message without the `eventually` wrapper noise.
fn root_message(err: &anyhow::Error) -> String {
    let chain: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    chain.join(": ")
}

/// metadata.namespace, "" for cluster-scoped objects (as `/status` and the steps spell them).
fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// `(kind, namespace, name, generation)` of a patched object, so the check knows Portico has
/// read the change.
type Generation = (String, String, String, i64);

fn apply(change: &Change, applied: &mut Applied) -> anyhow::Result<Option<Generation>> {
    let matches =
        |d: &Value, k: &str, ns: &str, n: &str| kind(d) == k && namespace(d) == ns && name(d) == n;
    match change {
        Change::Patch {
            kind: k,
            namespace: ns,
            name: n,
            edit,
        } => {
            let object = applied
                .test
                .iter_mut()
                .chain(applied.created.iter_mut())
                .find(|d| matches(d, k, ns, n))
                .with_context(|| format!("no {k} {ns}/{n} to patch"))?;
            let before = object["spec"].clone();
            edit(object);
            // The API server bumps metadata.generation on spec changes only. Objects without
            // a spec (ConfigMaps) have no generation to wait for: the step's conditions say
            // when Portico has read them.
            if object["spec"] == before {
                return Ok(None);
            }
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
            Ok(Some((
                k.to_string(),
                ns.to_string(),
                n.to_string(),
                generation,
            )))
        }
        Change::Create(object) => {
            applied
                .created
                .extend(as_created(std::slice::from_ref(object), unix_now()));
            Ok(None)
        }
        Change::Delete {
            kind: k,
            namespace: ns,
            name: n,
        } => {
            let count = applied.test.len() + applied.created.len();
            applied.test.retain(|d| !matches(d, k, ns, n));
            applied.created.retain(|d| !matches(d, k, ns, n));
            if applied.test.len() + applied.created.len() == count {
                bail!("no {k} {ns}/{n} to delete");
            }
            Ok(None)
        }
    }
}

/// Writes the test's objects; an emptied file is removed rather than left empty.
pub fn write(applied: &Applied, dir: &ConfigDir) -> anyhow::Result<()> {
    for (file, docs) in [(TEST_FILE, &applied.test), (CREATED_FILE, &applied.created)] {
        if docs.is_empty() {
            if dir.path().join(file).exists() {
                dir.remove(file)?;
            }
        } else {
            dir.write(file, &to_yaml(docs)?)?;
        }
    }
    Ok(())
}

async fn check_step(
    step: &Step,
    generation: Option<&Generation>,
    portico: &Portico,
) -> anyhow::Result<()> {
    let list = live_status(portico).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let find = |k: &str, ns: &str, n: &str| {
        items
            .iter()
            .find(|i| kind(i) == k && namespace(i) == ns && name(i) == n)
            .cloned()
    };
    if let Some((k, ns, n, want)) = generation {
        let object = find(k, ns, n).with_context(|| format!("{k} {ns}/{n} not in /status"))?;
        let got = object["metadata"]["generation"].as_i64().unwrap_or(1);
        if got != *want {
            bail!("{k} {ns}/{n} is at generation {got} in /status, want {want}");
        }
    }
    let report = check_all(&list, &step.expect);
    let mut problems = report.mismatches;
    problems.extend(report.generation);
    if let Some((gateway, want)) = &step.addresses {
        let (ns, n) = gateway.split_once('/').unwrap_or(("", gateway));
        let object =
            find("Gateway", ns, n).with_context(|| format!("Gateway {gateway} not in /status"))?;
        if let Some(problem) = exact_addresses(&object, want) {
            problems.push(format!("Gateway {gateway}: {problem}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("; "))
    }
}

/// status.addresses must be exactly `want`, each an IPAddress.
pub fn exact_addresses(gateway: &Value, want: &[String]) -> Option<String> {
    let got: Vec<(String, String)> = gateway["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let type_ = a["type"].as_str().unwrap_or("IPAddress").to_string();
            (type_, a["value"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let wanted: Vec<(String, String)> = want
        .iter()
        .map(|v| ("IPAddress".to_string(), v.clone()))
        .collect();
    (got != wanted).then(|| format!("status.addresses {got:?}, want exactly {wanted:?}"))
}

/// Upstream's GatewayAndRoutesMustBeAccepted waits for an address on each Gateway it sends
/// traffic through; `None` when every one of `gateways` (ns/name) has one.
pub fn missing_addresses(list: &Value, gateways: &[String]) -> Option<String> {
    let items = list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let missing: Vec<&str> = gateways
        .iter()
        .filter(|gw| {
            let (ns, n) = gw.split_once('/').unwrap_or(("", gw.as_str()));
            !items.iter().any(|i| {
                kind(i) == "Gateway"
                    && namespace(i) == ns
                    && name(i) == n
                    && i["status"]["addresses"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|x| x["value"].as_str().is_some_and(|v| !v.is_empty()))
                    })
            })
        })
        .map(String::as_str)
        .collect();
    (!missing.is_empty()).then(|| format!("no address assigned in status.addresses of {missing:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_bumps_generation_only_on_spec_changes() {
        let mut applied = Applied {
            test: vec![
                json!({"kind": "Gateway", "metadata": {"name": "gw", "namespace": "ns", "generation": 1}, "spec": {"a": 1}}),
            ],
            created: Vec::new(),
        };
        let patch = |edit: fn(&mut Value)| Change::Patch {
            kind: "Gateway",
            namespace: "ns",
            name: "gw",
            edit: Box::new(edit),
        };
        let bumped = apply(&patch(|o| o["spec"]["a"] = json!(2)), &mut applied).unwrap();
        assert_eq!(bumped.map(|g| g.3), Some(2));
        let same = apply(
            &patch(|o| o["metadata"]["labels"] = json!({"x": "y"})),
            &mut applied,
        );
        assert_eq!(same.unwrap(), None);
        assert_eq!(applied.test[0]["metadata"]["generation"], 2);
        let delete = Change::Delete {
            kind: "Gateway".into(),
            namespace: "ns".into(),
            name: "gw".into(),
        };
        apply(&delete, &mut applied).unwrap();
        assert!(applied.test.is_empty());
        assert!(apply(&delete, &mut applied).is_err());
    }

    #[test]
    fn addresses_checks() {
        let list = json!({"items": [
            {"kind": "Gateway", "metadata": {"name": "a", "namespace": "ns"}, "status": {"addresses": [{"type": "IPAddress", "value": "127.0.9.1"}]}},
            {"kind": "Gateway", "metadata": {"name": "b", "namespace": "ns"}, "status": {}},
        ]});
        assert_eq!(missing_addresses(&list, &["ns/a".into()]), None);
        assert!(
            missing_addresses(&list, &["ns/a".into(), "ns/b".into()])
                .unwrap()
                .contains("ns/b")
        );
        let a = &list["items"][0];
        assert_eq!(exact_addresses(a, &["127.0.9.1".into()]), None);
        assert!(exact_addresses(a, &["127.0.9.2".into()]).is_some());
    }
}
