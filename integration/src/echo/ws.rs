//! WebSocket echo on `/ws` (RFC 6455, just what echo-basic does: every text or binary frame is
//! sent back), and the frame codec the test client shares.

use std::io;

use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{EchoBody, full_body};
use crate::codec::websocket_accept;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest frame accepted; the tests send a few bytes.
const MAX_PAYLOAD: u64 = 1 << 20;

/// One (unfragmented) frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Frame> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0F;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7F {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        n => u64::from(n),
    };
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    if masked {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= mask[i % 4]);
    }
    Ok(Frame { opcode, payload })
}

/// Writes a final frame; clients must `mask`, servers must not.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) -> io::Result<()> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    writer.write_all(&out).await?;
    writer.flush().await
}

/// Whether the request asks for a WebSocket upgrade.
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    let has = |name: &str, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("connection", "upgrade") && has("upgrade", "websocket")
}

/// Accepts the upgrade and echoes frames on the upgraded connection until it closes.
pub(crate) fn accept(mut req: Request<Incoming>) -> Response<EchoBody> {
    let Some(key) = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .map(str::to_string)
    else {
        let mut bad = Response::new(full_body("missing Sec-WebSocket-Key".into()));
        *bad.status_mut() = StatusCode::BAD_REQUEST;
        return bad;
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = echo_frames(TokioIo::new(upgraded)).await;
        }
    });
    let mut response = Response::new(full_body(Default::default()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert("connection", HeaderValue::from_static("Upgrade"));
    headers.insert("upgrade", HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&websocket_accept(&key)) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

async fn echo_frames<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> io::Result<()> {
    loop {
        let frame = read_frame(&mut stream).await?;
        match frame.opcode {
            OP_TEXT | OP_BINARY => {
                write_frame(&mut stream, frame.opcode, &frame.payload, None).await?
            }
            OP_PING => write_frame(&mut stream, OP_PONG, &frame.payload, None).await?,
            OP_CLOSE => {
                let _ = write_frame(&mut stream, OP_CLOSE, &frame.payload, None).await;
                return Ok(());
            }
            _ => {}
        }
    }
}
