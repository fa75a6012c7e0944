//! The propagation benchmark behind `portico-propagation`: real Portico, real Envoy, an echo
//! backend, a config directory with many routes. Adds routes one file at a time and measures
//! how long until a request through Envoy answers 200, while a steady load on existing routes
//! counts every non-2xx answer.
//!
//! Compiled into the `portico-propagation` binary (src/bin/propagation.rs), not the library.

pub mod traffic;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::echo::{EchoConfig, spawn};
use crate::harness::{
    ConfigDir, Envoy, EnvoyOptions, Portico, PorticoOptions, eventually, free_port,
};
use crate::load::fixture::{Fixture, GATEWAY, NAMESPACE, backend_yaml, route_yaml, write_atomic};
use crate::load::stats::Latency;
use traffic::{Client, LoadCounts, SteadyLoad};

/// What one run does.
#[derive(Clone, Debug)]
pub struct PropagationConfig {
    /// Routes in the directory before the first add.
    pub routes: usize,
    pub backends: usize,
    /// Route files to add, one at a time.
    pub adds: usize,
    /// Each added file also brings its own Backend (a new cluster), not only a route.
    pub new_backends: bool,
    /// Envoy speaks delta ADS.
    pub delta: bool,
    /// Background clients on existing routes, each sending at most one request per interval.
    pub load_clients: usize,
    pub load_interval: Duration,
    /// Between two requests to the route being added.
    pub poll_interval: Duration,
    /// Quiet time after each add.
    pub pause: Duration,
    /// Limit for start-up and for each add.
    pub deadline: Duration,
}

impl Default for PropagationConfig {
    fn default() -> Self {
        PropagationConfig {
            routes: 3000,
            backends: 10,
            adds: 100,
            new_backends: false,
            delta: false,
            load_clients: 4,
            load_interval: Duration::from_millis(5),
            poll_interval: Duration::from_millis(1),
            pause: Duration::from_millis(100),
            deadline: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PropagationReport {
    pub routes: usize,
    pub adds: usize,
    pub variant: String,
    pub new_backends: bool,
    /// File written -> first 200 through Envoy, per add that made it.
    pub latency: Latency,
    /// Adds that never answered 200 before the deadline.
    pub timed_out: usize,
    /// Answers to the route being added other than 404 or 200 (a 5xx here means Envoy knew
    /// the route before its cluster).
    pub propagating_unexpected: u64,
    /// The steady load on existing routes.
    pub steady: LoadCounts,
}

impl std::fmt::Display for PropagationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| metric | value |")?;
        writeln!(f, "|---|---|")?;
        let what = if self.new_backends {
            "route + Backend"
        } else {
            "route"
        };
        writeln!(
            f,
            "| setup | {} routes, Envoy over {}, {} adds ({what} per file) |",
            self.routes, self.variant, self.adds
        )?;
        writeln!(f, "| file written -> first 200 | {} |", self.latency)?;
        writeln!(f, "| adds that timed out | {} |", self.timed_out)?;
        writeln!(
            f,
            "| unexpected answers on the new route | {} |",
            self.propagating_unexpected
        )?;
        writeln!(f, "| steady load: requests | {} |", self.steady.requests)?;
        writeln!(
            f,
            "| steady load: non-2xx / 5xx / no answer | {} / {} / {} |",
            self.steady.non_2xx(),
            self.steady.count_5xx(),
            self.steady.errors
        )?;
        writeln!(f, "| steady load: statuses | {:?} |", self.steady.statuses)?;
        for e in &self.steady.first_errors {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

/// Runs the scenario. Uses `harness::portico_binary()` and `harness::envoy_binary()`.
pub async fn run(config: &PropagationConfig) -> anyhow::Result<PropagationReport> {
    let echo = spawn(EchoConfig::new("echo-0", NAMESPACE)).await?;
    let dir = ConfigDir::new()?;
    let port = free_port();
    let fixture = Fixture {
        routes: config.routes,
        backends: config.backends,
        backend_addr: echo.addr(),
        port,
    };
    fixture.write(dir.path())?;
    let portico = Portico::start(dir.path(), PorticoOptions::default()).await?;
    let fleet = format!("{NAMESPACE}/{GATEWAY}");
    let envoy = Envoy::start(
        &portico,
        &fleet,
        EnvoyOptions {
            delta: config.delta,
            node_id: None,
        },
    )
    .await?;
    let addr = eventually(config.deadline, || envoy.address_for_port(port)).await?;
    let mut client = Client::new(addr);
    let last = format!("/r-{}", config.routes.saturating_sub(1));
    let started = Instant::now();
    loop {
        match client.get(&last, Duration::from_secs(2)).await {
            Ok(200) => break,
            _ if started.elapsed() > config.deadline => {
                bail!(
                    "{last} never answered 200 through Envoy; envoy log:\n{}",
                    envoy.log_tail()
                )
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }

    let step = (config.routes / 100).max(1);
    let paths = (0..config.routes)
        .step_by(step)
        .map(|i| format!("/r-{i}"))
        .collect();
    let steady = SteadyLoad::start(addr, config.load_clients, config.load_interval, paths);
    let mut report = PropagationReport {
        routes: config.routes,
        adds: config.adds,
        variant: if config.delta {
            "delta ADS"
        } else {
            "SotW ADS"
        }
        .into(),
        new_backends: config.new_backends,
        ..Default::default()
    };
    let mut latencies = Vec::new();
    for k in 0..config.adds {
        let name = format!("new-{k:05}");
        let path = format!("/{name}");
        let mut yaml = if config.new_backends {
            format!("{}---\n", backend_yaml(&name, echo.addr()))
        } else {
            String::new()
        };
        let backend = if config.new_backends {
            name.clone()
        } else {
            fixture.backend_of(k)
        };
        yaml.push_str(&route_yaml(&name, &path, &backend));
        let file = dir.path().join("routes").join(format!("{name}.yaml"));
        let written = Instant::now();
        write_atomic(&file, &yaml).context("adding a route file")?;
        loop {
            match client.get(&path, Duration::from_secs(2)).await {
                Ok(200) => {
                    latencies.push(written.elapsed());
                    break;
                }
                Ok(404) | Err(_) => {}
                Ok(_) => report.propagating_unexpected += 1,
            }
            if written.elapsed() > config.deadline {
                report.timed_out += 1;
                break;
            }
            tokio::time::sleep(config.poll_interval).await;
        }
        tokio::time::sleep(config.pause).await;
    }
    report.latency = Latency::of(&latencies);
    report.steady = steady.finish().await;
    Ok(report)
}
