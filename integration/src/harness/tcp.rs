//! A client for the TCP echo protocol (plain or over TLS): read the welcome line, ask
//! `IS_TLS` and `TEST`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::tls::{TlsOptions, connect_with_alpn};
use crate::echo::tcp::{TcpAssertions, WELCOME};

/// What one TCP echo exchange found.
#[derive(Clone, Debug)]
pub struct TcpProbe {
    /// The backend's `IS_TLS` answer: whether the backend itself received TLS.
    pub backend_tls: bool,
    pub assertions: TcpAssertions,
}

/// Connects to `addr` (through TLS when `tls` is set), checks the welcome line and asks
/// `IS_TLS` and `TEST`.
pub async fn tcp_probe(
    addr: SocketAddr,
    tls: Option<&TlsOptions>,
    timeout: Duration,
) -> anyhow::Result<TcpProbe> {
    let probe = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        match tls {
            Some(options) => {
                let tls = connect_with_alpn(stream, options, None)
                    .await
                    .context("TLS handshake")?;
                exchange(tls).await
            }
            None => exchange(stream).await,
        }
    };
    tokio::time::timeout(timeout, probe)
        .await
        .map_err(|_| anyhow!("TCP exchange with {addr} timed out after {timeout:?}"))?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> anyhow::Result<TcpProbe> {
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    let mut next = async || {
        lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("connection closed"))
    };
    let welcome = next().await.context("reading the welcome line")?;
    if welcome.trim_end() != WELCOME {
        bail!("unexpected welcome line {welcome:?}");
    }
    write.write_all(b"IS_TLS\n").await?;
    let backend_tls = match next().await?.trim_end() {
        "true" => true,
        "false" => false,
        other => bail!("unexpected IS_TLS answer {other:?}"),
    };
    write.write_all(b"TEST\n").await?;
    let line = next().await?;
    let assertions =
        serde_json::from_str(&line).with_context(|| format!("TEST answer {line:?}"))?;
    Ok(TcpProbe {
        backend_tls,
        assertions,
    })
}
