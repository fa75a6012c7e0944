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
    let answer = exchange(addr, payload.as_bytes(), timeout, |_| true).await?;
    serde_json::from_slice(&answer)
        .with_context(|| format!("UDP answer {:?}", String::from_utf8_lossy(&answer)))
}

/// Asks `addr` for `name`'s A record; any DNS response to the query passes.
pub async fn dns_query(addr: SocketAddr, name: &str, timeout: Duration) -> anyhow::Result<()> {
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let query = crate::echo::dns::query(id, name);
    let is_response = |d: &[u8]| d.len() >= 12 && d[0..2] == id.to_be_bytes() && d[2] & 0x80 != 0;
    exchange(addr, &query, timeout, is_response)
        .await
        .map(|_| ())
}

/// Sends `payload` until a datagram `accept` takes comes back, or `timeout` passes.
async fn exchange(
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
    accept: impl Fn(&[u8]) -> bool,
) -> anyhow::Result<Vec<u8>> {
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
        let _ = socket.send(payload).await;
        let resend_at = Instant::now() + RESEND;
        loop {
            let left = resend_at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, socket.recv(&mut buffer)).await {
                Ok(Ok(n)) if accept(&buffer[..n]) => return Ok(buffer[..n].to_vec()),
                // A stray datagram: keep listening until the resend time.
                Ok(Ok(_)) => {}
                // An error (like a refused port) repeats until the next send; do not spin.
                Ok(Err(_)) => tokio::time::sleep(left.min(Duration::from_millis(50))).await,
                Err(_) => break,
            }
        }
    }
    bail!("no UDP answer from {addr} within {timeout:?}")
}
