//! `portico`: an xDS control plane for stock Envoy, driven by Gateway API resources.

mod admin;
mod alloc;
mod bootstrap;
mod cli;
mod commands;
mod kube;
mod pipeline;
mod serve;
mod source;
#[cfg(test)]
mod test_rng;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::Cli::parse_and_run()
}
