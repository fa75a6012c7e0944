//! End to end with the file source: `portico serve` on a temporary directory, a real Envoy
//! bootstrapped by `portico bootstrap`, echo backends, and edits to the directory while
//! traffic flows. Requests always go through Envoy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use portico_integration::echo::{EchoConfig, EchoHandle, EchoedRequest, spawn};
use portico_integration::harness::fixtures;
use portico_integration::harness::http::{HttpRequest, HttpResponse, send};
use portico_integration::harness::{
    ConfigDir, Envoy, EnvoyOptions, Portico, PorticoOptions, eventually, free_port,
};

const NS: &str = "e2e";
const GATEWAY: &str = "e2e/edge";
/// Generous: covers Portico's debounce, translation and Envoy applying the update.
const CONVERGE: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A config directory with a Gateway, two Services backed by echo servers, Portico and Envoy.
struct World {
    dir: ConfigDir,
    port: u16,
    v1: EchoHandle,
    v2: EchoHandle,
    envoy: Envoy,
    portico: Portico,
}

impl World {
    async fn start(delta: bool) -> anyhow::Result<Self> {
        let v1 = spawn(EchoConfig::new("app-v1-0", NS)).await?;
        let v2 = spawn(EchoConfig::new("app-v2-0", NS)).await?;
        let port = free_port();
        let dir = ConfigDir::new()?;
        dir.write(
            "gateway.yaml",
            &fixtures::gateway_yaml(NS, "edge", None, port),
        )?;
        dir.write(
            "services.yaml",
            &format!(
                "{}---\n{}",
                fixtures::service_yaml(NS, "app-v1", v1.addr()),
                fixtures::service_yaml(NS, "app-v2", v2.addr())
            ),
        )?;
        dir.write(
            "route-a.yaml",
            &route_yaml("route-a", "/a", &[("app-v1", 1)]),
        )?;
        let portico = Portico::start(dir.path(), PorticoOptions::default()).await?;
        let envoy = Envoy::start(
            &portico,
            GATEWAY,
            EnvoyOptions {
                delta,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            dir,
            port,
            v1,
            v2,
            envoy,
            portico,
        })
    }

    async fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.envoy.address_for_port(self.port).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        send(
            self.addr().await?,
            &HttpRequest::get(path).host("app.example.com"),
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// Waits until `path` is answered by the echo pod `pod`.
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

    /// Asserts that both routes keep answering for a while after a bad edit (there is no
    /// signal for "Portico looked at the file and kept the old config", so we watch a window
    /// several times longer than the debounce).
    async fn still_serving(&self, routes: &[(&str, &str)]) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            for (path, pod) in routes {
                let response = self.get(path).await?;
                let echo = response
                    .echo()
                    .with_context(|| format!("{path} answered {}", response.status))?;
                ensure!(echo.pod == *pod, "{path} answered by {}", echo.pod);
            }
        }
        Ok(())
    }

    fn logs(&self) -> String {
        format!(
            "portico log:\n{}\nenvoy log:\n{}",
            self.portico.log_tail(),
            self.envoy.log_tail()
        )
    }
}

fn route_yaml(name: &str, prefix: &str, backends: &[(&str, u32)]) -> String {
    let refs: String = backends
        .iter()
        .map(|(svc, weight)| {
            format!("        - name: {svc}\n          port: 8080\n          weight: {weight}\n")
        })
        .collect();
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
{refs}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_changes_reach_envoy_without_restart() -> anyhow::Result<()> {
    let mut world = World::start(false).await?;

    // The initial route reaches the right backend, which sees the request unchanged.
    let echo = world.until_served_by("/a/x", "app-v1-0").await?;
    assert_eq!((echo.namespace.as_str(), echo.path.as_str()), (NS, "/a/x"));
    assert_eq!(echo.host, "app.example.com");
    assert!(world.v1.saw_request_to("/a/x"));

    // A new route file is served with no restart.
    world.dir.write(
        "route-b.yaml",
        &route_yaml("route-b", "/b", &[("app-v2", 1)]),
    )?;
    world.until_served_by("/b", "app-v2-0").await?;
    assert!(world.v2.saw_request_to("/b"));
    let routes = [("/a", "app-v1-0"), ("/b", "app-v2-0")];

    // A YAML syntax error leaves the old routes serving.
    world.dir.write(
        "broken.yaml",
        "kind: HTTPRoute\nmetadata: {name: [unclosed\n",
    )?;
    world.still_serving(&routes).await?;
    world.dir.remove("broken.yaml")?;

    // So does an object with an invalid field.
    let invalid =
        route_yaml("route-bad", "/bad", &[("app-v1", 1)]).replace("type: PathPrefix", "type: 42");
    world.dir.write(
        "invalid.yaml",
        &invalid.replace("port: 8080", "port: not-a-port"),
    )?;
    world.still_serving(&routes).await?;
    world.dir.remove("invalid.yaml")?;

    // Removing a route makes it 404 while the other stays.
    world.dir.remove("route-a.yaml")?;
    world.until_status("/a", 404).await?;
    world.until_served_by("/b", "app-v2-0").await?;
    assert!(world.portico.is_running(), "portico died: {}", world.logs());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_backends_split_roughly_as_configured() -> anyhow::Result<()> {
    let world = World::start(false).await?;
    world.dir.write(
        "route-w.yaml",
        &route_yaml("route-w", "/w", &[("app-v1", 80), ("app-v2", 20)]),
    )?;
    // Both backends must appear before counting, or we would count a half-applied config.
    eventually(CONVERGE, || async {
        let mut seen = HashMap::new();
        for _ in 0..40 {
            if let Some(echo) = world.get("/w").await?.echo() {
                *seen.entry(echo.pod).or_insert(0) += 1;
            }
        }
        ensure!(seen.len() == 2, "only {seen:?} answered");
        Ok(())
    })
    .await
    .with_context(|| world.logs())?;
    let mut v1 = 0;
    let total = 200;
    for _ in 0..total {
        let echo = world.get("/w").await?.echo().context("no echo")?;
        if echo.pod == "app-v1-0" {
            v1 += 1;
        }
    }
    // 80% of 200 has a standard deviation under 6 requests; 20 points is a very wide band.
    let share = v1 * 100 / total;
    if !(60..=95).contains(&share) {
        bail!("app-v1 got {share}% of {total} requests, configured 80%");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_ads_envoy_follows_changes_too() -> anyhow::Result<()> {
    let world = World::start(true).await?;
    world.until_served_by("/a", "app-v1-0").await?;
    world.dir.write(
        "route-b.yaml",
        &route_yaml("route-b", "/b", &[("app-v2", 1)]),
    )?;
    world.until_served_by("/b", "app-v2-0").await?;
    world.dir.remove("route-b.yaml")?;
    world.until_status("/b", 404).await?;
    world.until_served_by("/a", "app-v1-0").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portico_backend_kind_routes_to_static_endpoints() -> anyhow::Result<()> {
    let world = World::start(false).await?;
    let extra = spawn(EchoConfig::new("static-0", NS)).await?;
    let backend = format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: Backend
metadata:
  name: static
  namespace: {NS}
spec:
  endpoints:
    - ip: "{ip}"
      port: {port}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: route-static
  namespace: {NS}
spec:
  parentRefs:
    - name: edge
  rules:
    - matches:
        - path: {{type: PathPrefix, value: /static}}
      backendRefs:
        - group: portico.dev
          kind: Backend
          name: static
          port: {port}
"#,
        ip = extra.addr().ip(),
        port = extra.addr().port()
    );
    world.dir.write("static.yaml", &backend)?;
    world.until_served_by("/static", "static-0").await?;
    Ok(())
}
