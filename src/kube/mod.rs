//! The Kubernetes source: Gateway API objects (and the Services, EndpointSlices, Secrets ...
//! they refer to) read from a cluster through watches, into the same `Resources` the file
//! source fills; status written back by the elected leader.
//!
//! Wiring: [`start`] spawns the watches and waits for their first lists; the serve loop
//! calls [`KubeSource::load`] whenever the `changed` channel is poked, hands every
//! translation's statuses to [`KubeSource::publish_status`], and calls
//! [`KubeSource::shutdown`] on the way out (which releases the leader Lease).

#[cfg(test)]
mod crd;
mod input;
mod kinds;
mod lease;
#[cfg(test)]
mod rbac_check;
mod refs;
mod status;
mod store;
mod watch;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use portico_translator::{ObjectStatus, Problem, Resources};
use tokio::sync::{mpsc, watch as signal};
use tokio::task::JoinHandle;

use store::Stores;

/// Flags of `portico serve` for the Kubernetes source.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct KubeFlags {
    /// Read Gateway API resources from Kubernetes (in-cluster config unless --kubeconfig);
    /// takes precedence over --config-dir.
    #[arg(long)]
    pub kubernetes: bool,
    /// Kubeconfig file to use instead of the in-cluster service account.
    #[arg(long, requires = "kubernetes")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch namespaced resources only in this namespace (repeatable); default: all namespaces.
    #[arg(long = "namespace", value_name = "NS", requires = "kubernetes")]
    pub namespaces: Vec<String>,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "POD_NAMESPACE",
        default_value = "portico-system",
        hide_env_values = true
    )]
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "portico-leader")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else host name and pid).
    #[arg(long)]
    pub leader_identity: Option<String>,
    /// How long a leader's Lease holds without renewal before another replica takes over.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_duration_seconds: u64,
}

/// A running Kubernetes source. Clones share the same watches.
#[derive(Clone)]
pub struct KubeSource {
    inner: Arc<Inner>,
}

struct Inner {
    stores: Arc<Stores>,
    desired: signal::Sender<Option<Arc<Vec<ObjectStatus>>>>,
    stop: signal::Sender<bool>,
    watches: Vec<JoinHandle<()>>,
    background: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.watches {
            task.abort();
        }
        let _ = self.stop.send(true);
    }
}

/// Connects, starts a watch per kind (and per namespace with `--namespace`), waits until
/// every watch has listed once, and starts leader election and the status writer.
/// `changed` is poked (without blocking) whenever the translator's input changed.
pub async fn start(flags: &KubeFlags, changed: mpsc::Sender<()>) -> anyhow::Result<KubeSource> {
    let client = client(flags).await?;
    let stores = Arc::new(Stores::new(changed));
    let mut watches = Vec::new();
    for kind in kinds::all() {
        let scopes: Vec<Option<String>> = if kind.namespaced && !flags.namespaces.is_empty() {
            // Each namespace once: two watches would hold the same objects twice.
            let namespaces: std::collections::BTreeSet<&String> = flags.namespaces.iter().collect();
            namespaces.into_iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for namespace in scopes {
            let id = stores.register(kind.clone(), namespace.clone());
            watches.push(tokio::spawn(watch::run(
                client.clone(),
                stores.clone(),
                id,
                kind.clone(),
                namespace,
            )));
        }
    }
    wait_synced(&stores).await;

    let (stop, stop_rx) = signal::channel(false);
    let (leader_tx, leader_rx) = signal::channel(false);
    let (desired, desired_rx) = signal::channel(None);
    let lease = lease::LeaseConfig {
        namespace: flags.lease_namespace.clone(),
        name: flags.lease_name.clone(),
        identity: flags
            .leader_identity
            .clone()
            .unwrap_or_else(lease::default_identity),
        duration: Duration::from_secs(flags.lease_duration_seconds),
    };
    tracing::info!(identity = %lease.identity, lease = %format!("{}/{}", lease.namespace, lease.name), "joining leader election");
    let lease_api = kube::Api::namespaced(client.clone(), &lease.namespace);
    let background = vec![
        tokio::spawn(lease::run(lease_api, lease, leader_tx, stop_rx.clone())),
        tokio::spawn(status::run(
            client,
            stores.clone(),
            desired_rx,
            leader_rx,
            stop_rx,
        )),
    ];
    Ok(KubeSource {
        inner: Arc::new(Inner {
            stores,
            desired,
            stop,
            watches,
            background: Mutex::new(background),
        }),
    })
}

impl KubeSource {
    /// The translator's input: everything watched, and the problems of malformed objects.
    /// Updated in place: drop the previous result first, or it is copied.
    pub fn load(&self) -> (Arc<Resources>, Vec<Problem>) {
        self.inner.stores.resources()
    }

    /// Hands the latest computed statuses to the status writer (which writes, as leader,
    /// only those that differ from the cluster's). Never blocks.
    pub fn publish_status(&self, statuses: Arc<Vec<ObjectStatus>>) {
        self.inner.desired.send_if_modified(|current| {
            // The translator hands out the same list again while no status changed.
            let same = current
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, &statuses) || **c == *statuses);
            if same {
                return false;
            }
            *current = Some(statuses);
            true
        });
    }

    /// Stops writing status and releases the Lease (bounded to a few seconds).
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<_> = std::mem::take(
            &mut *self
                .inner
                .background
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(tasks)).await;
    }
}

async fn client(flags: &KubeFlags) -> anyhow::Result<kube::Client> {
    let config = match &flags.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            kube::Config::incluster().context("in-cluster Kubernetes config")?
        }
        // Outside a cluster, fall back to $KUBECONFIG / ~/.kube/config, as kubectl does.
        None => kube::Config::infer()
            .await
            .context("no in-cluster config and no usable kubeconfig")?,
    };
    tracing::info!(server = %config.cluster_url, "connecting to Kubernetes");
    kube::Client::try_from(config).context("building the Kubernetes client")
}

/// Waits for every watch's first list, so the first translation sees the whole cluster
/// rather than whichever kinds happened to arrive first.
async fn wait_synced(stores: &Stores) {
    let mut seen = stores.subscribe();
    let mut last_report = tokio::time::Instant::now();
    while !stores.synced() {
        let _ = tokio::time::timeout(Duration::from_secs(1), seen.changed()).await;
        if last_report.elapsed() >= Duration::from_secs(10) {
            tracing::warn!(waiting_for = ?stores.unsynced(), "still waiting for the first list of some kinds");
            last_report = tokio::time::Instant::now();
        }
    }
    tracing::info!("Kubernetes stores synced");
}
