#![allow(unused)]
include!("/tmp/scratch/e2e_body.rs");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch_dump() -> anyhow::Result<()> {
    let world = World::start().await?;
    world.until_served_by("/a/x", "app-v1-0").await?;
    until_condition(&world.cluster, "Gateway", "edge", "Programmed").await?;
    until_condition(&world.cluster, "HTTPRoute", "route-a", "Accepted").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("GW {}", serde_json::to_string_pretty(&world.cluster.get("Gateway", "edge"))?);
    println!("ROUTE {}", serde_json::to_string_pretty(&world.cluster.get("HTTPRoute", "route-a"))?);
    println!("CLASS {}", serde_json::to_string_pretty(&world.cluster.get("GatewayClass", "portico"))?);
    println!("LEASE {}", serde_json::to_string_pretty(&world.cluster.get("Lease", "portico-leader"))?);
    for r in world.cluster.fake.requests() { if !r.starts_with("GET") || !r.contains("leases") { println!("REQ {r}"); } }
    println!("LOG {}", world.portico.log_tail());
    Ok(())
}
