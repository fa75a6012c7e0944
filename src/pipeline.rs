//! Resources -> translation, shared by the offline commands and `serve`.

use std::collections::BTreeMap;

use portico_translator::{Feedback, FleetConfig, Options, Problem, Resources, Translation};

/// Translates, catching a translator panic so that a bug never takes down the server: the
/// caller keeps serving its last good config.
pub fn translate(
    resources: &Resources,
    options: &Options,
    feedback: &Feedback,
) -> Result<Translation, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        portico_translator::translate(resources, options, feedback)
    }))
    .map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        format!("translator failed: {message}")
    })
}

/// All problems, sorted and without repeats, load problems first.
pub fn all_problems(load: &[Problem], translation: &Translation) -> Vec<Problem> {
    let mut problems: Vec<Problem> = load.iter().chain(&translation.problems).cloned().collect();
    problems.sort();
    problems.dedup();
    problems
}

/// Builds the xDS snapshot of one fleet. Resources are encoded here, once, and shared by
/// every stream of the fleet.
pub fn snapshot(fleet: &FleetConfig) -> portico_xds::Snapshot {
    let mut snapshot = portico_xds::Snapshot::new();
    for (type_url, name, any) in portico_translator::render::fleet_to_any(fleet) {
        snapshot.insert(&type_url, name, any);
    }
    snapshot
}

/// The snapshots of every fleet of a translation.
pub fn snapshots(translation: &Translation) -> BTreeMap<String, portico_xds::Snapshot> {
    translation
        .fleets
        .iter()
        .map(|(fleet, config)| (fleet.clone(), snapshot(config)))
        .collect()
}

/// Parses `--address-pool` (`A.B.C.D/N`).
pub fn parse_pool(pool: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (ip, len) = pool.split_once('/').ok_or_else(|| {
        anyhow::anyhow!("--address-pool must be an IPv4 CIDR like 127.0.1.0/24, got {pool:?}")
    })?;
    let ip = ip
        .parse()
        .map_err(|e| anyhow::anyhow!("--address-pool {pool:?}: {e}"))?;
    let len: u8 = len
        .parse()
        .map_err(|e| anyhow::anyhow!("--address-pool {pool:?}: {e}"))?;
    if len > 32 {
        anyhow::bail!("--address-pool {pool:?}: prefix length must be at most 32");
    }
    Ok((ip, len))
}
