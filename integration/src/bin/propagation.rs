//! `portico-propagation`: how fast a new route file reaches Envoy, and whether traffic on
//! existing routes sees errors meanwhile (see BENCHMARKS.md). Needs the `portico` binary
//! (`$PORTICO_BIN`, else next to this executable) and Envoy (`$PORTICO_ENVOY`, else
//! `scripts/setup-envoy.sh`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portico_integration::propagation::{PropagationConfig, run};

#[derive(Parser, Debug)]
#[command(
    name = "portico-propagation",
    about = "Measures file change -> Envoy serving the new route"
)]
struct Args {
    /// Routes in the directory before the first add.
    #[arg(long, default_value_t = 3000)]
    routes: usize,
    /// Backends the existing routes share.
    #[arg(long, default_value_t = 10)]
    backends: usize,
    /// Route files to add, one at a time.
    #[arg(long, default_value_t = 100)]
    adds: usize,
    /// Each added file also brings its own Backend (a new cluster).
    #[arg(long)]
    new_backends: bool,
    /// Envoy uses delta ADS.
    #[arg(long)]
    delta: bool,
    /// Background clients on existing routes.
    #[arg(long, default_value_t = 4)]
    load_clients: usize,
    /// Each background client sends at most one request per this many milliseconds.
    #[arg(long, default_value_t = 5)]
    load_interval_ms: u64,
    /// Pause after each add, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pause_ms: u64,
    /// Also write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let config = PropagationConfig {
        routes: args.routes,
        backends: args.backends,
        adds: args.adds,
        new_backends: args.new_backends,
        delta: args.delta,
        load_clients: args.load_clients,
        load_interval: Duration::from_millis(args.load_interval_ms),
        pause: Duration::from_millis(args.pause_ms),
        ..PropagationConfig::default()
    };
    let report = run(&config).await?;
    print!("{report}");
    if let Some(path) = args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(&path, json)?;
        }
    }
    let clean = report.timed_out == 0 && report.steady.non_2xx() == 0 && report.steady.errors == 0;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
