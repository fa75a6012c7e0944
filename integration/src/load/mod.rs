//! The fleet simulator behind `portico-load`: starts `portico serve` on a generated config
//! directory, opens N ADS streams as N Envoy nodes of one fleet, waits until every one holds
//! the complete config, then changes one route at a time through the directory and measures
//! change -> ACK per stream, bytes received, Portico's memory, and the CPU both sides used.
//!
//! The simulator stands in for Envoys that would run on other machines, so it spends as little
//! CPU as it can while behaving like them: responses are read straight from the HTTP/2 DATA
//! chunks (`ads.rs`, `rope.rs`), only their envelope is parsed per stream (`envelope.rs`), and
//! resource bodies are decoded once per content version for the whole fleet (`decode.rs`).

mod ads;
mod decode;
mod envelope;
pub mod fixture;
mod node;
mod probe;
mod rope;
pub mod server;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tonic::transport::Endpoint;

pub use fixture::Fixture;
pub use probe::{Probe, Shared};
pub use server::PorticoProcess;
pub use stats::{ChangeReport, CpuSplit, CpuTime, Latency, Memory, Report};

/// What one `portico-load` run does.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Simulated Envoys, one ADS stream each.
    pub streams: usize,
    /// Streams sharing one HTTP/2 connection (1: one connection per node, like Envoy).
    pub streams_per_connection: usize,
    pub routes: usize,
    pub backends: usize,
    /// Incremental (delta) ADS instead of state of the world.
    pub delta: bool,
    /// One-route changes to make after the initial sync.
    pub changes: usize,
    /// Quiet time between changes, so each is measured on its own.
    pub pause: Duration,
    /// Limit for each phase (start, sync, each change).
    pub deadline: Duration,
    /// Connections opened at the same time.
    pub connect_parallelism: usize,
    /// The `portico` binary to run.
    pub portico: PathBuf,
}

impl LoadConfig {
    /// Small defaults; callers set what they measure.
    pub fn new(portico: PathBuf) -> Self {
        LoadConfig {
            streams: 20,
            streams_per_connection: 1,
            routes: 100,
            backends: 10,
            delta: false,
            changes: 5,
            pause: Duration::from_millis(200),
            deadline: Duration::from_secs(60),
            connect_parallelism: 64,
            portico,
        }
    }
}

/// Runs the whole scenario; the report says what completed (check [`Report::complete`]).
pub async fn run(config: &LoadConfig) -> anyhow::Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("portico-load-config-")
        .tempdir()?;
    let fixture = Fixture {
        routes: config.routes,
        backends: config.backends,
        // Nothing is sent to the backends: the simulator only speaks xDS.
        backend_addr: SocketAddr::from(([127, 0, 0, 1], 9)),
        port: 10080,
    };
    fixture.write(dir.path())?;
    let portico = PorticoProcess::start(&config.portico, dir.path(), config.deadline).await?;
    let memory = || Memory::of(portico.pid).unwrap_or_default();
    let cpu = || {
        (
            CpuTime::of(portico.pid).unwrap_or_default(),
            CpuTime::of(std::process::id()).unwrap_or_default(),
        )
    };
    let split = |(p1, s1): (CpuTime, CpuTime), (p0, s0): (CpuTime, CpuTime), n: usize| CpuSplit {
        portico_ms: p1.since(p0) / n.max(1) as f64,
        simulator_ms: s1.since(s0) / n.max(1) as f64,
    };
    let mut report = Report {
        variant: if config.delta {
            "delta ADS"
        } else {
            "SotW ADS"
        }
        .into(),
        streams: config.streams,
        routes: config.routes,
        backends: config.backends,
        rss_before: memory(),
        ..Default::default()
    };

    let (probe_tx, probe_rx) = watch::channel(None);
    let shared = Shared::new(Fixture::fleet(), probe_rx);
    let started = Instant::now();
    let cpu_start = cpu();
    let mut nodes = connect_and_run(portico.xds, config, &shared)?;
    report.synced = shared.wait_synced(config.streams, config.deadline).await;
    report.sync_wall_ms = started.elapsed().as_secs_f64() * 1e3;
    report.connect_wall_ms = shared.connected_us.load(Ordering::Relaxed) as f64 / 1e3;
    report.sync = Latency::of(&shared.sync_times());
    report.sync_bytes = shared.received_bytes();
    let cpu_synced = cpu();
    report.sync_cpu = split(cpu_synced, cpu_start, 1);
    report.rss_synced = memory();
    report.kib_per_stream = (report.rss_synced.rss_kib as f64 - report.rss_before.rss_kib as f64)
        / config.streams.max(1) as f64;

    let mut all = Vec::new();
    let mut slowest = Vec::new();
    for k in 1..=config.changes {
        let live = config.streams - shared.failed.load(Ordering::Relaxed);
        let i = (k - 1) % config.routes.max(1);
        let marker = format!("/load-change-{k:06}");
        let yaml = fixture::route_yaml(&format!("r-{i}"), &marker, &fixture.backend_of(i));
        let bytes_before = shared.received_bytes();
        shared.decoder.new_probe(k as u64);
        let probe = Probe::new(k as u64, marker);
        probe_tx.send_replace(Some(probe.clone()));
        fixture::write_atomic(&fixture.route_file(dir.path(), i), &yaml)?;
        let acked = probe.wait_for(live, config.deadline).await;
        let latencies = probe.latencies();
        if let Some(max) = latencies.iter().max() {
            slowest.push(*max);
        }
        all.extend_from_slice(&latencies);
        report.changes.push(ChangeReport {
            acked,
            latency: Latency::of(&latencies),
            bytes: shared.received_bytes() - bytes_before,
        });
        tokio::time::sleep(config.pause).await;
    }
    report.change_cpu = split(cpu(), cpu_synced, config.changes);
    report.change_ack = Latency::of(&all);
    report.change_all_acked = Latency::of(&slowest);
    report.rss_after = memory();
    report.failed = shared.failed.load(Ordering::Relaxed);
    report.errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    nodes.abort_all();
    Ok(report)
}

/// One HTTP/2 connection per `streams_per_connection` streams, opened a few at a time; each
/// connection's streams start as soon as it is up (as Envoys do), not once all are.
fn connect_and_run(
    xds: SocketAddr,
    config: &LoadConfig,
    shared: &Arc<Shared>,
) -> anyhow::Result<JoinSet<()>> {
    let per_connection = config.streams_per_connection.max(1);
    let endpoint = Endpoint::from_shared(format!("http://{xds}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    let limit = Arc::new(Semaphore::new(config.connect_parallelism.max(1)));
    let mut connections = JoinSet::new();
    for first in (0..config.streams).step_by(per_connection) {
        let ids = first..(first + per_connection).min(config.streams);
        let (endpoint, limit, shared) = (endpoint.clone(), limit.clone(), shared.clone());
        let delta = config.delta;
        connections.spawn(async move {
            let channel = async {
                let _permit = limit.acquire_owned().await?;
                endpoint
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {xds}"))
            };
            let channel = match channel.await {
                Ok(channel) => {
                    shared.connected();
                    channel
                }
                Err(err) => {
                    for i in ids {
                        shared.fail(format!("load-{i}: {err:#}"));
                    }
                    return;
                }
            };
            // Dropping this set (the run is over) ends the streams.
            let mut streams = JoinSet::new();
            for i in ids {
                streams.spawn(node::run(
                    channel.clone(),
                    format!("load-{i}"),
                    delta,
                    shared.clone(),
                ));
            }
            while streams.join_next().await.is_some() {}
        });
    }
    Ok(connections)
}
