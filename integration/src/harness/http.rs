//! A small HTTP client for tests: one fresh connection per request (no pooling, so no stale
//! connection survives an Envoy listener drain), full control of Host, no redirect following,
//! HTTP/1.1 or h2c with prior knowledge, and a unary gRPC call on top of h2c.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::tls::TlsOptions;
use crate::echo::EchoedRequest;
use crate::echo::grpc::{self, EchoRequest, EchoResponse};

/// One request to send to `addr`.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// Path and query, sent as is.
    pub path: String,
    /// Host header (`:authority` over h2); `None` = the dialed address, without `:80`.
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    /// HTTP/2 (h2c with prior knowledge, or ALPN h2 over TLS) instead of HTTP/1.1.
    pub http2: bool,
    /// HTTPS: TLS with this SNI and trusted certificate.
    pub tls: Option<TlsOptions>,
}

impl HttpRequest {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            host: None,
            headers: Vec::new(),
            http2: false,
            tls: None,
        }
    }

    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    /// The echo backend's description of the request, when an echo server answered.
    pub fn echo(&self) -> Option<EchoedRequest> {
        serde_json::from_slice::<EchoedRequest>(&self.body)
            .ok()
            .filter(|e| !e.pod.is_empty())
    }

    /// What the backend saw, provided the echo pod `pod` answered this request for `path`.
    pub fn served_by(&self, path: &str, pod: &str) -> anyhow::Result<EchoedRequest> {
        let echo = self
            .echo()
            .ok_or_else(|| anyhow::anyhow!("{path}: {} {}", self.status, self.text()))?;
        anyhow::ensure!(
            echo.pod == pod,
            "{path} answered by {}, want {pod}",
            echo.pod
        );
        Ok(echo)
    }

    /// Ok when the request for `path` was answered with `status`.
    pub fn has_status(&self, path: &str, status: u16) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.status == status,
            "{path} answered {}, want {status}",
            self.status
        );
        Ok(())
    }

    /// All values of a response header joined by `,`, or `None` when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let values: Vec<String> = self
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The Host a client puts in its request when dialing `addr` with no explicit host.
pub fn default_host(addr: SocketAddr) -> String {
    if addr.port() == 80 {
        addr.ip().to_string()
    } else {
        addr.to_string()
    }
}

/// Sends one request over a new connection, bounded by `timeout` end to end.
pub async fn send(
    addr: SocketAddr,
    req: &HttpRequest,
    timeout: Duration,
) -> anyhow::Result<HttpResponse> {
    tokio::time::timeout(timeout, send_inner(addr, req))
        .await
        .map_err(|_| {
            anyhow!(
                "request {} {} to {addr} timed out after {timeout:?}",
                req.method,
                req.path
            )
        })?
}

async fn send_inner(addr: SocketAddr, req: &HttpRequest) -> anyhow::Result<HttpResponse> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    let _ = stream.set_nodelay(true);
    match &req.tls {
        Some(options) => {
            let tls = super::tls::connect(stream, options)
                .await
                .context("TLS handshake")?;
            exchange(TokioIo::new(tls), addr, req, "https").await
        }
        None => exchange(TokioIo::new(stream), addr, req, "http").await,
    }
}

/// One request/response on an established connection.
async fn exchange<IO>(
    io: IO,
    addr: SocketAddr,
    req: &HttpRequest,
    scheme: &str,
) -> anyhow::Result<HttpResponse>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = req.host.clone().unwrap_or_else(|| {
        if addr.port() == default_port {
            addr.ip().to_string()
        } else {
            addr.to_string()
        }
    });
    let mut builder = Request::builder().method(req.method.as_str());
    builder = if req.http2 {
        builder.uri(format!("{scheme}://{host}{}", req.path))
    } else {
        builder
            .uri(req.path.as_str())
            .header(http::header::HOST, host.as_str())
    };
    for (name, value) in &req.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .with_context(|| format!("header name {name:?}"))?;
        let value =
            HeaderValue::from_str(value).with_context(|| format!("header value {value:?}"))?;
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(Bytes::new()))?;
    let response = if req.http2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };
    let status = response.status().as_u16();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .context("reading response body")?
        .to_bytes();
    Ok(HttpResponse {
        status,
        headers: parts.headers,
        body,
    })
}

/// Outcome of a unary GrpcEcho call.
#[derive(Clone, Debug)]
pub struct GrpcResult {
    pub http_status: u16,
    /// From trailers (or headers for a trailers-only answer); `None` when missing.
    pub grpc_status: Option<u32>,
    pub grpc_message: Option<String>,
    pub response: Option<EchoResponse>,
}

/// Calls `path` (a full method name) with an empty EchoRequest over h2c.
pub async fn grpc_call(
    addr: SocketAddr,
    authority: Option<&str>,
    path: &str,
    metadata: &[(String, String)],
    timeout: Duration,
) -> anyhow::Result<GrpcResult> {
    let authority = authority.map_or_else(|| default_host(addr), str::to_string);
    let call = async {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(conn);
        let mut builder = Request::builder()
            .method("POST")
            .uri(format!("http://{authority}{path}"))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("te", "trailers");
        for (name, value) in metadata {
            builder = builder.header(name.to_ascii_lowercase(), value.as_str());
        }
        let request = builder.body(Full::new(grpc::frame(&EchoRequest {})))?;
        let response = sender.send_request(request).await?;
        let http_status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.context("reading gRPC response")?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let bytes = collected.to_bytes();
        let field = |name: &str| {
            trailers
                .get(name)
                .or_else(|| parts.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        anyhow::Ok(GrpcResult {
            http_status,
            grpc_status: field("grpc-status").and_then(|s| s.parse().ok()),
            grpc_message: field("grpc-message"),
            response: grpc::unframe::<EchoResponse>(&bytes),
        })
    };
    tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| anyhow!("gRPC call {path} to {addr} timed out after {timeout:?}"))?
}
