//! End to end with the Kubernetes source: `portico serve --kubernetes` against the in-process
//! fake API server (the real kube client, list/watch, status patches, Leases), a real Envoy
//! and echo backends. Objects are created, changed and deleted through the API server.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, ensure};
use portico_integration::echo::{EchoConfig, EchoHandle, EchoedRequest, spawn};
use portico_integration::fake_kube::FakeKube;
use portico_integration::harness::fixtures;
use portico_integration::harness::http::{HttpRequest, HttpResponse, send};
use portico_integration::harness::{
    Envoy, EnvoyOptions, Portico, PorticoOptions, eventually, free_port,
};
use serde_json::Value;

const NS: &str = "e2e";
const GATEWAY: &str = "e2e/edge";
const GW_API: &str = "gateway.networking.k8s.io/v1";
const CONTROLLER: &str = "portico.dev/gateway-controller";
const CONVERGE: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Short, so that a killed leader is replaced quickly.
const LEASE_SECONDS: u64 = 2;

/// The fake cluster with a Gateway, two Services backed by echo servers and one route.
struct Cluster {
    fake: FakeKube,
    kubeconfig: PathBuf,
    port: u16,
    _v1: EchoHandle,
    _v2: EchoHandle,
    /// An empty directory: the harness always passes --config-dir, which --kubernetes overrides.
    dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let fake = FakeKube::start().await?;
        let dir = tempfile::Builder::new().prefix("portico-kube-").tempdir()?;
        let kubeconfig = fake.write_kubeconfig(dir.path())?;
        let v1 = spawn(EchoConfig::new("app-v1-0", NS)).await?;
        let v2 = spawn(EchoConfig::new("app-v2-0", NS)).await?;
        let port = free_port();
        fake.apply_yaml(&gateway_yaml(port))?;
        fake.apply_yaml(&fixtures::service_yaml(NS, "app-v1", v1.addr()))?;
        fake.apply_yaml(&fixtures::service_yaml(NS, "app-v2", v2.addr()))?;
        fake.apply_yaml(&route_yaml("route-a", "/a", "app-v1"))?;
        let config_dir = dir.path().join("unused");
        std::fs::create_dir_all(&config_dir)?;
        Ok(Cluster {
            fake,
            kubeconfig,
            port,
            _v1: v1,
            _v2: v2,
            dir,
        })
    }

    async fn portico(&self, identity: &str) -> anyhow::Result<Portico> {
        self.portico_with(identity, LEASE_SECONDS, &[]).await
    }

    async fn portico_with(
        &self,
        identity: &str,
        lease_seconds: u64,
        extra: &[&str],
    ) -> anyhow::Result<Portico> {
        let lease_seconds = lease_seconds.to_string();
        let kubeconfig = self.kubeconfig.display().to_string();
        let mut args = vec![
            "--kubernetes",
            "--kubeconfig",
            &kubeconfig,
            "--leader-identity",
            identity,
            "--lease-namespace",
            "portico-system",
            "--lease-duration-seconds",
            &lease_seconds,
        ];
        args.extend(extra);
        let options = PorticoOptions {
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Portico::start(&self.dir.path().join("unused"), options).await
    }

    fn get(&self, kind: &str, name: &str) -> Value {
        let (api, ns) = match kind {
            "GatewayClass" => (GW_API, ""),
            "Lease" => ("coordination.k8s.io/v1", "portico-system"),
            _ => (GW_API, NS),
        };
        self.fake.get(api, kind, ns, name).unwrap_or(Value::Null)
    }

    fn leader(&self) -> Option<String> {
        self.get("Lease", "portico-leader")["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_string)
    }
}

/// One Portico replica with one Envoy.
struct World {
    cluster: Cluster,
    portico: Portico,
    envoy: Envoy,
}

impl World {
    async fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let cluster = Cluster::start().await?;
        let portico = cluster
            .portico_with("replica-a", LEASE_SECONDS, extra)
            .await?;
        let envoy = Envoy::start(&portico, GATEWAY, EnvoyOptions::default()).await?;
        Ok(World {
            cluster,
            portico,
            envoy,
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        let addr = self.envoy.address_for_port(self.cluster.port).await?;
        send(
            addr,
            &HttpRequest::get(path).host("app.example.com"),
            REQUEST_TIMEOUT,
        )
        .await
    }

    async fn until_served_by(&self, path: &str, pod: &str) -> anyhow::Result<EchoedRequest> {
        eventually(CONVERGE, || async {
            self.get(path).await?.served_by(path, pod)
        })
        .await
        .with_context(|| self.logs())
    }

    async fn until_status(&self, path: &str, status: u16) -> anyhow::Result<()> {
        eventually(CONVERGE, || async {
            self.get(path).await?.has_status(path, status)
        })
        .await
        .with_context(|| self.logs())
    }

    fn logs(&self) -> String {
        format!(
            "portico log:\n{}\nenvoy log:\n{}",
            self.portico.log_tail(),
            self.envoy.log_tail()
        )
    }
}

/// The condition `type_` of a condition list, if present.
fn condition<'a>(conditions: &'a Value, type_: &str) -> Option<&'a Value> {
    conditions.as_array()?.iter().find(|c| c["type"] == type_)
}

/// Waits until the object's status has condition `type_` True, observed at its generation.
async fn until_condition(
    cluster: &Cluster,
    kind: &str,
    name: &str,
    type_: &str,
) -> anyhow::Result<Value> {
    eventually(CONVERGE, || async {
        let object = cluster.get(kind, name);
        let conditions = match kind {
            "HTTPRoute" => {
                let parents = object["status"]["parents"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let ours = parents
                    .iter()
                    .find(|p| p["controllerName"] == CONTROLLER)
                    .cloned()
                    .unwrap_or_default();
                ours["conditions"].clone()
            }
            _ => object["status"]["conditions"].clone(),
        };
        let found = condition(&conditions, type_)
            .with_context(|| format!("{kind} {name} status: {}", object["status"]))?;
        ensure!(found["status"] == "True", "{kind} {name} {type_}: {found}");
        ensure!(
            found["observedGeneration"] == object["metadata"]["generation"],
            "{kind} {name}: observedGeneration {} but generation {}",
            found["observedGeneration"],
            object["metadata"]["generation"]
        );
        ensure!(
            found["lastTransitionTime"]
                .as_str()
                .is_some_and(|t| !t.starts_with("1970")),
            "{found}"
        );
        Ok(object)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_changes_reach_envoy_and_status_is_written() -> anyhow::Result<()> {
    let world = World::start(&[]).await?;
    let echo = world.until_served_by("/a/x", "app-v1-0").await?;
    assert_eq!(echo.path, "/a/x");

    // Status lands on the objects Portico owns, at their generation.
    until_condition(&world.cluster, "GatewayClass", "portico", "Accepted")
        .await
        .with_context(|| world.logs())?;
    until_condition(&world.cluster, "Gateway", "edge", "Programmed")
        .await
        .with_context(|| world.logs())?;
    until_condition(&world.cluster, "HTTPRoute", "route-a", "Accepted")
        .await
        .with_context(|| world.logs())?;
    let other_class = world.cluster.get("GatewayClass", "someone-else");
    assert!(
        other_class["status"].get("conditions").is_none(),
        "not ours: {other_class}"
    );

    // Created, changed and deleted through the API server.
    world
        .cluster
        .fake
        .apply_yaml(&route_yaml("route-b", "/b", "app-v2"))?;
    world.until_served_by("/b", "app-v2-0").await?;
    world
        .cluster
        .fake
        .apply_yaml(&route_yaml("route-a", "/a", "app-v2"))?;
    world.until_served_by("/a", "app-v2-0").await?;
    let route = until_condition(&world.cluster, "HTTPRoute", "route-a", "Accepted").await?;
    assert_eq!(route["metadata"]["generation"], 2);
    world
        .cluster
        .fake
        .delete(GW_API, "HTTPRoute", NS, "route-b")?;
    world.until_status("/b", 404).await?;

    // A malformed object is skipped with a warning; everything else keeps serving.
    let bad = route_yaml("route-bad", "/bad", "app-v1")
        .replace("hostnames: [\"app.example.com\"]", "hostnames: {no: list}");
    world.cluster.fake.apply_yaml(&bad)?;
    world
        .cluster
        .fake
        .apply_yaml(&route_yaml("route-c", "/c", "app-v1"))?;
    world.until_served_by("/c", "app-v1-0").await?;
    world.until_served_by("/a", "app-v2-0").await?;
    let problems = send(
        world.portico.admin,
        &HttpRequest::get("/debug/problems"),
        REQUEST_TIMEOUT,
    )
    .await?
    .text();
    assert!(problems.contains("route-bad"), "{problems}");

    // Status is written only when it changes: a change that leaves the Gateway's status as it
    // is does not write it again.
    let settled = eventually(CONVERGE, || async {
        let gw = world.cluster.get("Gateway", "edge");
        let attached = gw["status"]["listeners"][0]["attachedRoutes"].as_i64();
        ensure!(
            attached == Some(2),
            "attachedRoutes {attached:?}: {}",
            gw["status"]
        );
        Ok(gw["metadata"]["resourceVersion"].clone())
    })
    .await
    .with_context(|| world.logs())?;
    world
        .cluster
        .fake
        .apply_yaml(&route_yaml("route-c", "/c", "app-v2"))?;
    world.until_served_by("/c", "app-v2-0").await?;
    until_condition(&world.cluster, "HTTPRoute", "route-c", "Accepted").await?;
    assert_eq!(
        world.cluster.get("Gateway", "edge")["metadata"]["resourceVersion"],
        settled
    );

    // Other controllers' entries in a route's status.parents survive Portico's writes; when
    // the route leaves Portico's Gateway, only Portico's entry goes.
    let foreign = serde_json::json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "theirs"},
        "controllerName": "example.com/another-controller",
        "conditions": [],
    });
    let mut status = world.cluster.get("HTTPRoute", "route-c")["status"].clone();
    status["parents"]
        .as_array_mut()
        .context("no parents")?
        .push(foreign.clone());
    let fake = &world.cluster.fake;
    fake.set_status(GW_API, "HTTPRoute", NS, "route-c", status)?;
    fake.apply_yaml(&route_yaml("route-c", "/c", "app-v1").replace("name: edge", "name: theirs"))?;
    world.until_status("/c", 404).await?;
    eventually(CONVERGE, || async {
        let parents = world.cluster.get("HTTPRoute", "route-c")["status"]["parents"].clone();
        ensure!(parents == serde_json::json!([foreign]), "parents {parents}");
        Ok(())
    })
    .await
    .with_context(|| world.logs())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_watch_recovers_without_losing_an_update() -> anyhow::Result<()> {
    // Scoped to one namespace: namespaced kinds are watched there only.
    let world = World::start(&["--namespace", NS]).await?;
    world.until_served_by("/a", "app-v1-0").await?;
    let fake = &world.cluster.fake;

    // Cut every watch and keep them away while a route appears: the resumed watch replays it.
    fake.block_watches(true);
    fake.cut_watches();
    fake.apply_yaml(&route_yaml("route-b", "/b", "app-v2"))?;
    fake.block_watches(false);
    world.until_served_by("/b", "app-v2-0").await?;

    // Again, but with the history compacted: resuming gets 410 Gone and Portico re-lists.
    let lists_before = list_requests(fake);
    fake.block_watches(true);
    fake.cut_watches();
    fake.apply_yaml(&route_yaml("route-c", "/c", "app-v1"))?;
    fake.delete(GW_API, "HTTPRoute", NS, "route-b")?;
    fake.compact();
    fake.block_watches(false);
    world.until_served_by("/c", "app-v1-0").await?;
    world.until_status("/b", 404).await?;
    assert!(
        list_requests(fake) > lists_before,
        "no re-list after 410 Gone"
    );
    let requests = fake.requests();
    let cluster_wide = |plural: &str| {
        requests
            .iter()
            .any(|r| r.contains(&format!("/v1/{plural}?")))
    };
    assert!(
        !cluster_wide("httproutes") && !cluster_wide("services"),
        "watched outside {NS}"
    );
    assert!(
        cluster_wide("gatewayclasses") && cluster_wide("namespaces"),
        "cluster-scoped kinds"
    );
    world.until_served_by("/a", "app-v1-0").await?;
    Ok(())
}

fn list_requests(fake: &FakeKube) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/httproutes") && !r.contains("watch="))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_leader_and_hand_over() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let a = cluster.portico("replica-a").await?;
    let b = cluster.portico("replica-b").await?;
    let leader = eventually(CONVERGE, || async {
        cluster.leader().context("no leader yet")
    })
    .await?;
    assert!(leader == "replica-a" || leader == "replica-b", "{leader}");
    until_condition(&cluster, "Gateway", "edge", "Accepted").await?;

    // Both replicas serve xDS, with the same content-hash versions.
    let envoy_a = Envoy::start(&a, GATEWAY, EnvoyOptions::default()).await?;
    let envoy_b = Envoy::start(&b, GATEWAY, EnvoyOptions::default()).await?;
    eventually(CONVERGE, || async {
        let va = sent_versions(&a, &envoy_a.node_id).await?;
        let vb = sent_versions(&b, &envoy_b.node_id).await?;
        ensure!(
            va.len() >= 3 && va == vb,
            "replica-a sent {va:?}, replica-b sent {vb:?}"
        );
        Ok(())
    })
    .await?;
    drop((envoy_a, envoy_b));

    // The leader stops (killed, so it cannot release the Lease): the other takes over once
    // the Lease expires, and writes status from then on.
    let (stopped, survivor, successor) = if leader == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    drop(stopped);
    eventually(CONVERGE, || async {
        let holder = cluster.leader().unwrap_or_default();
        ensure!(holder == successor, "holder is still {holder:?}");
        Ok(())
    })
    .await
    .with_context(|| survivor.log_tail())?;
    cluster
        .fake
        .set_status(GW_API, "Gateway", NS, "edge", serde_json::json!({}))?;
    until_condition(&cluster, "Gateway", "edge", "Accepted")
        .await
        .with_context(|| survivor.log_tail())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_leader_releases_the_lease() -> anyhow::Result<()> {
    // A long Lease: the successor can only take over this soon if the leader released it.
    let cluster = Cluster::start().await?;
    let first = cluster.portico_with("replica-a", 60, &[]).await?;
    eventually(CONVERGE, || async {
        ensure!(
            cluster.leader().as_deref() == Some("replica-a"),
            "no leader yet"
        );
        Ok(())
    })
    .await?;
    let second = cluster.portico_with("replica-b", 60, &[]).await?;
    let kubeconfig = cluster.kubeconfig.display().to_string();
    let pid = pid_of(&kubeconfig, "replica-a").context("no pid for replica-a")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -TERM {pid} failed");
    eventually(CONVERGE, || async {
        let holder = cluster.leader().unwrap_or_default();
        ensure!(holder == "replica-b", "holder is {holder:?}");
        Ok(())
    })
    .await
    .with_context(|| {
        format!(
            "replica-a:\n{}\nreplica-b:\n{}",
            first.log_tail(),
            second.log_tail()
        )
    })?;
    assert!(
        first.log_tail().contains("released the leader Lease"),
        "{}",
        first.log_tail()
    );
    Ok(())
}

/// The pid of the `portico serve` using `kubeconfig` with leader identity `identity`.
fn pid_of(kubeconfig: &str, identity: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let has = |pair: [&str; 2]| args.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        if has(["--kubeconfig", kubeconfig]) && has(["--leader-identity", identity]) {
            return Some(pid);
        }
    }
    None
}

/// Type -> version that a replica last sent to `node`.
async fn sent_versions(portico: &Portico, node: &str) -> anyhow::Result<Vec<(String, String)>> {
    let response = send(
        portico.admin,
        &HttpRequest::get("/debug/proxy-status"),
        REQUEST_TIMEOUT,
    )
    .await?;
    let nodes: Value = serde_json::from_slice(&response.body)?;
    let entry = nodes
        .as_array()
        .and_then(|n| n.iter().find(|e| e["node"] == node))
        .context("node not connected")?;
    let mut out = Vec::new();
    for (type_, state) in entry["types"].as_object().into_iter().flatten() {
        if let Some(version) = state["sent_version"].as_str().filter(|v| !v.is_empty()) {
            out.push((type_.clone(), version.to_string()));
        }
    }
    Ok(out)
}

/// The shared Gateway fixture, plus a GatewayClass of another controller that Portico must
/// leave alone.
fn gateway_yaml(port: u16) -> String {
    format!(
        "{}---\n{OTHER_CLASS}",
        fixtures::gateway_yaml(NS, "edge", None, port)
    )
}

const OTHER_CLASS: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata:
  name: someone-else
spec:
  controllerName: example.com/another-controller
"#;

fn route_yaml(name: &str, prefix: &str, service: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {NS}
spec:
  parentRefs:
    - name: edge
  hostnames: ["app.example.com"]
  rules:
    - matches:
        - path:
            type: PathPrefix
            value: {prefix}
      backendRefs:
        - name: {service}
          port: 8080
"#
    )
}

/// deploy/example/envoy.yaml carries the output of `portico bootstrap`; it must not go stale.
#[tokio::test]
async fn the_example_envoy_bootstrap_is_current() -> anyhow::Result<()> {
    let path = portico_integration::harness::workspace_root().join("deploy/example/envoy.yaml");
    let text = std::fs::read_to_string(&path)?;
    let config_map = serde_yaml::Deserializer::from_str(&text)
        .map(serde::Deserialize::deserialize)
        .collect::<Result<Vec<Value>, _>>()?
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .context("no ConfigMap")?;
    let committed = config_map["data"]["envoy.yaml"]
        .as_str()
        .context("no envoy.yaml")?;
    let args = [
        "bootstrap",
        "--gateway",
        "default/example",
        "--xds-address",
        "portico.portico-system.svc.cluster.local:18000",
        "--node-id",
        "envoy",
    ];
    let out = portico_integration::harness::portico_cli(&args).await?;
    ensure!(
        out.code == Some(0),
        "portico bootstrap failed: {}",
        out.stderr
    );
    assert_eq!(
        committed,
        out.stdout,
        "{} is stale: regenerate its ConfigMap with `portico {}`",
        path.display(),
        args.join(" ")
    );
    Ok(())
}
