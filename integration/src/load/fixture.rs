//! Generated config directories for the load and propagation benchmarks: one Gateway, a pool
//! of Backends, and one file per HTTPRoute (how a GitOps repository usually looks).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Namespace of every generated object.
pub const NAMESPACE: &str = "load";
/// Name of the generated Gateway; the fleet is `load/gw`.
pub const GATEWAY: &str = "gw";

/// What to generate.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// Number of HTTPRoutes, `r-0` .. `r-{routes-1}`, each with one PathPrefix rule `/r-{i}`.
    pub routes: usize,
    /// Size of the Backend pool; route `i` uses Backend `be-{i % backends}`.
    pub backends: usize,
    /// Where every Backend's one endpoint points.
    pub backend_addr: SocketAddr,
    /// The Gateway's HTTP listener port.
    pub port: u16,
}

impl Fixture {
    /// The fleet (`node.cluster`) of the generated Gateway.
    pub fn fleet() -> String {
        format!("{NAMESPACE}/{GATEWAY}")
    }

    /// Writes `base.yaml` (GatewayClass, Gateway, Backends) and `routes/r-<i>.yaml`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        let base = self.base_yaml();
        std::fs::write(dir.join("base.yaml"), base).context("writing base.yaml")?;
        std::fs::create_dir_all(dir.join("routes"))?;
        for i in 0..self.routes {
            let yaml = route_yaml(&format!("r-{i}"), &format!("/r-{i}"), &self.backend_of(i));
            std::fs::write(self.route_file(dir, i), yaml)?;
        }
        Ok(())
    }

    /// The Backend route `i` points at.
    pub fn backend_of(&self, i: usize) -> String {
        format!("be-{}", i % self.backends.max(1))
    }

    pub fn route_file(&self, dir: &Path, i: usize) -> PathBuf {
        dir.join("routes").join(format!("r-{i}.yaml"))
    }

    fn base_yaml(&self) -> String {
        let mut y = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: portico\n\
             spec:\n  controllerName: portico.dev/gateway-controller\n---\n\
             apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {GATEWAY}\n  namespace: {NAMESPACE}\n\
             spec:\n  gatewayClassName: portico\n  listeners:\n  - name: http\n    protocol: HTTP\n    port: {}\n",
            self.port
        );
        for b in 0..self.backends.max(1) {
            y.push_str("---\n");
            y.push_str(&backend_yaml(&format!("be-{b}"), self.backend_addr));
        }
        y
    }
}

/// A Backend with one endpoint.
pub fn backend_yaml(name: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Backend\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  endpoints:\n  - ip: {}\n    port: {}\n",
        addr.ip(),
        addr.port()
    )
}

/// An HTTPRoute on the generated Gateway with one PathPrefix rule to one Backend.
pub fn route_yaml(name: &str, path: &str, backend: &str) -> String {
    let mut y = String::new();
    let _ = write!(
        y,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n\
         spec:\n  parentRefs:\n  - name: {GATEWAY}\n  rules:\n  - matches:\n    - path:\n        type: PathPrefix\n        value: {path}\n\
         \x20   backendRefs:\n    - group: portico.dev\n      kind: Backend\n      name: {backend}\n"
    );
    y
}

/// Writes a file atomically (temp file + rename), so the watcher never reads half of it.
pub fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("file name")?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
