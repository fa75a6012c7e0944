//! A bidirectional gRPC stream spoken directly over a tonic [`Channel`]: requests go out as
//! already-framed bytes, responses come back as [`Rope`]s of the HTTP/2 DATA chunks. tonic's
//! `Streaming` would copy every response into one buffer per stream (as large as the largest
//! response, for the life of the stream) and then decode every resource body.

use std::convert::Infallible;
use std::future::poll_fn;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::body::Body;
use tonic::codegen::Service;
use tonic::codegen::http::{self, HeaderMap, HeaderValue, header};
use tonic::transport::Channel;

use super::rope::{Framer, Rope};

pub const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
pub const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// One open stream.
pub struct Stream {
    tx: mpsc::UnboundedSender<Bytes>,
    body: Body,
    framer: Framer,
}

/// Opens `path` on `channel`, sending `first` (framed requests) at once.
pub async fn open(
    mut channel: Channel,
    path: &'static str,
    first: Vec<Bytes>,
) -> anyhow::Result<Stream> {
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    for frame in first {
        tx.send(frame)?;
    }
    let requests = UnboundedReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b)));
    let mut request = http::Request::new(Body::new(StreamBody::new(requests)));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(header::TE, HeaderValue::from_static("trailers"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    poll_fn(|cx| channel.poll_ready(cx)).await?;
    let response = channel.call(request).await.context("opening the stream")?;
    if response.status() != http::StatusCode::OK {
        bail!("HTTP status {}", response.status());
    }
    // A trailers-only response: the call failed before any message.
    check_status(response.headers())?;
    Ok(Stream {
        tx,
        body: response.into_body(),
        framer: Framer::default(),
    })
}

fn check_status(headers: &HeaderMap) -> anyhow::Result<bool> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(false);
    };
    if code != "0" {
        let message = headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .unwrap_or_default();
        bail!("grpc-status {code:?}: {message}");
    }
    Ok(true)
}

impl Stream {
    pub fn send(&self, frame: Bytes) -> anyhow::Result<()> {
        self.tx.send(frame).context("request stream closed")
    }

    /// The next response; `None` when the server ended the stream with OK.
    pub async fn message(&mut self) -> anyhow::Result<Option<Rope>> {
        loop {
            if let Some(message) = self.framer.next_message()? {
                return Ok(Some(message));
            }
            let Some(frame) = self.body.frame().await else {
                if self.framer.buffered() > 0 {
                    bail!("stream ended inside a message");
                }
                bail!("stream ended without trailers");
            };
            let frame = frame.map_err(|s| anyhow::anyhow!("{s}"))?;
            match frame.into_data() {
                Ok(data) => self.framer.push(data),
                Err(frame) => {
                    if let Some(trailers) = frame.trailers_ref()
                        && check_status(trailers)?
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }
}
