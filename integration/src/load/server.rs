//! `portico serve` as a child process whose pid we know (for its memory).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::harness::http::{HttpRequest, send};
use crate::harness::{eventually, free_port, tail};

/// A running `portico serve --config-dir DIR`; killed when dropped.
pub struct PorticoProcess {
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    pub pid: u32,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl PorticoProcess {
    /// Starts `bin serve` on free loopback ports and waits (up to `deadline`) until it has
    /// published its first config.
    pub async fn start(bin: &Path, config_dir: &Path, deadline: Duration) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("portico-load-").tempdir()?;
        let log = crate::harness::portico_log_path(dir.path());
        let xds = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let child = Command::new(bin)
            .arg("serve")
            .arg("--config-dir")
            .arg(config_dir)
            .args([
                "--xds-address",
                &xds.to_string(),
                "--admin-address",
                &admin.to_string(),
            ])
            .env(
                "PORTICO_LOG",
                std::env::var("PORTICO_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log)?))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log)?,
            ))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id().context("portico exited at once")?;
        let mut process = PorticoProcess {
            xds,
            admin,
            pid,
            child,
            log,
            _dir: dir,
        };
        let ready = eventually(deadline, || async move {
            let response =
                send(admin, &HttpRequest::get("/readyz"), Duration::from_secs(2)).await?;
            if response.status != 200 {
                bail!("/readyz answered {}", response.status);
            }
            Ok(())
        });
        tokio::select! {
            result = ready => result.with_context(|| format!("portico never became ready; log:\n{}", process.log_tail()))?,
            status = process.child.wait() => bail!("portico exited early ({status:?}); log:\n{}", process.log_tail()),
        }
        Ok(process)
    }

    /// The last 40 lines of Portico's output.
    pub fn log_tail(&self) -> String {
        tail(&self.log, 40)
    }
}

/// The `portico` binary: `$PORTICO_BIN`, else next to the running executable (so a release
/// `portico-load` uses a release `portico`).
pub fn sibling_portico() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PORTICO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable directory")?;
    let path = dir.join("portico");
    if !path.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p portico` or pass --portico",
            path.display()
        );
    }
    Ok(path)
}
