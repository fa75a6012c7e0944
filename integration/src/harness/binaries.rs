//! Locating (and if needed building) the `portico` binary and the pinned Envoy.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The Cargo workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Longest a fallback `cargo build -p portico` may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);

static PORTICO: Mutex<Option<PathBuf>> = Mutex::new(None);
static ENVOY: Mutex<Option<PathBuf>> = Mutex::new(None);

/// `$PORTICO_BIN`, else `target/<profile>/portico` next to the running test executable,
/// built with `cargo build -p portico --bin portico` when missing.
pub fn portico_binary() -> anyhow::Result<PathBuf> {
    let mut cached = PORTICO.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("PORTICO_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let exe = std::env::current_exe().context("current_exe")?;
            // Test executables live in target/<profile>/deps/; binaries one level up.
            let profile_dir = exe
                .parent()
                .and_then(|deps| {
                    if deps.ends_with("deps") {
                        deps.parent()
                    } else {
                        Some(deps)
                    }
                })
                .context("locating the target directory")?;
            let path = profile_dir.join("portico");
            if !path.exists() {
                build_portico()?;
            }
            path
        }
    };
    if !path.exists() {
        bail!("portico binary not found at {}", path.display());
    }
    *cached = Some(path.clone());
    Ok(path)
}

/// Builds the binary, bounded in time: should Cargo still hold the build directory lock for
/// the running `cargo test`, this fails with advice instead of waiting forever.
fn build_portico() -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["build", "-p", "portico", "--bin", "portico"])
        .current_dir(workspace_root())
        .spawn()
        .context("running cargo build -p portico")?;
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("cargo build -p portico failed: {status}");
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "cargo build -p portico did not finish in {BUILD_TIMEOUT:?}; run it before the tests"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `$PORTICO_ENVOY`, else the path printed by `scripts/setup-envoy.sh` (which installs the
/// pinned Envoy on first use).
pub fn envoy_binary() -> anyhow::Result<PathBuf> {
    let mut cached = ENVOY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = cached.as_ref() {
        return Ok(path.clone());
    }
    let path = match std::env::var_os("PORTICO_ENVOY") {
        Some(bin) => PathBuf::from(bin),
        None => {
            let script = workspace_root().join("scripts/setup-envoy.sh");
            let output = Command::new("bash")
                .arg(&script)
                .output()
                .with_context(|| format!("running {}", script.display()))?;
            if !output.status.success() {
                bail!(
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            PathBuf::from(stdout.lines().last().unwrap_or_default().trim())
        }
    };
    if !path.exists() {
        bail!("envoy binary not found at {}", path.display());
    }
    *cached = Some(path.clone());
    Ok(path)
}
