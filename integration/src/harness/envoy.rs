//! A real Envoy, bootstrapped by `portico bootstrap`, as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::http::{HttpRequest, send};
use super::{Portico, envoy_binary, eventually, free_port, tail};

/// How long Envoy may take to go LIVE (its initial xDS fetch timeout is 15 s).
const LIVE_DEADLINE: Duration = Duration::from_secs(40);

#[derive(Clone, Debug, Default)]
pub struct EnvoyOptions {
    /// Incremental (delta) ADS.
    pub delta: bool,
    /// Node id; default `<ns>.<name>.<admin port>`.
    pub node_id: Option<String>,
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    pub admin: SocketAddr,
    pub gateway: String,
    pub node_id: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts an Envoy of fleet `gateway` (NS/NAME) against `portico`, and waits for LIVE.
    pub async fn start(
        portico: &Portico,
        gateway: &str,
        options: EnvoyOptions,
    ) -> anyhow::Result<Self> {
        let bin = envoy_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("portico-envoy-")
            .tempdir()?;
        let admin_port = free_port();
        let node_id = options
            .node_id
            .unwrap_or_else(|| format!("{}.{admin_port}", gateway.replace('/', ".")));
        let bootstrap = portico
            .bootstrap(gateway, &node_id, admin_port, options.delta)
            .await?;
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, bootstrap)?;
        let log = dir.path().join("envoy.log");
        let level = std::env::var("PORTICO_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "warn".into());
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            // No hot restart: no shared memory, so any number of Envoys can run side by side.
            .arg("--disable-hot-restart")
            .args(["--log-level", &level, "--concurrency", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log)?,
            ))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut envoy = Self {
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            gateway: gateway.to_string(),
            node_id,
            child,
            log,
            _dir: dir,
        };
        envoy.wait_live().await?;
        Ok(envoy)
    }

    async fn wait_live(&mut self) -> anyhow::Result<()> {
        let admin = self.admin;
        let live = eventually(LIVE_DEADLINE, || async move {
            let response = send(admin, &HttpRequest::get("/ready"), Duration::from_secs(2)).await?;
            if response.status != 200 || !response.text().contains("LIVE") {
                bail!(
                    "/ready answered {} {}",
                    response.status,
                    response.text().trim()
                );
            }
            Ok(())
        });
        tokio::select! {
            result = live => {
                result.with_context(|| format!("envoy for {} never went LIVE; log:\n{}", self.gateway, self.log_tail()))
            }
            status = self.child.wait() => {
                bail!("envoy for {} exited early ({status:?}); log:\n{}", self.gateway, self.log_tail())
            }
        }
    }

    /// GET on Envoy's admin interface, as text.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let response = send(self.admin, &HttpRequest::get(path), Duration::from_secs(5)).await?;
        if response.status != 200 {
            bail!("envoy admin {path} answered {}", response.status);
        }
        Ok(response.text())
    }

    /// The addresses of Envoy's active listeners.
    pub async fn listener_addresses(&self) -> anyhow::Result<Vec<SocketAddr>> {
        let json: serde_json::Value =
            serde_json::from_str(&self.admin_get("/listeners?format=json").await?)?;
        let mut out = Vec::new();
        for status in json["listener_statuses"].as_array().into_iter().flatten() {
            let socket = &status["local_address"]["socket_address"];
            let (Some(ip), Some(port)) =
                (socket["address"].as_str(), socket["port_value"].as_u64())
            else {
                continue;
            };
            if let (Ok(ip), Ok(port)) = (ip.parse(), u16::try_from(port)) {
                out.push(SocketAddr::new(ip, port));
            }
        }
        Ok(out)
    }

    /// Where this Envoy listens on `port` (loopback when it listens on every address); an
    /// error until such a listener is active.
    pub async fn address_for_port(&self, port: u16) -> anyhow::Result<SocketAddr> {
        let listeners = self.listener_addresses().await?;
        let Some(found) = listeners.iter().find(|a| a.port() == port) else {
            bail!(
                "Envoy of {} has no listener on port {port} (has {listeners:?})",
                self.gateway
            );
        };
        Ok(if found.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], port))
        } else {
            *found
        })
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last 60 lines of Envoy's output.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }
}
