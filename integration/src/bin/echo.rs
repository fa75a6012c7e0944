//! `portico-echo`: the echo backend as a standalone process, configured like echo-basic
//! (POD_NAME, NAMESPACE, SERVICE_NAME, INGRESS_NAME, HTTP_PORT).

use std::net::SocketAddr;

use portico_integration::echo::{EchoConfig, spawn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let port: u16 = std::env::var("HTTP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let mut config = EchoConfig::new(env("POD_NAME"), env("NAMESPACE"));
    config.service = env("SERVICE_NAME");
    config.ingress = env("INGRESS_NAME");
    config.bind = SocketAddr::from(([0, 0, 0, 0], port));
    let server = spawn(config).await?;
    println!(
        "Starting server, listening on {} (http, h2c, grpc)",
        server.addr()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
