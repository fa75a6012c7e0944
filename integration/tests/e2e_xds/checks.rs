//! Checks shared by the scenarios: the ADS variant, connection state, Envoy's stats and
//! `config` log lines, the proxy-status table and Prometheus text.

use anyhow::{Context, bail, ensure};
use portico_integration::harness::eventually;
use serde_json::Value;

use crate::procs::{Proxy, Stats};
use crate::world::{CDS, CONVERGE, EDS, LDS, RDS, RECONNECT, World};

/// The bootstrap chose the variant, Envoy uses it, and Portico sees it.
pub async fn check_variant(world: &World) -> anyhow::Result<()> {
    let want = if world.delta { "DELTA_GRPC" } else { "GRPC" };
    let bootstrap: Value = serde_yaml::from_str(&world.envoy.bootstrap)?;
    ensure!(
        bootstrap["dynamic_resources"]["ads_config"]["api_type"] == want,
        "bootstrap: {bootstrap}"
    );
    let dump: Value = serde_json::from_str(&world.envoy.admin_get("/config_dump").await?)?;
    let used = dump.to_string();
    ensure!(
        used.contains(&format!("\"api_type\":\"{want}\"")),
        "Envoy runs with another api_type: {used}"
    );
    let node = world.node().await?;
    ensure!(node["variant"] == world.variant(), "variant: {node}");
    Ok(())
}

/// Waits until the Envoy is connected to the (new) Portico and settled: CDS and LDS ACKed,
/// EDS and RDS ACKed or, after a delta reconnect where Envoy already had them, never sent.
pub async fn until_reconnected(world: &World) -> anyhow::Result<Value> {
    eventually(RECONNECT, || async {
        let node = world.node().await?;
        for t in [CDS, LDS] {
            ensure!(node["types"][t]["state"] == "SYNCED", "{t}: {node}");
        }
        for t in [EDS, RDS] {
            let state = &node["types"][t]["state"];
            ensure!(state == "SYNCED" || state == "NOT_SENT", "{t}: {node}");
        }
        Ok(node)
    })
    .await
    .with_context(|| world.logs())
}

/// Envoy's view of its control plane connection goes to 0.
pub async fn until_disconnected(envoy: &Proxy) -> anyhow::Result<()> {
    eventually(CONVERGE, || async {
        let state = envoy.stats().await?.get("control_plane.connected_state");
        ensure!(state == 0, "control_plane.connected_state is {state}");
        Ok(())
    })
    .await
    .with_context(|| envoy.log_tail())
}

/// Envoy state that changes whenever it applies a resource it did not already have.
pub fn unchanged_envoy_state(before: &Stats, after: &Stats) -> anyhow::Result<()> {
    let counters = [
        "cluster_manager.cluster_added",
        "cluster_manager.cluster_modified",
        "cluster_manager.cluster_removed",
        "listener_manager.listener_added",
        "listener_manager.listener_modified",
        "listener_manager.listener_removed",
        "listener_manager.listener_create_success",
    ];
    let mut changed = Vec::new();
    for name in counters {
        if before.get(name) != after.get(name) {
            changed.push(format!(
                "{name}: {} -> {}",
                before.get(name),
                after.get(name)
            ));
        }
    }
    let reloads = |s: &Stats| s.sum(".rds.", ".config_reload");
    if reloads(before) != reloads(after) {
        changed.push(format!(
            "rds config_reload: {} -> {}",
            reloads(before),
            reloads(after)
        ));
    }
    for name in [
        "cluster_manager.cds.version_text",
        "listener_manager.lds.version_text",
    ] {
        if before.text(name) != after.text(name) {
            changed.push(format!(
                "{name}: {:?} -> {:?}",
                before.text(name),
                after.text(name)
            ));
        }
    }
    if !changed.is_empty() {
        bail!("Envoy applied changes after reconnecting: {changed:?}");
    }
    Ok(())
}

/// `(type URL, added or updated, removed)` of every xDS update Envoy accepted, from its
/// `config` debug log: SotW `gRPC config for T accepted with N resources with version V`,
/// delta `Delta config for T (version V) accepted with N resources added, M removed`.
pub fn accepted_updates(log: &str) -> Vec<(String, usize, usize)> {
    let number_after = |line: &str, key: &str| -> Option<usize> {
        let rest = line.split(key).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    log.lines()
        .filter_map(|l| {
            if l.contains("gRPC config for ") && l.contains(" accepted with ") {
                let t = l.split("gRPC config for ").nth(1)?.split(' ').next()?;
                Some((t.to_string(), number_after(l, " accepted with ")?, 0))
            } else if l.contains("Delta config for ") && l.contains(" accepted with ") {
                let t = l.split("Delta config for ").nth(1)?.split(' ').next()?;
                let added = number_after(l, " accepted with ")?;
                let removed = number_after(l, " added, ")?;
                Some((t.to_string(), added, removed))
            } else {
                None
            }
        })
        .collect()
}

/// The gRPC statuses with which Envoy saw its xDS stream close, in order, from its `config`
/// log: `... gRPC config stream to portico-xds closed: STATUS, MESSAGE` (debug for OK, warning
/// otherwise).
pub fn stream_close_statuses(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("gRPC config stream to portico-xds closed"))
        .filter_map(|l| {
            let (_, rest) = l.split("closed").nth(1)?.split_once(": ")?;
            Some(rest.split(',').next()?.trim().to_string())
        })
        .collect()
}

/// The cells of the proxy-status table row of `node` (columns are separated by at least two
/// spaces; cells such as `NOT SENT` hold one).
pub fn table_row<'a>(table: &'a str, node: &str) -> anyhow::Result<Vec<&'a str>> {
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .with_context(|| format!("node {node} not in proxy-status:\n{table}"))?;
    Ok(row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect())
}

/// Sum of a Prometheus metric's samples whose labels mention `label_part`.
pub fn metric(text: &str, name: &str, label_part: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label_part))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Envoy 1.40 writes them.
    const LOG: &str = "\
[2026-11-26 08:58:20.138][1][debug][config] [source/extensions/config_subscription/grpc/grpc_subscription_impl.cc:111] gRPC config for type.googleapis.com/envoy.config.cluster.v3.Cluster accepted with 2 resources with version 2d06
[2026-11-26 08:59:39.028][1][debug][config] [source/extensions/config_subscription/grpc/delta_subscription_state.cc:275] Delta config for type.googleapis.com/envoy.config.listener.v3.Listener accepted with 0 resources added, 3 removed
[2026-11-26 08:58:23.072][1][debug][config] [./source/extensions/config_subscription/grpc/grpc_stream.h:182] StreamAggregatedResources gRPC config stream to portico-xds closed: 0, via_upstream
[2026-11-26 08:58:23.908][1][warning][config] [./source/extensions/config_subscription/grpc/grpc_stream.h:233] DeltaAggregatedResources gRPC config stream to portico-xds closed: 14, upstream connect error or disconnect/reset before headers. reset reason: remote connection failure
";

    #[test]
    fn reads_envoy_config_log_lines() {
        let cluster = "type.googleapis.com/envoy.config.cluster.v3.Cluster".to_string();
        let listener = "type.googleapis.com/envoy.config.listener.v3.Listener".to_string();
        assert_eq!(
            accepted_updates(LOG),
            vec![(cluster, 2, 0), (listener, 0, 3)]
        );
        assert_eq!(stream_close_statuses(LOG), vec!["0", "14"]);
    }

    #[test]
    fn reads_proxy_status_rows_and_metrics() {
        let table = "NODE  FLEET                     VARIANT   CDS     SDS\n\
                     n1    e2e/late (unknown fleet)  sotw-ads  SYNCED  NOT SENT\n";
        assert_eq!(
            table_row(table, "n1").unwrap(),
            [
                "n1",
                "e2e/late (unknown fleet)",
                "sotw-ads",
                "SYNCED",
                "NOT SENT"
            ]
        );
        assert!(table_row(table, "n2").is_err());
        let metrics = "portico_xds_nacks_total{type=\"type.googleapis.com/envoy.config.route.v3.RouteConfiguration\"} 2\n";
        assert_eq!(
            metric(metrics, "portico_xds_nacks_total", "RouteConfiguration"),
            2
        );
    }
}
