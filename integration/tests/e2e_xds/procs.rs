//! The two processes these tests drive: `portico serve` on ports that survive a restart (so an
//! Envoy can reconnect to the same address), stoppable with SIGTERM or SIGKILL; and a real
//! Envoy bootstrapped by `portico bootstrap`, whose admin interface the tests read.
//!
//! The shared harness starts Portico on fresh ports and only kills it on drop, so restart and
//! graceful shutdown need these small wrappers.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use portico_integration::harness::http::{HttpRequest, send};
use portico_integration::harness::{envoy_binary, eventually, portico_binary, portico_cli, tail};
use tokio::process::{Child, Command};

/// Covers a debug build starting, translating and publishing.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// Envoy's initial fetch timeout is 15 s; LIVE normally comes much sooner.
const LIVE_DEADLINE: Duration = Duration::from_secs(40);
/// How long a stopped process may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(20);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A loopback address of its own for one test (127.100.0.0 - 127.199.255.255; the conformance
/// runner uses 127.0.N.0/24). Listeners on it never collide with other tests' sockets, nor
/// with the ephemeral ports of connections from 127.0.0.1, which a port picked on 127.0.0.1
/// and bound later can.
pub fn unique_loopback() -> IpAddr {
    use std::hash::{BuildHasher, RandomState};
    let r = RandomState::new().hash_one(std::process::id());
    let [a, b, c, ..] = r.to_le_bytes();
    IpAddr::V4(Ipv4Addr::new(127, 100 + a % 100, b, c.clamp(1, 254)))
}

/// A port free on `ip` right now.
pub fn free_port_on(ip: IpAddr) -> anyhow::Result<u16> {
    Ok(portico_integration::harness::free_port_on(ip))
}

/// `portico serve --config-dir DIR` on fixed ports; every (re)start logs to its own file.
pub struct Server {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    config_dir: PathBuf,
    child: Option<Child>,
    /// Log of the current (or last) run.
    log: PathBuf,
    runs: u32,
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts on free ports of loopback address `ip` and waits for `/readyz`.
    pub async fn start(ip: IpAddr, config_dir: &Path) -> anyhow::Result<Self> {
        let mut server = Self::launch(ip, config_dir)?;
        server.wait_ready().await?;
        Ok(server)
    }

    /// Starts on free ports of `ip` without waiting for anything.
    pub fn launch(ip: IpAddr, config_dir: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portico-xds-e2e-")
            .tempdir()?;
        let mut server = Self {
            xds: SocketAddr::new(ip, free_port_on(ip)?),
            admin: SocketAddr::new(ip, free_port_on(ip)?),
            config_dir: config_dir.to_path_buf(),
            child: None,
            log: dir.path().join("portico-0.log"),
            runs: 0,
            dir,
        };
        server.spawn_process()?;
        Ok(server)
    }

    /// Starts again on the same ports (after [`Self::terminate`] or [`Self::kill`]).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("portico is still running");
        }
        // The old process is gone, but a port can stay taken for a moment; a failed bind
        // makes portico exit early, so retry until the deadline.
        let start = std::time::Instant::now();
        loop {
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(err) if start.elapsed() >= READY_DEADLINE || self.is_running() => {
                    return Err(err.context("restarting portico on the same ports"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawn_process()?;
        self.wait_ready().await
    }

    fn spawn_process(&mut self) -> anyhow::Result<()> {
        let bin = portico_binary()?;
        self.log = self.dir.path().join(format!("portico-{}.log", self.runs));
        self.runs += 1;
        let log = std::fs::File::create(&self.log)?;
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--config-dir")
            .arg(&self.config_dir)
            .args(["--xds-address", &self.xds.to_string()])
            .args(["--admin-address", &self.admin.to_string()])
            // The xDS server logs every push with its resource count at debug: failure
            // messages use it to spot a push made before the first config was published.
            .env("PORTICO_LOG", "info,portico_xds=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits for `/readyz` (the first config is published), failing early if portico exits.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let admin = self.admin;
        let ready = eventually(READY_DEADLINE, || async move {
            let response = send(admin, &HttpRequest::get("/readyz"), ADMIN_TIMEOUT).await?;
            if response.status != 200 {
                bail!("/readyz answered {}", response.status);
            }
            Ok(())
        });
        let child = self.child.as_mut().context("no child")?;
        tokio::select! {
            result = ready => result.with_context(|| format!("portico never became ready; log:\n{}", self.log_tail())),
            status = child.wait() => {
                self.child = None;
                bail!("portico exited early ({status:?}); log:\n{}", self.log_tail())
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal("TERM").await
    }

    /// SIGKILL (a crash), then waits for the exit.
    pub async fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        self.signal("KILL").await
    }

    async fn signal(&mut self, signal: &str) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("portico is not running")?;
        let pid = child.id().context("portico already exited")?;
        // By process id: the test owns exactly this child.
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .await
            .context("running kill")?;
        if !sent.success() {
            bail!("kill -{signal} {pid} failed: {sent}");
        }
        tokio::time::timeout(EXIT_DEADLINE, child.wait())
            .await
            .with_context(|| {
                format!(
                    "portico did not exit within {EXIT_DEADLINE:?} of SIG{signal}; log:\n{}",
                    self.log_tail()
                )
            })?
            .context("waiting for portico")
    }

    /// The whole log of the current (or last) run.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }

    /// GET on the admin server, as text.
    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let response = send(self.admin, &HttpRequest::get(path), ADMIN_TIMEOUT).await?;
        if response.status != 200 {
            bail!("portico admin {path} answered {}", response.status);
        }
        Ok(response.text())
    }

    /// `/debug/proxy-status`, the entry of `node`.
    pub async fn proxy_status(&self, node: &str) -> anyhow::Result<serde_json::Value> {
        let all: serde_json::Value =
            serde_json::from_str(&self.admin_get("/debug/proxy-status").await?)?;
        let found = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["node"] == node)
            .cloned();
        found.with_context(|| format!("node {node} is not in proxy-status: {all}"))
    }

    /// `portico proxy-status --admin-address ADDR [ARGS]`: stdout, failing on a non-zero exit.
    pub async fn proxy_status_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let admin = self.admin.to_string();
        let mut all = vec!["proxy-status", "--admin-address", &admin];
        all.extend_from_slice(args);
        let out = portico_cli(&all).await?;
        if out.code != Some(0) {
            bail!("portico {all:?} failed ({:?}): {}", out.code, out.stderr);
        }
        Ok(out.stdout)
    }
}

/// A real Envoy of one fleet; killed on drop.
pub struct Proxy {
    pub admin: SocketAddr,
    pub node_id: String,
    pub bootstrap: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts Envoy with `portico bootstrap --gateway FLEET [--delta]` against `xds`, its admin
    /// interface on the same address, and waits until it is LIVE.
    pub async fn start(xds: SocketAddr, fleet: &str, delta: bool) -> anyhow::Result<Self> {
        let bin = envoy_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("portico-xds-envoy-")
            .tempdir()?;
        let admin = SocketAddr::new(xds.ip(), free_port_on(xds.ip())?);
        let admin_port = admin.port();
        let node_id = format!("{}.{admin_port}", fleet.replace('/', "."));
        let (xds, port) = (xds.to_string(), admin_port.to_string());
        let mut args = vec![
            "bootstrap",
            "--gateway",
            fleet,
            "--node-id",
            &node_id,
            "--xds-address",
            &xds,
            "--admin-port",
            &port,
        ];
        if delta {
            args.push("--delta");
        }
        let out = portico_cli(&args).await?;
        if out.code != Some(0) {
            bail!("portico bootstrap failed ({:?}): {}", out.code, out.stderr);
        }
        // `portico bootstrap` puts the admin interface on 127.0.0.1; move it to our address.
        let mut bootstrap: serde_yaml::Value = serde_yaml::from_str(&out.stdout)?;
        bootstrap["admin"]["address"]["socket_address"]["address"] = admin.ip().to_string().into();
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, serde_yaml::to_string(&bootstrap)?)?;
        let log = dir.path().join("envoy.log");
        let file = std::fs::File::create(&log)?;
        let level = std::env::var("PORTICO_ENVOY_LOG_LEVEL").unwrap_or_else(|_| "info".into());
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&config)
            .arg("--disable-hot-restart")
            .args(["--log-level", &level, "--concurrency", "1"])
            // The tests read two `config` debug lines: every xDS update Envoy accepts, with its
            // resource count, and the gRPC status its xDS stream closed with.
            .args(["--component-log-level", "config:debug"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut proxy = Self {
            admin,
            node_id,
            bootstrap: out.stdout,
            child,
            log,
            _dir: dir,
        };
        proxy.wait_live().await?;
        Ok(proxy)
    }

    async fn wait_live(&mut self) -> anyhow::Result<()> {
        let admin = self.admin;
        let live = eventually(LIVE_DEADLINE, || async move {
            let response = send(admin, &HttpRequest::get("/ready"), ADMIN_TIMEOUT).await?;
            if response.status != 200 || !response.text().contains("LIVE") {
                bail!("/ready answered {} {}", response.status, response.text());
            }
            Ok(())
        });
        tokio::select! {
            result = live => result.with_context(|| format!("envoy never went LIVE; log:\n{}", self.log_tail())),
            status = self.child.wait() => bail!("envoy exited early ({status:?}); log:\n{}", self.log_tail()),
        }
    }

    pub async fn admin_get(&self, path: &str) -> anyhow::Result<String> {
        let response = send(self.admin, &HttpRequest::get(path), ADMIN_TIMEOUT).await?;
        if response.status != 200 {
            bail!("envoy admin {path} answered {}", response.status);
        }
        Ok(response.text())
    }

    /// Envoy's counters and gauges (`/stats`, `name: value` lines with integer values).
    pub async fn stats(&self) -> anyhow::Result<Stats> {
        let text = self.admin_get("/stats").await?;
        let mut values = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for line in text.lines() {
            let Some((name, value)) = line.split_once(": ") else {
                continue;
            };
            match value.parse::<u64>() {
                Ok(n) => {
                    values.insert(name.to_string(), n);
                }
                Err(_) if value.starts_with('"') => {
                    texts.insert(name.to_string(), value.trim_matches('"').to_string());
                }
                Err(_) => {}
            }
        }
        Ok(Stats { values, texts })
    }

    /// Where Envoy listens on `port`; an error until such a listener is active.
    pub async fn address_for_port(&self, port: u16) -> anyhow::Result<SocketAddr> {
        let json: serde_json::Value =
            serde_json::from_str(&self.admin_get("/listeners?format=json").await?)?;
        for status in json["listener_statuses"].as_array().into_iter().flatten() {
            let socket = &status["local_address"]["socket_address"];
            if socket["port_value"].as_u64() == Some(u64::from(port)) {
                let ip = socket["address"].as_str().unwrap_or("127.0.0.1");
                let ip: std::net::IpAddr = ip.parse()?;
                let ip = if ip.is_unspecified() {
                    [127, 0, 0, 1].into()
                } else {
                    ip
                };
                return Ok(SocketAddr::new(ip, port));
            }
        }
        bail!("envoy has no listener on port {port}: {json}")
    }

    /// Envoy's log from byte `offset` on (see [`Self::log_len`]).
    pub fn log_since(&self, offset: usize) -> String {
        let text = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(text.get(offset..).unwrap_or_default()).into_owned()
    }

    /// Current length of Envoy's log, to read only what comes after.
    pub fn log_len(&self) -> usize {
        std::fs::metadata(&self.log).map_or(0, |m| m.len() as usize)
    }

    /// The last 60 log lines, without the start-up banner.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("[main] [source/server/server.cc"))
            .collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// A reading of Envoy's `/stats`.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub values: BTreeMap<String, u64>,
    /// Text readouts such as `cluster_manager.cds.version_text`.
    pub texts: BTreeMap<String, String>,
}

impl Stats {
    /// A counter or gauge; 0 when Envoy has not created it.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    pub fn text(&self, name: &str) -> &str {
        self.texts.get(name).map(String::as_str).unwrap_or("")
    }

    /// Sum of every stat whose name contains `part` and ends with `suffix` (for stats named
    /// after resources, e.g. `http.<prefix>.rds.<route config>.update_rejected`).
    pub fn sum(&self, part: &str, suffix: &str) -> u64 {
        self.values
            .iter()
            .filter(|(k, _)| k.contains(part) && k.ends_with(suffix))
            .map(|(_, v)| v)
            .sum()
    }
}
