//! The xDS protocol end to end with real Envoy, over state-of-the-world and delta ADS (each
//! scenario runs once per variant, the variant chosen by `portico bootstrap [--delta]`):
//!
//! - a config Envoy rejects is NACKed, held, reported (proxy-status, Gateway status), the old
//!   routes keep serving, and fixing the file clears it;
//! - `portico serve` restarted (killed) while Envoy serves: requests keep succeeding and after
//!   reconnecting Envoy is sent no resource it already has;
//! - an Envoy of a fleet with no Gateway gets an empty config, shows as an unknown fleet, and
//!   is served on the same stream once the Gateway appears;
//! - graceful shutdown (SIGTERM) closes streams with OK; Envoy keeps serving and reconnects.
//!
//! One file per scenario in `e2e_xds/`; processes are driven by `procs.rs`, the config and
//! common steps are in `world.rs`, checks in `checks.rs`, background requests in `traffic.rs`,
//! a scripted ADS client in `ads.rs`. Tests marked `#[ignore]` pin down known Portico bugs:
//! run them with `-- --ignored`.

#[path = "e2e_xds/ads.rs"]
mod ads;
#[path = "e2e_xds/checks.rs"]
mod checks;
#[path = "e2e_xds/fleets.rs"]
mod fleets;
#[path = "e2e_xds/nack.rs"]
mod nack;
#[path = "e2e_xds/procs.rs"]
mod procs;
#[path = "e2e_xds/restart.rs"]
mod restart;
#[path = "e2e_xds/shutdown.rs"]
mod shutdown;
#[path = "e2e_xds/traffic.rs"]
mod traffic;
#[path = "e2e_xds/world.rs"]
mod world;
