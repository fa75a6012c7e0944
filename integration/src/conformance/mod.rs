//! The conformance runner: every `shared/conformance/cases/*.yaml`, run against the real
//! `portico` binary and real Envoy with echo backends standing in for upstream's Deployments.

pub mod applied;
pub mod backends;
pub mod case;
pub mod certs;
pub mod expect;
pub mod l4;
pub mod manifests;
pub mod pool;
pub mod runner;
pub mod runtime;
pub mod skip;
pub mod status;
pub mod steps;
pub mod traffic;
mod weights;

pub use runner::{CaseResult, Outcome, RunnerConfig, render_table, run_all};
