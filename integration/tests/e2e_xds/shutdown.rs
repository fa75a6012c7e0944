//! Graceful shutdown (SIGTERM): streams end with gRPC OK, Envoy keeps serving, reconnects to
//! the next Portico and follows changes again.

use anyhow::{Context, ensure};

use crate::checks::{stream_close_statuses, until_disconnected, until_reconnected};
use crate::traffic::Traffic;
use crate::world::{World, route_yaml};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_streams_envoy_serves_and_reconnects_sotw() -> anyhow::Result<()> {
    graceful_shutdown(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_closes_streams_envoy_serves_and_reconnects_delta() -> anyhow::Result<()>
{
    graceful_shutdown(true).await
}

async fn graceful_shutdown(delta: bool) -> anyhow::Result<()> {
    let mut world = World::start(delta).await?;
    let traffic = Traffic::start(&world.envoy, world.port, "/a", "app-v1-0").await?;

    let log_offset = world.envoy.log_len();
    let exit = world.server.terminate().await?;
    ensure!(
        exit.success(),
        "portico exited with {exit} on SIGTERM; log:\n{}",
        world.server.log_tail()
    );
    // Portico ended the stream itself, after the signal.
    let log = world.server.log_text();
    let closed_after_signal = log
        .split_once("shutting down")
        .is_some_and(|(_, after)| after.contains("xDS stream closed"));
    ensure!(closed_after_signal, "no stream closed on shutdown:\n{log}");
    // Envoy saw the stream end with gRPC status OK, not a reset.
    until_disconnected(&world.envoy).await?;
    let closed = stream_close_statuses(&world.envoy.log_since(log_offset));
    ensure!(
        closed.first().map(String::as_str) == Some("0"),
        "Envoy's xDS stream did not end with OK: {closed:?}\n{}",
        world.envoy.log_tail()
    );
    traffic
        .until_more_ok(5)
        .await
        .with_context(|| world.logs())?;

    world.server.restart().await?;
    until_reconnected(&world).await?;
    traffic
        .until_more_ok(5)
        .await
        .with_context(|| world.logs())?;
    traffic.stop().await.with_context(|| world.logs())?;
    ensure!(
        world
            .envoy
            .stats()
            .await?
            .get("control_plane.connected_state")
            == 1,
        "Envoy not connected"
    );
    world.dir.write(
        "route-b.yaml",
        &route_yaml("route-b", "PathPrefix", "/b", "app-v2"),
    )?;
    world.until_served_by("/b", "app-v2-0").await?;
    Ok(())
}
