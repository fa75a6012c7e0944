//! `portico serve` killed and started again on the same ports while Envoy serves: requests
//! keep succeeding and, after reconnecting, Envoy receives no resource it already has.

use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::Value;

use crate::checks::{
    accepted_updates, unchanged_envoy_state, until_disconnected, until_reconnected,
};
use crate::traffic::Traffic;
use crate::world::{CDS, EDS, FLEET, LDS, RDS, World, gateway_yaml, route_yaml};
use crate::{ads, procs, world};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_serving_and_resends_nothing_delta() -> anyhow::Result<()> {
    let restart = restart_while_serving(true).await?;
    restart.nothing_resent()
}

/// Over SotW the Envoy applies nothing new after reconnecting (checked inside), but see
/// [`restart_resends_nothing_sotw`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_serving_and_applies_nothing_new_sotw() -> anyhow::Result<()> {
    restart_while_serving(false).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resends_nothing_sotw() -> anyhow::Result<()> {
    let restart = restart_while_serving(false).await?;
    // SotW: a reconnecting Envoy that already holds the current versions gets no response
    // at all, so the proof of contact is the new process reporting every type in sync.
    for t in [CDS, EDS, LDS, RDS] {
        let state = &restart.node["types"][t]["state"];
        ensure!(state == "SYNCED", "{t} is {state}: {}", restart.node);
    }
    restart.nothing_carried()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reports_synced_delta() -> anyhow::Result<()> {
    let restart = restart_while_serving(true).await?;
    for t in [CDS, EDS, LDS, RDS] {
        let state = &restart.node["types"][t]["state"];
        ensure!(state == "SYNCED", "{t} is {state}: {}", restart.node);
    }
    Ok(())
}

/// What a restart looked like from both sides.
struct Restart {
    /// `(type URL, resources added or updated, removed)` of every update Envoy accepted after
    /// reconnecting.
    updates: Vec<(String, usize, usize)>,
    /// The node in the new process's proxy-status, once settled.
    node: Value,
}

impl Restart {
    /// Delta: Envoy logged its (empty) answers after reconnecting, and none carried anything.
    fn nothing_resent(&self) -> anyhow::Result<()> {
        ensure!(
            !self.updates.is_empty(),
            "Envoy logged no update after reconnecting"
        );
        self.nothing_carried()
    }

    /// No update Envoy accepted after reconnecting added, changed or removed a resource.
    fn nothing_carried(&self) -> anyhow::Result<()> {
        let carrying: Vec<_> = self
            .updates
            .iter()
            .filter(|(_, added, removed)| added + removed > 0)
            .collect();
        ensure!(
            carrying.is_empty(),
            "after reconnecting, Envoy was sent resources it already had: {carrying:?}"
        );
        Ok(())
    }
}

/// Kills Portico while requests flow through Envoy, starts it again on the same ports, waits
/// for Envoy to reconnect and settle, and checks that every request succeeded, versions are
/// the same, Envoy changed nothing, and a later change still reaches Envoy.
async fn restart_while_serving(delta: bool) -> anyhow::Result<Restart> {
    let mut world = World::start(delta).await?;
    let before_node = world.node().await?;
    let before = world.envoy.stats().await?;

    let traffic = Traffic::start(&world.envoy, world.port, "/a", "app-v1-0").await?;
    // A crash: no goodbye on the streams.
    world.server.kill().await?;
    until_disconnected(&world.envoy).await?;
    let log_offset = world.envoy.log_len();
    traffic
        .until_more_ok(5)
        .await
        .with_context(|| world.logs())?;
    world.server.restart().await?;
    let node = until_reconnected(&world).await?;
    ensure!(node["variant"] == world.variant(), "variant: {node}");
    // Requests keep succeeding after the reconnect too (and Envoy gets time to log).
    traffic
        .until_more_ok(20)
        .await
        .with_context(|| world.logs())?;
    let served = traffic.stop().await.with_context(|| world.logs())?;

    // The new process derives the same versions from the same content.
    for t in [CDS, LDS] {
        ensure!(
            node["types"][t]["acked_version"] == before_node["types"][t]["acked_version"],
            "{t} version changed across the restart: {before_node} -> {node}"
        );
    }
    let after = world.envoy.stats().await?;
    unchanged_envoy_state(&before, &after).with_context(|| world.logs())?;
    ensure!(after.get("control_plane.connected_state") == 1);
    let updates = accepted_updates(&world.envoy.log_since(log_offset));
    eprintln!("{served} requests served across the restart; Envoy accepted {updates:?}");

    // The new stream is live: a change reaches Envoy.
    world.dir.write(
        "route-b.yaml",
        &route_yaml("route-b", "PathPrefix", "/b", "app-v2"),
    )?;
    world.until_served_by("/b", "app-v2-0").await?;
    world.until_synced().await?;
    Ok(Restart { updates, node })
}

/// An Envoy that reconnects while a restarted Portico is still loading its config must not be
/// served an empty config (it would drop its clusters and listeners). Real Envoy hits that
/// window only by chance (its reconnect backoff is jittered); a scripted client that connects
/// the moment the xDS port opens hits it every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_empty_config_while_starting() -> anyhow::Result<()> {
    let ip = procs::unique_loopback();
    let port = procs::free_port_on(ip)?;
    let dir = portico_integration::harness::ConfigDir::new()?;
    dir.write("gateway.yaml", &gateway_yaml("edge", ip, port))?;
    dir.write(
        "services.yaml",
        &world::service_yaml("app-v1", "127.0.0.1:9".parse()?),
    )?;
    dir.write(
        "route-a.yaml",
        &route_yaml("route-a", "PathPrefix", "/a", "app-v1"),
    )?;
    let mut server = procs::Server::launch(ip, dir.path())?;
    let channel = ads::connect_asap(server.xds, Duration::from_secs(20)).await?;
    let clusters = ads::first_clusters(channel, "early-node", FLEET).await?;
    server.wait_ready().await?;
    ensure!(
        !clusters.is_empty(),
        "a node that connected while Portico was starting got an empty CDS (the fleet has \
         clusters); log:\n{}",
        server.log_tail()
    );
    Ok(())
}
