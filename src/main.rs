//! `portico`: an xDS control plane for stock Envoy, driven by Gateway API resources.

mod admin;
mod bootstrap;
mod cli;
mod commands;
mod kube;
mod pipeline;
mod serve;
mod source;

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::Cli::parse_and_run()
}
