//! The response body of the xDS streams: per response, its small per-stream head (gRPC header
//! and nonce) and then its body, shared with every stream that sends the same response (see
//! `shared.rs`).
//!
//! tonic's own encoder keeps one growable buffer per stream, which ends up as large as the
//! largest response ever sent and stays allocated for the life of the stream, and copies every
//! response into it. Here a frame is only references: nothing is copied per stream, and the
//! bytes are freed once HTTP/2 has written them to the last stream that sends them.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use prost::bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

use crate::shared::Outgoing;

pub(crate) struct FrameBody {
    rx: mpsc::Receiver<Result<Outgoing, Status>>,
    /// The body of the response whose head went out last.
    body: Option<Bytes>,
    done: bool,
}

impl FrameBody {
    pub(crate) fn new(rx: mpsc::Receiver<Result<Outgoing, Status>>) -> Self {
        FrameBody {
            rx,
            body: None,
            done: false,
        }
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Err(e) = status.add_header(&mut map) {
        // Only fails on a message that cannot be a header value; say that instead.
        let _ = Status::internal(e.message().to_string()).add_header(&mut map);
    }
    map
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(body) = self.body.take() {
            return Poll::Ready(Some(Ok(Frame::data(body))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let status = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(out))) => {
                if !out.body.is_empty() {
                    self.body = Some(out.body);
                }
                return Poll::Ready(Some(Ok(Frame::data(out.head))));
            }
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.body.is_none()
    }
}
