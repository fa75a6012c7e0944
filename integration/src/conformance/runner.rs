//! Runs conformance cases: one config directory, echo pods, `portico status` check and (for
//! cases with traffic) `portico serve` plus one Envoy per Gateway, per case.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;

use crate::harness::{
    ConfigDir, Envoy, EnvoyOptions, Portico, PorticoOptions, eventually, portico_cli,
    workspace_root,
};

use super::applied::{as_created, runtime_objects, unix_now};
use super::backends::Backends;
use super::case::{Case, load_cases};
use super::certs::SetupObjects;
use super::manifests::USABLE_ADDRESS;
use super::manifests::{gateway_class, kind, read_documents, to_yaml};
use super::pool::PoolLease;
use super::runtime::{self, Applied, live_status, missing_addresses};
use super::skip::skip_reason;
use super::status::{StatusReport, check_all};
use super::steps::{StepInputs, steps_for};
use super::traffic::TrafficContext;

/// What to run, mostly from the environment (see integration/README.md).
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The `conformance/` folder holding `base/` and `cases/`.
    pub dir: PathBuf,
    /// Only these test names (`PORTICO_CONFORMANCE_ONLY=A,B`).
    pub only: Option<Vec<String>>,
    /// Cases run at once (`PORTICO_CONFORMANCE_PARALLEL`, default 2).
    pub parallel: usize,
    /// Run skip-listed cases too (`PORTICO_CONFORMANCE_NO_SKIP=1`).
    pub no_skip: bool,
    /// How long one traffic case may take to become consistently right.
    pub case_deadline: Duration,
    /// Print Portico/Envoy log tails of failing tests (`PORTICO_CONFORMANCE_VERBOSE=1`).
    pub verbose: bool,
}

impl RunnerConfig {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let dir = var("PORTICO_CONFORMANCE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("../shared/conformance"));
        Self {
            dir,
            only: var("PORTICO_CONFORMANCE_ONLY").map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }),
            parallel: var("PORTICO_CONFORMANCE_PARALLEL")
                .and_then(|v| v.parse().ok())
                .unwrap_or(2)
                .max(1),
            no_skip: var("PORTICO_CONFORMANCE_NO_SKIP").is_some_and(|v| v != "0"),
            case_deadline: Duration::from_secs(
                var("PORTICO_CONFORMANCE_CASE_TIMEOUT")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10),
            ),
            verbose: var("PORTICO_CONFORMANCE_VERBOSE").is_some_and(|v| v != "0"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub name: String,
    pub outcome: Outcome,
    pub elapsed: Duration,
}

/// Inputs shared by every case of a run.
struct Shared {
    base: Vec<Value>,
    setup: SetupObjects,
    config: RunnerConfig,
}

/// Runs the selected cases and returns their results in name order.
pub async fn run_all(config: RunnerConfig) -> anyhow::Result<Vec<CaseResult>> {
    let mut cases = load_cases(&config.dir.join("cases"))?;
    if let Some(only) = &config.only {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|n| !cases.iter().any(|c| &c.name == *n))
            .collect();
        anyhow::ensure!(
            unknown.is_empty(),
            "PORTICO_CONFORMANCE_ONLY names unknown tests {unknown:?}"
        );
        cases.retain(|c| only.contains(&c.name));
    }
    let base = read_documents(&config.dir.join("base/manifests.yaml"))?;
    let certs_dir = tempfile::Builder::new()
        .prefix("portico-conformance-certs-")
        .tempdir()?;
    let setup = super::certs::setup_objects(certs_dir.path()).unwrap_or_else(|err| {
        progress(&format!(
            "warning: no setup-time TLS objects ({err:#}); HTTPS listeners will not resolve"
        ));
        SetupObjects::default()
    });
    let parallel = config.parallel;
    let shared = Shared {
        base,
        setup,
        config,
    };
    let mut results: Vec<CaseResult> = futures::stream::iter(cases.iter())
        .map(|case| run_case(case, &shared))
        .buffer_unordered(parallel)
        .collect()
        .await;
    results.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(results)
}

async fn run_case(case: &Case, shared: &Shared) -> CaseResult {
    let start = Instant::now();
    let outcome = match skip_reason(case).filter(|_| !shared.config.no_skip) {
        Some(reason) => Outcome::Skip(reason),
        None => match run_checks(case, shared).await {
            Ok(failures) if failures.is_empty() => Outcome::Pass,
            Ok(failures) => Outcome::Fail(failures.join("; ")),
            Err(err) => Outcome::Fail(format!("{err:#}")),
        },
    };
    let result = CaseResult {
        name: case.name.clone(),
        outcome,
        elapsed: start.elapsed(),
    };
    progress(&table_row(&result));
    result
}

/// Every failed check of one test.
async fn run_checks(case: &Case, shared: &Shared) -> anyhow::Result<Vec<String>> {
    let case_docs = match case.manifests_path() {
        Some(path) => read_documents(&path)?,
        None => Vec::new(),
    };
    let mut docs = shared.base.clone();
    docs.extend(case_docs.iter().cloned());
    let backends = Backends::start(&docs, &shared.setup).await?;
    let websocket = case
        .features
        .iter()
        .any(|f| f == "HTTPRouteBackendProtocolWebSocket");
    // Cases with traffic or run-time steps need `portico serve` and a leased address pool;
    // the pool's addresses are the usable static addresses of this case.
    let has_steps = !steps_for(case, &case_docs, &StepInputs::default()).is_empty();
    let lease = (has_steps || !case.cases.is_empty() || websocket)
        .then(PoolLease::acquire)
        .transpose()?;
    let inputs = StepInputs {
        usable_address: lease.as_ref().map_or(USABLE_ADDRESS.to_string(), |l| {
            format!("127.0.{}.250", l.octet)
        }),
        checks_ca_pem: shared
            .setup
            .ca_config_map(INFRA, "tls-checks-ca-certificate")
            .cloned()
            .unwrap_or_default(),
    };
    let steps = steps_for(case, &case_docs, &inputs);
    let case_docs = with_usable_address(&case_docs, &inputs.usable_address);
    let mut dir = ConfigDir::new()?;
    // Deployments stay out of Portico's input: the echo servers stand in for them. What the
    // runner writes looks as if applied to a cluster: every object has a generation and a
    // creationTimestamp, and objects the case creates at run time are a second younger.
    let keep = |d: &Value| kind(d) != "Deployment";
    let created = unix_now();
    let applied_docs = |docs: Vec<Value>, at: u64| -> Vec<Value> {
        as_created(&docs.into_iter().filter(keep).collect::<Vec<_>>(), at)
    };
    let write = |name: &str, docs: Vec<Value>| -> anyhow::Result<()> {
        if !docs.is_empty() {
            dir.write(name, &to_yaml(&docs)?)?;
        }
        Ok(())
    };
    write(
        "00-gatewayclass.yaml",
        applied_docs(vec![gateway_class()], created),
    )?;
    write(
        "10-setup.yaml",
        applied_docs(shared.setup.objects(), created),
    )?;
    write("20-base.yaml", applied_docs(shared.base.clone(), created))?;
    write(
        "30-endpoints.yaml",
        applied_docs(backends.slices.clone(), created),
    )?;
    let mut applied = Applied {
        test: applied_docs(case_docs.clone(), created),
        created: Vec::new(),
    };
    runtime::write(&applied, &dir)?;
    write(
        "50-runtime.yaml",
        applied_docs(runtime_objects(&case.notes), created + 1),
    )?;

    let status = check_status(case, dir.path()).await?;
    // The generation summary goes last: it tends to repeat across tests, the rest is specific.
    let mut failures = status.mismatches;
    let Some(lease) = lease else {
        failures.extend(status.generation);
        return Ok(failures);
    };
    let options = PorticoOptions {
        address_pool: Some(lease.cidr()),
        ..Default::default()
    };
    let portico = Portico::start(dir.path(), options).await?;
    let gateways = case.traffic_gateways();
    if !gateways.is_empty() {
        let addressed = eventually(shared.config.case_deadline, || async {
            let list = live_status(&portico).await?;
            match missing_addresses(&list, &gateways) {
                Some(problem) => anyhow::bail!("{problem}"),
                None => Ok(()),
            }
        })
        .await;
        if let Err(err) = addressed {
            failures.push(format!("live /status: {err:#}"));
        }
    }
    let mut envoys = BTreeMap::new();
    for gateway in case.traffic_gateways() {
        let options = EnvoyOptions {
            node_id: Some(format!("{}.{}", case.name, gateway.replace('/', "."))),
            ..Default::default()
        };
        let envoy = Envoy::start(&portico, &gateway, options).await?;
        envoys.insert(gateway, envoy);
    }
    let traffic = TrafficContext {
        docs: &docs,
        envoys: &envoys,
        backends: &backends,
        default_gateway: (gateways.len() == 1).then(|| gateways[0].clone()),
        deadline: shared.config.case_deadline,
        trusted_cert_pem: shared.setup.client_trust_pem(),
        setup: &shared.setup,
        // The case format says HTTP/2 only in notes (HTTPRouteHTTPSListenerDetectMisdirectedRequests).
        http2_over_tls: case.notes.contains("HTTP/2 over TLS"),
        udp_dns: case.notes.contains("DNS query"),
    };
    for (index, traffic_case) in case.cases.iter().enumerate() {
        if let Err(err) = traffic.run(traffic_case).await {
            let request = &traffic_case.request;
            let host = request.host.as_deref().unwrap_or("");
            failures.push(format!(
                "case {}/{} ({} {} {host}{}): {err}",
                index + 1,
                case.cases.len(),
                request.protocol,
                request.method,
                request.path
            ));
            // One wrong answer says enough; the rest would each wait out the deadline.
            break;
        }
    }
    if websocket {
        for gateway in &gateways {
            let origin = format!("ws://gateway/{}", case.name);
            if let Err(err) = traffic.websocket(gateway, &origin).await {
                failures.push(format!("WebSocket via {gateway}: {err}"));
            }
        }
    }
    // Run-time steps come after the traffic checks, as upstream's do.
    failures.extend(
        runtime::run_steps(
            &steps,
            &mut applied,
            &dir,
            &portico,
            shared.config.case_deadline,
        )
        .await,
    );
    failures.extend(status.generation);
    if shared.config.verbose && !failures.is_empty() {
        dir.keep_on_drop();
        progress(&format!(
            "--- {}: config kept in {}",
            case.name,
            dir.path().display()
        ));
        progress(&format!(
            "--- {}: portico log ---\n{}",
            case.name,
            portico.log_tail()
        ));
        for (gateway, envoy) in &envoys {
            progress(&format!(
                "--- {}: envoy {gateway} log ---\n{}",
                case.name,
                envoy.log_tail()
            ));
        }
    }
    Ok(failures)
}

async fn check_status(case: &Case, dir: &Path) -> anyhow::Result<StatusReport> {
    if case.status.is_empty() {
        return Ok(StatusReport::default());
    }
    let dir_arg = dir.to_string_lossy();
    let out = portico_cli(&["status", &dir_arg, "-o", "json"]).await?;
    if out.code != Some(0) {
        let failure = format!(
            "portico status exited {:?}: {}",
            out.code,
            out.stderr.trim()
        );
        return Ok(StatusReport {
            mismatches: vec![failure],
            generation: None,
        });
    }
    let list: Value =
        serde_json::from_str(&out.stdout).context("parsing `portico status -o json`")?;
    Ok(check_all(&list, &case.status))
}

/// The namespace of upstream's shared infrastructure.
const INFRA: &str = "gateway-conformance-infra";

/// The case's manifests with the runner's usable static address replaced by `usable` (an
/// address of the leased pool, so Portico may bind it).
fn with_usable_address(docs: &[Value], usable: &str) -> Vec<Value> {
    let mut docs = docs.to_vec();
    for doc in docs.iter_mut().filter(|d| kind(d) == "Gateway") {
        for address in doc["spec"]["addresses"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if address["value"] == USABLE_ADDRESS {
                address["value"] = Value::from(usable);
            }
        }
    }
    docs
}

/// Writes to the process's stderr directly: the test harness captures `eprintln!`, and a
/// long run should show progress (and its table) even when it passes.
pub fn progress(text: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{text}");
}

fn table_row(result: &CaseResult) -> String {
    let (label, detail) = match &result.outcome {
        Outcome::Pass => ("PASS", String::new()),
        Outcome::Fail(reason) => ("FAIL", reason.clone()),
        Outcome::Skip(reason) => ("SKIP", reason.clone()),
    };
    format!(
        "{label:<5} {:<58} {:>6.1}s  {detail}",
        result.name,
        result.elapsed.as_secs_f64()
    )
}

/// The per-test table and the total line `conformance: N passed, N failed, N skipped`.
pub fn render_table(results: &[CaseResult], expected: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let (mut passed, mut failed, mut skipped, mut expected_failed) = (0, 0, 0, 0);
    for result in results {
        let _ = writeln!(out, "{}", table_row(result));
        match &result.outcome {
            Outcome::Pass => passed += 1,
            Outcome::Fail(_) => {
                failed += 1;
                if expected.contains_key(&result.name) {
                    expected_failed += 1;
                }
            }
            Outcome::Skip(_) => skipped += 1,
        }
    }
    if expected_failed > 0 {
        let _ = writeln!(
            out,
            "({expected_failed} of the failures are listed in conformance-expected-failures.txt)"
        );
    }
    let _ = writeln!(
        out,
        "conformance: {passed} passed, {failed} failed, {skipped} skipped"
    );
    out
}
