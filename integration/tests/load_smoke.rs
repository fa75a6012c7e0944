//! Keeps the fleet simulator (`portico-load`) working: a small fleet against the real
//! `portico serve`, asserting correctness only (every stream synced and ACKed every change).
//! Timings belong in BENCHMARKS.md, never in assertions.

use std::time::Duration;

use portico_integration::harness::portico_binary;
use portico_integration::load::{LoadConfig, Report, run};

fn small(delta: bool) -> anyhow::Result<LoadConfig> {
    Ok(LoadConfig {
        streams: 20,
        routes: 20,
        backends: 5,
        delta,
        changes: 3,
        pause: Duration::from_millis(50),
        deadline: Duration::from_secs(60),
        ..LoadConfig::new(portico_binary()?)
    })
}

fn check(report: &Report) {
    assert!(
        report.complete(),
        "not every stream synced and ACKed every change:\n{report}"
    );
    assert!(report.sync_bytes > 0);
    assert_eq!(report.changes.len(), 3);
    assert!(report.changes.iter().all(|c| c.bytes > 0), "{report}");
    assert!(
        report.rss_before.rss_kib > 0,
        "portico's memory was not read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_fleet_syncs_and_acks_every_change() -> anyhow::Result<()> {
    let report = run(&small(false)?).await?;
    println!("{report}");
    check(&report);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_fleet_syncs_and_acks_every_change() -> anyhow::Result<()> {
    check(&run(&small(true)?).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_can_share_a_connection() -> anyhow::Result<()> {
    let config = LoadConfig {
        streams_per_connection: 10,
        changes: 1,
        ..small(false)?
    };
    let report = run(&config).await?;
    assert!(report.complete(), "{report}");
    Ok(())
}

use portico_integration::propagation;

/// A few route adds through real Envoy under a light steady load: every add is served and the
/// existing routes never answer anything but 2xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_adds_routes_without_errors() -> anyhow::Result<()> {
    let config = propagation::PropagationConfig {
        routes: 20,
        backends: 2,
        adds: 3,
        load_clients: 1,
        load_interval: Duration::from_millis(10),
        pause: Duration::from_millis(20),
        ..Default::default()
    };
    let report = propagation::run(&config).await?;
    println!("{report}");
    assert_eq!(report.timed_out, 0, "{report}");
    assert_eq!(report.latency.count, 3, "{report}");
    assert_eq!(report.steady.non_2xx(), 0, "{report}");
    assert_eq!(report.propagating_unexpected, 0, "{report}");
    assert!(report.steady.requests > 0, "{report}");
    Ok(())
}
