//! End-to-end harness: free ports, the `portico` and `envoy` binaries as child processes that
//! die with their handles, an HTTP client, and polling with deadlines.

mod binaries;
mod envoy;
pub mod fixtures;
pub mod http;
mod portico;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use binaries::{envoy_binary, portico_binary, workspace_root};
pub use envoy::{Envoy, EnvoyOptions};
pub use portico::{CliOutput, Portico, PorticoOptions, portico_cli};

/// Polling interval of [`eventually`].
const POLL: Duration = Duration::from_millis(100);

/// Calls `check` until it succeeds or `deadline` has passed; the error names the last failure.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(err) if start.elapsed() >= deadline => {
                return Err(err.context(format!("still failing after {deadline:?}")));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; callers bind it soon after).
pub fn free_port() -> u16 {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// A port that is free on `ip` now and stays likely free until a child process binds it.
///
/// Ports come from below the kernel's ephemeral range (32768+ on Linux), which the kernel
/// hands to outgoing connections: a port asked of the kernel with `:0` can be taken by any
/// client socket before Portico or Envoy binds it. Each port is handed out once per process.
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::{Mutex, OnceLock};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Mutex::default);
    // Processes running side by side start at different places.
    let start = RandomState::new().hash_one(std::process::id()) as u32 % COUNT;
    for i in 0..COUNT {
        let port = (FIRST + (start + i * 7919) % COUNT) as u16;
        let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
        if given.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind((ip, port)).is_ok()
            && std::net::UdpSocket::bind((ip, port)).is_ok()
        {
            given.insert(port);
            return port;
        }
    }
    // Every candidate is taken: fall back to the kernel's choice.
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A temporary config directory that Portico watches; removed on drop.
pub struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("portico-config-")
                .tempdir()?,
        })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `name` atomically (temp file + rename) so the watcher never reads half a file.
    pub fn write(&self, name: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = self
            .dir
            .path()
            .join(format!(".{}.tmp", name.replace('/', "_")));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Keeps the directory on disk after drop (for debugging a failure).
    pub fn keep_on_drop(&mut self) {
        self.dir.disable_cleanup(true);
    }

    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        Ok(std::fs::remove_file(self.dir.path().join(name))?)
    }
}

/// Where a spawned `portico` writes its log: `$PORTICO_LOG_FILE` when set (kept after the
/// run, for benchmarks and debugging), else `portico.log` in the run's own `dir`.
pub fn portico_log_path(dir: &Path) -> std::path::PathBuf {
    std::env::var_os("PORTICO_LOG_FILE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("portico.log"))
}

/// The last `lines` lines of a log file, for failure messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
