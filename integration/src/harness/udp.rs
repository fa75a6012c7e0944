//! A client for the UDP echo: one datagram out, one JSON datagram back, resent while no
//! answer comes (UDP may drop the first datagrams while a proxy sets up its session).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UdpSocket;

use crate::echo::udp::UdpAnswer;

/// How long to wait for an answer before sending again.
const RESEND: Duration = Duration::from_millis(300);

/// Sends `payload` to `addr` until an echo answer arrives or `timeout` passes.
pub async fn udp_exchange(
    addr: SocketAddr,
    payload: &str,
    timeout: Duration,
) -> anyhow::Result<UdpAnswer> {
    let local: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    let start = Instant::now();
    let mut buffer = vec![0u8; 4096];
    while start.elapsed() < timeout {
        // An ICMP "port unreachable" shows as an error on the next call; keep trying.
        let _ = socket.send(payload.as_bytes()).await;
        if let Ok(Ok(n)) = tokio::time::timeout(RESEND, socket.recv(&mut buffer)).await {
            return serde_json::from_slice(&buffer[..n]).with_context(|| {
                format!("UDP answer {:?}", String::from_utf8_lossy(&buffer[..n]))
            });
        }
    }
    bail!("no UDP answer from {addr} within {timeout:?}")
}
