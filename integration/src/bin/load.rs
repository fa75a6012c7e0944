//! `portico-load`: the fleet simulator (see BENCHMARKS.md). Starts `portico serve` on a
//! generated config directory, connects N simulated Envoys over ADS, changes routes through
//! the directory, and prints change -> ACK latency, bytes and Portico's memory as a table
//! (and as JSON with `--json FILE`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portico_integration::load::{LoadConfig, run, server::sibling_portico};

#[derive(Parser, Debug)]
#[command(
    name = "portico-load",
    about = "Simulates a fleet of Envoys against a real portico serve"
)]
struct Args {
    /// Simulated Envoys (one ADS stream each).
    #[arg(long, default_value_t = 100)]
    streams: usize,
    /// Streams per HTTP/2 connection (1 = one connection per node, like Envoy).
    #[arg(long, default_value_t = 1)]
    streams_per_connection: usize,
    /// HTTPRoutes in the config directory (one file each).
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    /// Backends the routes share (each becomes a cluster).
    #[arg(long, default_value_t = 100)]
    backends: usize,
    /// Incremental (delta) ADS instead of state of the world.
    #[arg(long)]
    delta: bool,
    /// One-route changes to measure after the initial sync.
    #[arg(long, default_value_t = 20)]
    changes: usize,
    /// Pause between changes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    pause_ms: u64,
    /// Deadline for each phase, in seconds.
    #[arg(long, default_value_t = 120)]
    deadline_s: u64,
    /// The portico binary (default: $PORTICO_BIN, else `portico` next to this executable).
    #[arg(long)]
    portico: Option<PathBuf>,
    /// Also write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let portico = match args.portico {
        Some(path) => path,
        None => sibling_portico()?,
    };
    let config = LoadConfig {
        streams: args.streams,
        streams_per_connection: args.streams_per_connection,
        routes: args.routes,
        backends: args.backends,
        delta: args.delta,
        changes: args.changes,
        pause: Duration::from_millis(args.pause_ms),
        deadline: Duration::from_secs(args.deadline_s),
        connect_parallelism: 64,
        ..LoadConfig::new(portico)
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
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
