//! Command-line interface: argument parsing and dispatch. The sub-commands are a contract
//! that tools and tests drive, so names and defaults here change only with care.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code for bad configuration or usage (sysexits EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "portico",
    version,
    about = "xDS control plane for stock Envoy, driven by Gateway API resources"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info,portico=debug`.
    #[arg(long, global = true, env = "PORTICO_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve xDS to Envoy fleets from a directory of YAML files (or the built-in example).
    Serve(ServeArgs),
    /// Print an Envoy bootstrap (YAML) that points Envoy at Portico over ADS.
    Bootstrap(BootstrapArgs),
    /// Load and translate a directory offline; print one line per problem.
    Validate {
        /// Directory of Gateway API YAML files.
        dir: PathBuf,
    },
    /// Print every Gateway API object with the status Portico computes for it.
    Status {
        dir: PathBuf,
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Print one fleet's Envoy resources in Envoy's JSON mapping.
    Translate {
        dir: PathBuf,
        /// The fleet: the Gateway as NAMESPACE/NAME.
        #[arg(long)]
        gateway: String,
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
        /// Print private keys instead of redacting them.
        #[arg(long)]
        show_secrets: bool,
    },
    /// Show every connected Envoy and whether it is in sync, from a running Portico.
    ProxyStatus {
        #[arg(long, default_value = "127.0.0.1:19000")]
        admin_address: String,
        /// Show one node in detail, with NACK errors.
        #[arg(long)]
        node: Option<String>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory of YAML files to watch; without it, the built-in example config is served.
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_address: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:19000")]
    pub admin_address: SocketAddr,
    /// Give each Gateway without spec.addresses its own stable address from this IPv4 pool
    /// (e.g. 127.0.1.0/24), so several Gateways can share a port on one host.
    #[arg(long)]
    pub address_pool: Option<String>,
    /// Address reported in Gateway status when no pool or spec.addresses applies.
    #[arg(long)]
    pub gateway_address: Option<String>,
    /// Quiet period after a file change before reloading while a written file is still open,
    /// in milliseconds (once every written file is closed or renamed into place, the reload
    /// starts 2 ms after the last event).
    #[arg(long, default_value_t = 20)]
    pub debounce_ms: u64,
    /// Longest a reload waits behind a stream of changes, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub max_delay_ms: u64,
    /// Hold a new config back this long for further changes before pushing it to Envoys, in
    /// milliseconds. 0 pushes at once: changes that arrive while Portico translates are already
    /// coalesced into the next translation.
    #[arg(long, default_value_t = 0)]
    pub push_debounce_ms: u64,
    #[command(flatten)]
    pub kube: Box<crate::kube::KubeFlags>,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BootstrapArgs {
    /// The fleet this Envoy belongs to: a Gateway as NAMESPACE/NAME.
    #[arg(long)]
    pub gateway: String,
    /// Node id (default: a name derived from the Gateway).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where Portico's xDS server listens, as HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:18000")]
    pub xds_address: String,
    /// Envoy admin port.
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// Address Envoy's admin interface binds (keep it on loopback: it is unauthenticated).
    #[arg(long, default_value = "127.0.0.1")]
    pub admin_bind: std::net::IpAddr,
    /// Use delta (incremental) ADS instead of state of the world.
    #[arg(long)]
    pub delta: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Cli {
    pub fn parse_and_run() -> ExitCode {
        let cli = Cli::parse();
        init_tracing(&cli.log);
        let result = match cli.command {
            Command::Serve(args) => crate::serve::run(args),
            Command::Bootstrap(args) => crate::bootstrap::run(&args),
            Command::Validate { dir } => crate::commands::validate(&dir),
            Command::Status { dir, output } => crate::commands::status(&dir, output),
            Command::Translate {
                dir,
                gateway,
                output,
                show_secrets,
            } => crate::commands::translate(&dir, &gateway, output, show_secrets),
            Command::ProxyStatus {
                admin_address,
                node,
            } => crate::commands::proxy_status(&admin_address, node.as_deref()),
        };
        match result {
            Ok(code) => code,
            Err(err) => {
                eprintln!("portico: {err:#}");
                ExitCode::from(EXIT_USAGE)
            }
        }
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
