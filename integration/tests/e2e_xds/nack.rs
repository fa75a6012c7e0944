//! A config Envoy rejects (a route regex over RE2's program-size limit, which the translator
//! accepts): NACKed, held, reported in proxy-status and Gateway status, the old routes keep
//! serving, and fixing the file clears it.

use std::time::Duration;

use anyhow::{Context, ensure};
use portico_integration::harness::eventually;

use crate::checks::{metric, table_row};
use crate::world::{CONVERGE, FLEET, LDS, RDS, World, route_yaml};

/// Valid regex syntax (the translator accepts it) whose RE2 program is far above Envoy's
/// default limit (`re2.max_program_size.error_level`, 100), so Envoy rejects the routes.
const TOO_BIG_REGEX: &str = "/(abc|def|ghi|jkl|mno){30}";
/// The path a request for that route uses (matches it, were it accepted).
const TOO_BIG_PATH: &str =
    "/abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_config_is_held_reported_and_cleared_sotw() -> anyhow::Result<()> {
    rejected_config_is_held_reported_and_cleared(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_config_is_held_reported_and_cleared_delta() -> anyhow::Result<()> {
    rejected_config_is_held_reported_and_cleared(true).await
}

async fn rejected_config_is_held_reported_and_cleared(delta: bool) -> anyhow::Result<()> {
    let world = World::start(delta).await?;
    let before = world.envoy.stats().await?;

    world.dir.write(
        "route-bad.yaml",
        &route_yaml("route-bad", "RegularExpression", TOO_BIG_REGEX, "app-v2"),
    )?;

    // Portico records the NACK on RDS, with Envoy's message; the other types stay in sync.
    let node = eventually(CONVERGE, || async {
        let node = world.node().await?;
        let rds = &node["types"][RDS];
        ensure!(rds["state"] == "NACKED", "RDS is {}: {node}", rds["state"]);
        Ok(node)
    })
    .await
    .with_context(|| world.logs())?;
    let message = node["types"][RDS]["nack"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(
        message.contains("program size"),
        "NACK message does not name the regex limit: {message:?}"
    );
    for t in ["CDS", "EDS", LDS] {
        ensure!(
            node["types"][t]["state"] == "SYNCED",
            "{t} not SYNCED: {node}"
        );
    }

    // Envoy counted the rejection and keeps serving the routes it had.
    let stats = world.envoy.stats().await?;
    ensure!(
        stats.sum(".rds.", ".update_rejected") > before.sum(".rds.", ".update_rejected"),
        "Envoy's RDS update_rejected did not grow"
    );
    world
        .keeps_serving(&[("/a", "app-v1-0")], Duration::from_millis(1500))
        .await?;
    let bad = world.get(TOO_BIG_PATH).await?;
    ensure!(
        bad.status == 404,
        "the rejected route answers {}",
        bad.status
    );

    // Reported: the CLI table and node view, the Gateway's Programmed condition, metrics.
    let table = world.server.proxy_status_cli(&[]).await?;
    let row = table_row(&table, &world.envoy.node_id)?;
    ensure!(
        row == [
            world.envoy.node_id.as_str(),
            FLEET,
            world.variant(),
            "SYNCED",
            "SYNCED",
            "SYNCED",
            "NACKED",
            "NOT SENT",
        ],
        "proxy-status row: {row:?}\n{table}"
    );
    let detail = world
        .server
        .proxy_status_cli(&["--node", &world.envoy.node_id])
        .await?;
    ensure!(
        detail.contains("program size"),
        "proxy-status --node lacks the NACK message:\n{detail}"
    );
    let programmed = eventually(CONVERGE, || async {
        let c = world.gateway_condition("edge", "Programmed").await?;
        ensure!(c["status"] == "False", "Programmed: {c}");
        Ok(c)
    })
    .await
    .with_context(|| world.logs())?;
    let said = programmed["message"].as_str().unwrap_or_default();
    ensure!(
        said.starts_with("Envoy rejected the configuration:") && said.contains("program size"),
        "Programmed message: {said:?}"
    );
    let metrics = world.server.admin_get("/metrics").await?;
    ensure!(
        metric(&metrics, "portico_xds_nacks_total", "RouteConfiguration") >= 1,
        "no RDS NACK in /metrics:\n{metrics}"
    );

    // Held: while the input is unchanged nothing is re-sent, so Envoy rejects nothing more.
    let rejected = |stats: &crate::procs::Stats| stats.sum(".rds.", ".update_rejected");
    let rejected_before = rejected(&world.envoy.stats().await?);
    world
        .keeps_serving(&[("/a", "app-v1-0")], Duration::from_millis(1000))
        .await?;
    let rejected_after = rejected(&world.envoy.stats().await?);
    ensure!(
        rejected_after == rejected_before,
        "the rejected config was sent again ({rejected_before} -> {rejected_after} rejections)"
    );
    ensure!(world.node().await?["types"][RDS]["state"] == "NACKED");

    // Fixing the file: the route is served, the NACK and the condition clear.
    world.dir.write(
        "route-bad.yaml",
        &route_yaml("route-bad", "RegularExpression", "/fixed/[0-9]+", "app-v2"),
    )?;
    world.until_served_by("/fixed/42", "app-v2-0").await?;
    let node = world.until_synced().await?;
    ensure!(node["types"][RDS]["nack"].is_null(), "NACK kept: {node}");
    eventually(CONVERGE, || async {
        let c = world.gateway_condition("edge", "Programmed").await?;
        ensure!(c["status"] == "True", "Programmed: {c}");
        Ok(())
    })
    .await
    .with_context(|| world.logs())?;
    world.served_by("/a", "app-v1-0").await?;
    Ok(())
}
