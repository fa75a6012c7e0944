//! echo-basic's TCP echo (`TCP_ECHO_SERVER`): a welcome line on connect, then `PING` ->
//! `PONG`, `IS_TLS` -> `true`/`false`, `TEST` -> one JSON line describing the pod and the
//! connection. Optionally behind TLS, like its port 8443.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use super::{EchoConfig, tls};

/// The first line the server sends on every connection.
pub const WELCOME: &str = "Gateway API Test TCP Server";

/// The `TEST` answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpAssertions {
    pub namespace: String,
    pub ingress: String,
    pub service: String,
    pub pod: String,
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpTls>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TcpTls {
    pub server_name: String,
}

/// A running TCP echo server; stops with its connections when dropped.
pub struct TcpEchoHandle {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TcpEchoHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpEchoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a TCP echo server on `config.bind` (TLS when `config.tls` is set).
pub async fn spawn_tcp(config: EchoConfig) -> std::io::Result<TcpEchoHandle> {
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(accept_loop(listener, acceptor, Arc::new(config)));
    Ok(TcpEchoHandle { addr, task })
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    config: Arc<EchoConfig>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let config = config.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    match acceptor {
                        Some(acceptor) => {
                            let Ok(tls) = acceptor.accept(stream).await else { return };
                            let sni = tls.get_ref().1.server_name().map(str::to_string);
                            converse(tls, &config, Some(sni.unwrap_or_default())).await;
                        }
                        None => converse(stream, &config, None).await,
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: &EchoConfig,
    sni: Option<String>,
) {
    let assertions = TcpAssertions {
        namespace: config.namespace.clone(),
        ingress: config.ingress.clone(),
        service: config.service.clone(),
        pod: config.pod.clone(),
        is_tls: sni.is_some(),
        tls: sni.map(|server_name| TcpTls { server_name }),
    };
    let payload = serde_json::to_string(&assertions).unwrap_or_default();
    let (read, mut write) = tokio::io::split(stream);
    if write
        .write_all(format!("{WELCOME}\n").as_bytes())
        .await
        .is_err()
    {
        return;
    }
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.trim_end() {
            "TEST" => payload.clone(),
            "IS_TLS" => assertions.is_tls.to_string(),
            "PING" => "PONG".to_string(),
            _ => continue,
        };
        if write
            .write_all(format!("{answer}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
