//! An in-process stand-in for the Kubernetes API server, for tests of Portico's kube source.
//!
//! It speaks the list/watch HTTP protocol the real kube client uses: a cluster-wide
//! monotonically increasing resourceVersion, lists carrying it, chunked watch streams of
//! ADDED/MODIFIED/DELETED/BOOKMARK events resuming from a resourceVersion, 410 Gone (an
//! ERROR event) once history was compacted, the `/status` subresource with merge patches and
//! server-side apply, resourceVersion-guarded PUT (409 Conflict), and Lease objects. Plain
//! HTTP on 127.0.0.1; [`FakeKube::write_kubeconfig`] points a client at it.
//!
//! Not modelled: authentication, label and field selectors, pagination (lists come whole),
//! JSON patch, admission and defaulting.

mod server;
mod state;
mod types;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::Value;
use tokio::sync::watch;

pub use state::{ApiError, merge_patch};
pub use types::{ResourceType, default_types};

use server::Shared;
use state::{Part, State};

/// A running fake API server; stops when dropped.
pub struct FakeKube {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKube {
    /// Serves every [`default_types`] on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        Self::with_types(default_types()).await
    }

    /// Serves only `types` (leave one out to act like a cluster without that CRD).
    pub async fn with_types(types: Vec<ResourceType>) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(types)),
            cut: watch::channel(0).0,
            bookmark_interval: Duration::from_secs(1),
            watches_blocked: AtomicBool::new(false),
        });
        let app = server::router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeKube { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig for this server into `dir` and returns its path.
    pub fn write_kubeconfig(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, self.kubeconfig())?;
        Ok(path)
    }

    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n",
            self.url()
        )
    }

    /// Creates the object, or replaces it (spec, labels, ...; status stays) when it exists.
    /// Returns the stored object.
    pub fn apply(&self, object: Value) -> anyhow::Result<Value> {
        let mut state = self.shared.lock();
        let (rt, namespace, name) = identify(&state, &object)?;
        let result = match state.get(&rt, &namespace, &name) {
            None => state.create(&rt, &namespace, object),
            Some(_) => {
                let mut object = object;
                if let Some(meta) = object["metadata"].as_object_mut() {
                    meta.remove("resourceVersion");
                }
                state.replace(&rt, &namespace, &name, object, Part::Main)
            }
        };
        result.map_err(api_error)
    }

    /// Applies every document of a YAML text (`---` separated).
    pub fn apply_yaml(&self, text: &str) -> anyhow::Result<()> {
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value: Value = serde::Deserialize::deserialize(doc).context("parsing YAML")?;
            if value.is_null() {
                continue;
            }
            self.apply(value)?;
        }
        Ok(())
    }

    /// Replaces an object's status (as another controller, or a user, would).
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> anyhow::Result<Value> {
        let mut state = self.shared.lock();
        let rt = find_kind(&state, api_version, kind)?;
        let body = serde_json::json!({ "status": status });
        state
            .replace(&rt, namespace, name, body, Part::Status)
            .map_err(api_error)
    }

    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> anyhow::Result<Value> {
        let mut state = self.shared.lock();
        let rt = find_kind(&state, api_version, kind)?;
        state.delete(&rt, namespace, name).map_err(api_error)
    }

    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.shared.lock();
        let rt = find_kind(&state, api_version, kind).ok()?;
        state.get(&rt, namespace, name)
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Drops every open watch connection abruptly, as a network cut would.
    pub fn cut_watches(&self) {
        self.shared.cut.send_modify(|n| *n += 1);
    }

    /// While `blocked`, new watch requests fail with 503 Service Unavailable (lists still
    /// work): with [`FakeKube::cut_watches`] this keeps clients away while changes happen.
    pub fn block_watches(&self, blocked: bool) {
        self.shared.watches_blocked.store(blocked, Ordering::SeqCst);
    }

    /// Forgets the event history: clients resuming a watch get 410 Gone and must re-list.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// How many open watch connections there are.
    pub fn open_watches(&self) -> usize {
        self.shared.cut.receiver_count()
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// How many requests so far had this method and a path containing `path_part`.
    pub fn count_requests(&self, method: &str, path_part: &str) -> usize {
        let prefix = format!("{method} ");
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.starts_with(&prefix) && r.contains(path_part))
            .count()
    }
}

fn identify(state: &State, object: &Value) -> anyhow::Result<(ResourceType, String, String)> {
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let kind = object["kind"].as_str().unwrap_or("");
    let rt = find_kind(state, api_version, kind)?;
    let name = object["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("{kind} without metadata.name"))?;
    let namespace = if rt.namespaced {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    } else {
        ""
    };
    Ok((rt, namespace.to_string(), name.to_string()))
}

fn find_kind(state: &State, api_version: &str, kind: &str) -> anyhow::Result<ResourceType> {
    state
        .type_of_kind(api_version, kind)
        .ok_or_else(|| anyhow!("the fake API server does not serve {api_version} {kind}"))
}

fn api_error(err: ApiError) -> anyhow::Error {
    anyhow!("{} {}: {}", err.code, err.reason, err.message)
}

#[cfg(test)]
mod tests;
