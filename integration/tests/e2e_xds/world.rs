//! One Gateway (`e2e/edge`) served by Portico from a temporary directory, two echo backends,
//! one Envoy of that fleet, and the checks the tests share: requests through Envoy, Portico's
//! proxy-status and live status.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use portico_integration::echo::{EchoConfig, EchoHandle, spawn};
use portico_integration::harness::http::{HttpRequest, HttpResponse, send};
use portico_integration::harness::{ConfigDir, eventually};
use serde_json::Value;

use super::procs::{Proxy, Server, free_port_on, unique_loopback};

pub const NS: &str = "e2e";
pub const FLEET: &str = "e2e/edge";
pub const HOST: &str = "app.example.com";
/// Covers Portico's debounce, translation, the push and Envoy applying it.
pub const CONVERGE: Duration = Duration::from_secs(20);

/// The shared Service + EndpointSlice fixture, in this suite's namespace.
pub fn service_yaml(name: &str, addr: SocketAddr) -> String {
    portico_integration::harness::fixtures::service_yaml(NS, name, addr)
}
/// Covers Envoy's reconnect backoff (up to a few seconds) after Portico comes back.
pub const RECONNECT: Duration = Duration::from_secs(45);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub const CDS: &str = "CDS";
pub const EDS: &str = "EDS";
pub const LDS: &str = "LDS";
pub const RDS: &str = "RDS";

/// Config directory, backends, Portico and one Envoy of [`FLEET`].
pub struct World {
    pub dir: ConfigDir,
    pub port: u16,
    pub server: Server,
    pub envoy: Proxy,
    pub delta: bool,
    _backends: [EchoHandle; 2],
}

impl World {
    /// Gateway, both Services and `route-a` (`/a` -> app-v1); Envoy serving `/a`.
    pub async fn start(delta: bool) -> anyhow::Result<Self> {
        let v1 = spawn(EchoConfig::new("app-v1-0", NS)).await?;
        let v2 = spawn(EchoConfig::new("app-v2-0", NS)).await?;
        let ip = unique_loopback();
        let port = free_port_on(ip)?;
        let dir = ConfigDir::new()?;
        dir.write("gateway.yaml", &gateway_yaml("edge", ip, port))?;
        dir.write(
            "services.yaml",
            &format!(
                "{}---\n{}",
                service_yaml("app-v1", v1.addr()),
                service_yaml("app-v2", v2.addr())
            ),
        )?;
        dir.write(
            "route-a.yaml",
            &route_yaml("route-a", "PathPrefix", "/a", "app-v1"),
        )?;
        let server = Server::start(ip, dir.path()).await?;
        let envoy = Proxy::start(server.xds, FLEET, delta).await?;
        let world = Self {
            dir,
            port,
            server,
            envoy,
            delta,
            _backends: [v1, v2],
        };
        world.until_served_by("/a", "app-v1-0").await?;
        world.until_synced().await?;
        crate::checks::check_variant(&world).await?;
        Ok(world)
    }

    pub fn variant(&self) -> &'static str {
        if self.delta { "delta-ads" } else { "sotw-ads" }
    }

    async fn addr(&self) -> anyhow::Result<SocketAddr> {
        self.envoy.address_for_port(self.port).await
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<HttpResponse> {
        let req = HttpRequest::get(path).host(HOST);
        send(self.addr().await?, &req, REQUEST_TIMEOUT).await
    }

    /// Ok when `path` is answered by the echo pod `pod` right now.
    pub async fn served_by(&self, path: &str, pod: &str) -> anyhow::Result<()> {
        self.get(path).await?.served_by(path, pod).map(drop)
    }

    pub async fn until_served_by(&self, path: &str, pod: &str) -> anyhow::Result<()> {
        eventually(CONVERGE, || self.served_by(path, pod))
            .await
            .with_context(|| self.logs())
    }

    /// Every request of `routes` keeps being answered by its pod for `window`. There is no
    /// signal for "nothing changed", so this watches a window longer than Portico's debounce.
    pub async fn keeps_serving(
        &self,
        routes: &[(&str, &str)],
        window: Duration,
    ) -> anyhow::Result<u32> {
        let start = Instant::now();
        let mut ok = 0;
        while start.elapsed() < window {
            for (path, pod) in routes {
                self.served_by(path, pod)
                    .await
                    .with_context(|| format!("after {ok} good requests; {}", self.logs()))?;
                ok += 1;
            }
        }
        Ok(ok)
    }

    /// This Envoy's entry in Portico's proxy-status.
    pub async fn node(&self) -> anyhow::Result<Value> {
        self.server.proxy_status(&self.envoy.node_id).await
    }

    /// Waits until Portico sees this Envoy SYNCED on CDS, EDS, LDS and RDS.
    pub async fn until_synced(&self) -> anyhow::Result<Value> {
        eventually(CONVERGE, || async {
            let node = self.node().await?;
            for t in [CDS, EDS, LDS, RDS] {
                let state = &node["types"][t]["state"];
                ensure!(state == "SYNCED", "{t} is {state}: {node}");
            }
            Ok(node)
        })
        .await
        .with_context(|| self.logs())
    }

    /// Gateway `e2e/<name>`'s condition `type_` from Portico's live `/status`.
    pub async fn gateway_condition(&self, name: &str, type_: &str) -> anyhow::Result<Value> {
        let status: Value =
            serde_json::from_str(&self.server.admin_get("/status?format=json").await?)?;
        let gateway = status["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| {
                o["kind"] == "Gateway"
                    && o["metadata"]["namespace"] == NS
                    && o["metadata"]["name"] == name
            })
            .with_context(|| format!("no Gateway {NS}/{name} in /status"))?;
        gateway["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == type_)
            .cloned()
            .with_context(|| format!("Gateway {NS}/{name} has no {type_} condition: {gateway}"))
    }

    /// Log tails for a failure message, led by a diagnosis when the known startup bug struck.
    pub fn logs(&self) -> String {
        let log = self.server.log_text();
        let early = log
            .split_once("first config published")
            .is_some_and(|(before, _)| before.lines().any(|l| l.contains(" push ")));
        let hint = if early {
            "NOTE: this Portico pushed to Envoy before its first config was published, i.e. an \
             empty config (the bug restart::no_empty_config_while_starting pins down)\n"
        } else {
            ""
        };
        format!(
            "{hint}portico log:\n{}\nenvoy log:\n{}",
            self.server.log_tail(),
            self.envoy.log_tail()
        )
    }
}

/// GatewayClass, Namespace and a Gateway `e2e/<name>` with one HTTP listener on `ip:port`.
pub fn gateway_yaml(name: &str, ip: IpAddr, port: u16) -> String {
    portico_integration::harness::fixtures::gateway_yaml(NS, name, Some(ip), port)
}

/// An HTTPRoute on Gateway `edge` for [`HOST`]: one rule, `match_type` `path` -> `backend`.
pub fn route_yaml(name: &str, match_type: &str, path: &str, backend: &str) -> String {
    route_on("edge", name, match_type, path, backend)
}

/// Like [`route_yaml`], attached to Gateway `e2e/<gateway>`.
pub fn route_on(gateway: &str, name: &str, match_type: &str, path: &str, backend: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {NS}
spec:
  parentRefs:
    - name: {gateway}
  hostnames: ["{HOST}"]
  rules:
    - matches:
        - path:
            type: {match_type}
            value: '{path}'
      backendRefs:
        - name: {backend}
          port: 8080
"#
    )
}
