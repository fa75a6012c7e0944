//! The response body of the xDS streams: gRPC frames encoded one per response into a buffer of
//! exactly its size.
//!
//! tonic's own encoder keeps one growable buffer per stream, which ends up as large as the
//! largest response ever sent and stays allocated for the life of the stream: an idle stream
//! would hold a full RouteConfiguration's worth of memory. Here each frame owns its bytes and
//! is freed once HTTP/2 has written it.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::Frame;
use prost::Message;
use prost::bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codegen::http::HeaderMap;

/// Compression flag (1 byte) and length (4 bytes) in front of every gRPC message.
const HEADER: usize = 5;

pub(crate) struct FrameBody<M> {
    rx: mpsc::Receiver<Result<M, Status>>,
    done: bool,
}

impl<M> FrameBody<M> {
    pub(crate) fn new(rx: mpsc::Receiver<Result<M, Status>>) -> Self {
        FrameBody { rx, done: false }
    }
}

/// One uncompressed gRPC frame holding `msg`.
pub(crate) fn frame(msg: &impl Message) -> Result<Bytes, Status> {
    let len = msg.encoded_len();
    let len32 = u32::try_from(len)
        .map_err(|_| Status::resource_exhausted(format!("response of {len} bytes")))?;
    let mut buf = BytesMut::with_capacity(HEADER + len);
    buf.put_u8(0);
    buf.put_u32(len32);
    msg.encode_raw(&mut buf);
    Ok(buf.freeze())
}

fn trailers(status: &Status) -> HeaderMap {
    let mut map = HeaderMap::new();
    if let Err(e) = status.add_header(&mut map) {
        // Only fails on a message that cannot be a header value; say that instead.
        let _ = Status::internal(e.message().to_string()).add_header(&mut map);
    }
    map
}

impl<M: Message + Unpin> http_body::Body for FrameBody<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match self.rx.poll_recv(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(msg))) => match frame(&msg) {
                Ok(bytes) => return Poll::Ready(Some(Ok(Frame::data(bytes)))),
                Err(status) => status,
            },
            Poll::Ready(Some(Err(status))) => status,
            Poll::Ready(None) => Status::ok(""),
        };
        self.done = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

    #[test]
    fn frame_is_flag_length_message() {
        let msg = DiscoveryResponse {
            version_info: "v1".into(),
            ..Default::default()
        };
        let bytes = frame(&msg).expect("frame");
        assert_eq!(bytes[0], 0);
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - HEADER);
        assert_eq!(
            DiscoveryResponse::decode(&bytes[HEADER..]).expect("decode"),
            msg
        );
        assert_eq!(bytes.len(), HEADER + msg.encoded_len());
    }
}
