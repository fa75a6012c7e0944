//! `portico serve`: source -> translator -> xDS cache, plus the admin HTTP server.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use portico_translator::{Feedback, Options, Problem, Rejection, Resources, Translation};
use portico_xds::{Cache, CacheConfig, Server, XdsEvent, XdsEventKind};
use tokio::net::TcpListener;
use tokio::sync::{RwLock, mpsc, watch};

use crate::cli::ServeArgs;
use crate::pipeline;
use crate::source::files::DirSource;

/// What the admin server shows of the latest reconciliation.
#[derive(Default)]
pub struct View {
    /// Rendered into documents only when asked for (`/status`): at thousands of objects that
    /// costs more than the translation.
    pub statuses: Arc<Vec<portico_translator::ObjectStatus>>,
    pub problems: Vec<Problem>,
    pub translation_seconds: f64,
    pub reloads: u64,
}

pub struct State {
    pub cache: Cache,
    pub ready: AtomicBool,
    pub view: RwLock<View>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("portico")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let options = Options {
        address_pool: args
            .address_pool
            .as_deref()
            .map(pipeline::parse_pool)
            .transpose()?,
        default_address: args.gateway_address.clone(),
    };
    let cache = Cache::new(CacheConfig {
        debounce: Duration::from_millis(args.push_debounce_ms),
        ..CacheConfig::default()
    });
    let state = Arc::new(State {
        cache: cache.clone(),
        ready: AtomicBool::new(false),
        view: RwLock::default(),
    });

    let xds = TcpListener::bind(args.xds_address)
        .await
        .with_context(|| format!("cannot listen for xDS on {}", args.xds_address))?;
    let admin = TcpListener::bind(args.admin_address)
        .await
        .with_context(|| format!("cannot listen for admin HTTP on {}", args.admin_address))?;
    tracing::info!(xds = %xds.local_addr()?, admin = %admin.local_addr()?, "portico listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // xDS is answered only once the first config is published: an Envoy that connected
    // earlier (say, right after a restart) would be told its fleet is empty and drop
    // everything it serves. Until then its connection waits in the listen backlog.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let xds_server = Server::new(cache.clone());
    let xds_stop = stopped(stop_rx.clone());
    let xds_task = tokio::spawn(async move {
        match first_rx.await {
            Ok(()) => xds_server.serve(xds, xds_stop).await,
            Err(_) => Ok(()), // stopped before any config was published
        }
    });
    let admin_task = tokio::spawn(crate::admin::serve(
        admin,
        state.clone(),
        stopped(stop_rx.clone()),
    ));

    let (reload_tx, reload_rx) = mpsc::channel(1);
    let kube = if args.kube.kubernetes {
        Some(crate::kube::start(&args.kube, reload_tx.clone()).await?)
    } else {
        None
    };
    let source = match (&kube, &args.config_dir) {
        (Some(kube), _) => Source::Kube(kube.clone()),
        (None, Some(dir)) => {
            if !dir.is_dir() {
                anyhow::bail!("--config-dir {}: not a directory", dir.display());
            }
            let (watcher, mut changes, changed) = crate::source::watch::watch(
                dir,
                Duration::from_millis(args.debounce_ms),
                Duration::from_millis(args.max_delay_ms),
            )?;
            let tx = reload_tx.clone();
            tokio::spawn(async move {
                let _watcher = watcher; // dropping it would end the watch
                while changes.recv().await.is_some() {
                    let _ = tx.try_send(());
                }
            });
            tracing::info!(dir = %dir.display(), "serving config directory");
            Source::Dir(Box::new(DirSource::new(dir)), changed)
        }
        (None, None) => {
            tracing::info!(
                "no --config-dir: serving the built-in example config (fleet default/example)"
            );
            Source::Example
        }
    };
    let _ = reload_tx.try_send(());

    let reconciler = Reconciler {
        state: state.clone(),
        options,
        source: Some(source),
        resources: Arc::new(Resources::default()),
        load_problems: Vec::new(),
        feedback: Feedback::default(),
        published: BTreeSet::new(),
        origins: BTreeMap::new(),
        first_published: Some(first_tx),
        incremental: pipeline::Incremental::default(),
    };
    let loop_task =
        tokio::spawn(reconciler.run(reload_rx, cache.subscribe(), stopped(stop_rx.clone())));

    shutdown_signal().await;
    tracing::info!("shutting down: closing xDS streams; Envoys keep serving and reconnect");
    let _ = stop_tx.send(true);
    let _ = loop_task.await;
    if let Some(kube) = &kube {
        kube.shutdown().await;
    }
    if let Ok(Err(err)) = xds_task.await {
        tracing::warn!(error = %err, "xDS server ended with an error");
    }
    let _ = admin_task.await;
    Ok(())
}

enum Source {
    /// The directory, and what its watcher saw change since the last load.
    Dir(Box<DirSource>, crate::source::watch::SharedChanges),
    Example,
    Kube(crate::kube::KubeSource),
}

impl Source {
    fn load(&mut self) -> (Arc<Resources>, Vec<Problem>) {
        match self {
            Source::Dir(dir, changed) => {
                let changed = changed.lock().unwrap_or_else(|e| e.into_inner()).take();
                let loaded = dir.load_changed(changed);
                (loaded.resources, loaded.problems)
            }
            Source::Example => {
                let (resources, problems) = crate::source::example::load();
                (Arc::new(resources), problems)
            }
            Source::Kube(kube) => kube.load(),
        }
    }
}

/// The single writer of the xDS cache: reloads input, translates, publishes, and folds Envoy's
/// NACKs back into status.
struct Reconciler {
    state: Arc<State>,
    options: Options,
    source: Option<Source>,
    resources: Arc<Resources>,
    load_problems: Vec<Problem>,
    feedback: Feedback,
    published: BTreeSet<String>,
    /// Per fleet, which input objects produced each (type URL, resource name).
    origins: BTreeMap<String, Arc<portico_translator::Origins>>,
    /// Fired once, when the first config is in the cache: xDS serving starts then.
    first_published: Option<tokio::sync::oneshot::Sender<()>>,
    /// Translation work kept between reloads.
    incremental: pipeline::Incremental,
}

impl Reconciler {
    async fn run(
        mut self,
        mut reloads: mpsc::Receiver<()>,
        mut events: tokio::sync::broadcast::Receiver<XdsEvent>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                Some(()) = reloads.recv() => {
                    self.reload().await;
                    self.reconcile().await;
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        if self.on_event(event) {
                            self.reconcile().await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "xDS events dropped; reading NACKs from the streams instead");
                        if self.resync_rejections() {
                            self.reconcile().await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }

    async fn reload(&mut self) {
        let Some(mut source) = self.source.take() else {
            return;
        };
        let started = Instant::now();
        // The directory source updates its input in place only if nobody else holds it.
        self.resources = Arc::default();
        let (source, (resources, problems)) = tokio::task::spawn_blocking(move || {
            let loaded = source.load();
            (source, loaded)
        })
        .await
        .expect("loading the source does not panic");
        self.source = Some(source);
        for problem in problems.iter().filter(|p| !self.load_problems.contains(p)) {
            tracing::warn!("{problem}");
        }
        self.resources = resources;
        self.load_problems = problems;
        tracing::debug!(ms = started.elapsed().as_secs_f64() * 1e3, "reloaded");
    }

    async fn reconcile(&mut self) {
        let resources = self.resources.clone();
        let options = self.options.clone();
        let feedback = self.feedback.clone();
        let cache = self.state.cache.clone();
        let mut incremental = std::mem::take(&mut self.incremental);
        let started = Instant::now();
        let (incremental, result) = tokio::task::spawn_blocking(move || {
            let result = (|| {
                let translation = incremental.translate(&resources, &options, &feedback)?;
                let translated = started.elapsed();
                let snapshots = incremental.snapshots(&translation, &cache);
                tracing::debug!(
                    translate_ms = translated.as_secs_f64() * 1e3,
                    snapshot_ms = (started.elapsed() - translated).as_secs_f64() * 1e3,
                    reuse = ?incremental.last_reuse(),
                    "translated"
                );
                Ok::<_, String>((translation, snapshots))
            })();
            (incremental, result)
        })
        .await
        .unwrap_or_else(|e| {
            // The memo went down with the task: start the next translation from scratch.
            let error = format!("translation task failed: {e}");
            (pipeline::Incremental::default(), Err(error))
        });
        self.incremental = incremental;
        let elapsed = started.elapsed();
        let (translation, snapshots) = match result {
            Ok(done) => done,
            Err(err) => {
                tracing::error!(error = %err, "translation failed; the last good config keeps serving");
                return;
            }
        };
        let mut changed = 0;
        for (fleet, snapshot) in snapshots {
            if self.state.cache.set_snapshot(&fleet, snapshot) {
                changed += 1;
            }
        }
        let fleets: BTreeSet<String> = translation.fleets.keys().cloned().collect();
        for gone in self.published.difference(&fleets) {
            tracing::info!(fleet = %gone, "fleet removed; its Envoys get an empty config");
            self.state.cache.remove_fleet(gone);
        }
        self.published = fleets;
        if let Some(first) = self.first_published.take() {
            // The first config skips the debounce: streams must never see an empty one.
            self.state.cache.flush();
            let _ = first.send(());
        }
        let published = started.elapsed();

        // Everything below is bookkeeping for status and logs: moved out of the translation,
        // never copied, and the rest dropped off the async workers.
        let mut translation = translation;
        let statuses = std::mem::take(&mut translation.statuses);
        if let Some(Source::Kube(kube)) = &self.source {
            kube.publish_status(statuses.clone());
        }
        self.publish_view(&translation, statuses, elapsed).await;
        self.origins = std::mem::take(&mut translation.fleets)
            .into_iter()
            .map(|(f, c)| (f, c.origins))
            .collect();
        tokio::task::spawn_blocking(move || drop(translation));
        if !self.state.ready.swap(true, Ordering::SeqCst) {
            tracing::info!(
                fleets = self.published.len(),
                "first config published; ready"
            );
        }
        tracing::debug!(
            changed,
            ms = elapsed.as_secs_f64() * 1e3,
            published_ms = published.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "reconciled"
        );
    }

    async fn publish_view(
        &self,
        translation: &Translation,
        statuses: Arc<Vec<portico_translator::ObjectStatus>>,
        elapsed: Duration,
    ) {
        let problems = pipeline::all_problems(&self.load_problems, translation);
        let mut view = self.state.view.write().await;
        for problem in translation
            .problems
            .iter()
            .filter(|p| view.problems.binary_search(p).is_err())
        // sorted by all_problems
        {
            tracing::warn!("{problem}");
        }
        let old = std::mem::replace(&mut view.statuses, statuses);
        view.problems = problems;
        view.translation_seconds = elapsed.as_secs_f64();
        view.reloads += 1;
        drop(view);
        tokio::task::spawn_blocking(move || drop(old));
    }

    /// Folds an xDS event into the feedback the translator turns into Gateway status.
    /// Returns whether status must be recomputed.
    fn on_event(&mut self, event: XdsEvent) -> bool {
        match event.kind {
            XdsEventKind::Nacked => {
                let resources = event.resource_names;
                let culprits = self.culprits(&event.fleet, &event.type_url, &resources);
                tracing::warn!(
                    node = %event.node_id, fleet = %event.fleet, type_url = %event.type_url,
                    version = %event.version, culprits = %culprits,
                    "Envoy rejected config (NACK): {}", event.message
                );
                let rejections = self.feedback.rejected.entry(event.fleet).or_default();
                rejections.retain(|r| r.type_url != event.type_url);
                rejections.push(Rejection {
                    type_url: event.type_url,
                    resource_names: resources,
                    message: event.message,
                });
                // By type, as `resync_rejections` builds them: equal feedback compares equal.
                rejections.sort_by(|a, b| a.type_url.cmp(&b.type_url));
                true
            }
            XdsEventKind::Acked => {
                let Some(rejections) = self.feedback.rejected.get_mut(&event.fleet) else {
                    return false;
                };
                let before = rejections.len();
                rejections.retain(|r| r.type_url != event.type_url);
                let changed = rejections.len() != before;
                if rejections.is_empty() {
                    self.feedback.rejected.remove(&event.fleet);
                }
                changed
            }
            XdsEventKind::Connected | XdsEventKind::Disconnected => false,
        }
    }

    /// Rebuilds the NACK feedback from the streams' own records, after events were dropped (a
    /// large fleet ACKing one change at once can overflow the event channel): a (fleet, type)
    /// stays rejected while a connected node's latest answer for it is a NACK. Returns whether
    /// the feedback changed.
    fn resync_rejections(&mut self) -> bool {
        let mut latest: BTreeMap<(String, String), portico_xds::Nack> = BTreeMap::new();
        for (fleet, type_url, nack) in self.state.cache.nacks() {
            let key = (fleet, type_url);
            if latest.get(&key).is_none_or(|seen| seen.at < nack.at) {
                latest.insert(key, nack);
            }
        }
        let mut rejected: BTreeMap<String, Vec<Rejection>> = BTreeMap::new();
        for ((fleet, type_url), nack) in latest {
            rejected.entry(fleet).or_default().push(Rejection {
                type_url,
                resource_names: nack.resource_names,
                message: nack.message,
            });
        }
        let changed = rejected != self.feedback.rejected;
        self.feedback.rejected = rejected;
        changed
    }

    /// Names the input objects (with file and line) behind rejected resources, for the log.
    fn culprits(&self, fleet: &str, type_url: &str, names: &[String]) -> String {
        let Some(origins) = self.origins.get(fleet) else {
            return String::new();
        };
        let mut out = BTreeSet::new();
        for ((t, name), keys) in origins.iter() {
            if t != type_url || !(names.is_empty() || names.iter().any(|n| n == name)) {
                continue;
            }
            for key in keys {
                let at = self
                    .resources
                    .sources
                    .get(key)
                    .map(|s| format!(" ({}:{})", s.file, s.line))
                    .unwrap_or_default();
                out.insert(format!("{} {}/{}{at}", key.kind, key.namespace, key.name));
            }
        }
        out.into_iter().collect::<Vec<_>>().join(", ")
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
