//! `portico serve` as a child process, and the one-shot CLI commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use super::http::{HttpRequest, send};
use super::{eventually, free_port, portico_binary, tail};

/// How long `portico serve` may take to report ready.
const READY_DEADLINE: Duration = Duration::from_secs(30);

/// Extra settings for `portico serve`.
#[derive(Clone, Debug, Default)]
pub struct PorticoOptions {
    /// `--address-pool CIDR`.
    pub address_pool: Option<String>,
    /// Any further arguments, appended as given.
    pub extra_args: Vec<String>,
}

/// A running `portico serve`; killed when dropped.
pub struct Portico {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Portico {
    /// Starts `portico serve --config-dir DIR` on free ports and waits for `/readyz`.
    pub async fn start(config_dir: &Path, options: PorticoOptions) -> anyhow::Result<Self> {
        let bin = portico_binary()?;
        let dir = tempfile::Builder::new().prefix("portico-run-").tempdir()?;
        let log = super::portico_log_path(dir.path());
        let xds = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut cmd = Command::new(&bin);
        cmd.arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .arg("--xds-address")
            .arg(xds.to_string())
            .arg("--admin-address")
            .arg(admin.to_string());
        if let Some(pool) = &options.address_pool {
            cmd.arg("--address-pool").arg(pool);
        }
        cmd.args(&options.extra_args)
            .env(
                "PORTICO_LOG",
                std::env::var("PORTICO_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log)?,
            ))
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let mut portico = Self {
            xds,
            admin,
            child,
            log,
            _dir: dir,
        };
        portico.wait_ready().await?;
        Ok(portico)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let admin = self.admin;
        let ready = eventually(READY_DEADLINE, || async move {
            let response =
                send(admin, &HttpRequest::get("/readyz"), Duration::from_secs(2)).await?;
            if response.status != 200 {
                bail!("/readyz answered {}", response.status);
            }
            Ok(())
        });
        tokio::select! {
            result = ready => {
                result.with_context(|| format!("portico never became ready; log:\n{}", self.log_tail()))
            }
            status = self.child.wait() => {
                bail!("portico exited early ({status:?}); log:\n{}", self.log_tail())
            }
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last 60 lines of Portico's output.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }

    /// `portico bootstrap` for an Envoy of `gateway` talking to this server.
    pub async fn bootstrap(
        &self,
        gateway: &str,
        node_id: &str,
        admin_port: u16,
        delta: bool,
    ) -> anyhow::Result<String> {
        let admin_port = admin_port.to_string();
        let xds = self.xds.to_string();
        let mut args = vec![
            "bootstrap",
            "--gateway",
            gateway,
            "--node-id",
            node_id,
            "--xds-address",
            &xds,
            "--admin-port",
            &admin_port,
        ];
        if delta {
            args.push("--delta");
        }
        let out = portico_cli(&args).await?;
        if out.code != Some(0) {
            bail!("portico bootstrap failed ({:?}): {}", out.code, out.stderr);
        }
        Ok(out.stdout)
    }
}

/// Result of a one-shot `portico` command.
#[derive(Clone, Debug)]
pub struct CliOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `portico ARGS...` to completion (bounded to one minute).
pub async fn portico_cli(args: &[&str]) -> anyhow::Result<CliOutput> {
    let bin = portico_binary()?;
    let run = Command::new(&bin)
        .args(args)
        .env("PORTICO_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .with_context(|| format!("portico {args:?} timed out"))??;
    Ok(CliOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
