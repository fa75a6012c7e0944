//! An Envoy of a fleet with no Gateway: empty config, shown as an unknown fleet, then served
//! on the same stream once the Gateway appears.

use std::time::Duration;

use anyhow::{Context, ensure};
use portico_integration::echo::{EchoConfig, spawn};
use portico_integration::harness::eventually;
use portico_integration::harness::http::{HttpRequest, send};

use crate::checks::table_row;
use crate::procs::Proxy;
use crate::world::{self, CONVERGE, World, gateway_yaml, route_on};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fleet_gets_empty_config_then_is_served_sotw() -> anyhow::Result<()> {
    unknown_fleet_gets_empty_config_then_is_served(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fleet_gets_empty_config_then_is_served_delta() -> anyhow::Result<()> {
    unknown_fleet_gets_empty_config_then_is_served(true).await
}

async fn unknown_fleet_gets_empty_config_then_is_served(delta: bool) -> anyhow::Result<()> {
    let world = World::start(delta).await?;
    let late = Proxy::start(world.server.xds, "e2e/late", delta).await?;

    // LIVE with nothing: no listener, only the static xDS cluster.
    let stats = late.stats().await?;
    ensure!(stats.get("listener_manager.total_listeners_active") == 0);
    ensure!(stats.get("cluster_manager.active_clusters") == 1);
    // Portico sent (and Envoy ACKed) that empty config, and calls the fleet unknown.
    let node = world.server.proxy_status(&late.node_id).await?;
    ensure!(node["known_fleet"] == false, "known fleet? {node}");
    for t in [world::CDS, world::LDS] {
        ensure!(node["types"][t]["state"] == "SYNCED", "{t}: {node}");
    }
    let table = world.server.proxy_status_cli(&[]).await?;
    let row = table_row(&table, &late.node_id)?;
    ensure!(
        row.get(1) == Some(&"e2e/late (unknown fleet)"),
        "row {row:?}\n{table}"
    );
    let stream = node["stream"].clone();

    // The Gateway appears: served on the same stream, on the same connection.
    let ip = world.server.xds.ip();
    let port = crate::procs::free_port_on(ip)?;
    let backend = spawn(EchoConfig::new("late-0", world::NS)).await?;
    world.dir.write(
        "late.yaml",
        &format!(
            "{}---\n{}---\n{}",
            gateway_yaml("late", ip, port),
            world::service_yaml("late", backend.addr()),
            route_on("late", "route-late", "PathPrefix", "/", "late")
        ),
    )?;
    let logs = || format!("{}\nlate envoy log:\n{}", world.logs(), late.log_tail());
    eventually(CONVERGE, || async {
        let addr = late.address_for_port(port).await?;
        let req = HttpRequest::get("/x").host(world::HOST);
        let response = send(addr, &req, Duration::from_secs(5)).await?;
        let pod = response.echo().map(|e| e.pod).unwrap_or_default();
        ensure!(pod == "late-0", "{} {}", response.status, response.text());
        Ok(())
    })
    .await
    .with_context(logs)?;
    let node = world.server.proxy_status(&late.node_id).await?;
    ensure!(node["known_fleet"] == true, "still unknown: {node}");
    ensure!(node["stream"] == stream, "Envoy reconnected: {node}");
    ensure!(
        late.stats()
            .await?
            .get("cluster.portico-xds.upstream_cx_total")
            == 1,
        "Envoy opened a second connection to Portico"
    );
    let table = world.server.proxy_status_cli(&[]).await?;
    ensure!(!table.contains("(unknown fleet)"), "{table}");
    // The first fleet was never disturbed.
    world.served_by("/a", "app-v1-0").await?;
    Ok(())
}
