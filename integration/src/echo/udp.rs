//! echo-basic's UDP echo (`UDP_ECHO_SERVER`): every datagram is answered with one JSON
//! datagram `{request, namespace, ingress, service, pod}`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::EchoConfig;

/// The answer datagram.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UdpAnswer {
    /// The request payload, verbatim.
    pub request: String,
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
}

/// A running UDP echo server; stops when dropped.
pub struct UdpEchoHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpEchoHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for UdpEchoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a UDP echo server on `config.bind`.
pub async fn spawn_udp(config: EchoConfig) -> std::io::Result<UdpEchoHandle> {
    let socket = UdpSocket::bind(config.bind).await?;
    let addr = socket.local_addr()?;
    let task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 2048];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let answer = UdpAnswer {
                request: String::from_utf8_lossy(&buffer[..n]).into_owned(),
                namespace: config.namespace.clone(),
                ingress: config.ingress.clone(),
                service: config.service.clone(),
                pod: config.pod.clone(),
            };
            let payload = serde_json::to_vec(&answer).unwrap_or_default();
            let _ = socket.send_to(&payload, peer).await;
        }
    });
    Ok(UdpEchoHandle { addr, task })
}
