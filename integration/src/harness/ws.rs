//! A WebSocket client for the echo exchange upstream's WebSocket test does: open `ws://`,
//! send frames, expect each back unchanged.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::codec::{base64, unique_id, websocket_accept};
use crate::echo::ws::{Frame, read_frame, write_frame};

/// Opens a WebSocket to `path` on `addr` and sends each frame, expecting it echoed.
pub async fn websocket_echo(
    addr: SocketAddr,
    host: &str,
    path: &str,
    origin: &str,
    frames: &[Frame],
    timeout: Duration,
) -> anyhow::Result<()> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let key = base64(&unique_id().as_bytes()[..16]);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let head = read_head(&mut stream).await?;
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 101") {
            bail!("upgrade answered {status:?}");
        }
        let accept = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("sec-websocket-accept")
                    .then(|| value.trim().to_string())
            })
            .ok_or_else(|| anyhow!("101 without Sec-WebSocket-Accept"))?;
        if accept != websocket_accept(&key) {
            bail!("wrong Sec-WebSocket-Accept {accept:?}");
        }
        for (i, frame) in frames.iter().enumerate() {
            let mask = [0x5a, 0x17, i as u8, 0xc3];
            write_frame(&mut stream, frame.opcode, &frame.payload, Some(mask)).await?;
            let echoed = read_frame(&mut stream)
                .await
                .context("reading the echoed frame")?;
            if echoed != *frame {
                bail!("sent {frame:?}, got back {echoed:?}");
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| anyhow!("WebSocket exchange with {addr} timed out after {timeout:?}"))?
}

/// Reads the HTTP response head, byte by byte so no frame bytes are consumed.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            bail!("response head too long");
        }
        head.push(
            stream
                .read_u8()
                .await
                .context("reading the upgrade response")?,
        );
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
