//! The request side of the xDS streams: gRPC messages decoded straight from the HTTP/2 data
//! chunks, keeping no buffer between messages.
//!
//! tonic's `Streaming` keeps one buffer per stream, at least 8 KiB and as large as the largest
//! request the stream ever got (an Envoy with many clusters sends every EDS name with every
//! ACK), for the life of the stream. An idle stream here holds no request bytes at all.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame};
use prost::bytes::{Buf, BufMut, Bytes, BytesMut};
use tonic::codegen::StdError;
use tonic::{Code, Status};

use crate::shared::GRPC_HEADER;

type BoxBody = Pin<Box<dyn HttpBody<Data = Bytes, Error = Status> + Send + 'static>>;

/// Incoming gRPC messages of type `T`.
pub(crate) struct Requests<T> {
    body: BoxBody,
    /// Data received but not decoded yet (part of the next message).
    chunks: VecDeque<Bytes>,
    buffered: usize,
    max_message: usize,
    done: bool,
    message: PhantomData<fn() -> T>,
}

impl<T: prost::Message + Default> Requests<T> {
    pub(crate) fn new<B>(body: B, max_message: usize) -> Self
    where
        B: HttpBody + Send + 'static,
        B::Error: Into<StdError>,
    {
        Requests {
            body: Box::pin(ToBytes(Box::pin(body))),
            chunks: VecDeque::new(),
            buffered: 0,
            max_message,
            done: false,
            message: PhantomData,
        }
    }

    /// The next message; `None` once the client closed its side.
    pub(crate) async fn message(&mut self) -> Result<Option<T>, Status> {
        loop {
            if let Some(message) = self.decode()? {
                return Ok(Some(message));
            }
            if self.done {
                return match self.buffered {
                    0 => Ok(None),
                    _ => Err(Status::internal("Unexpected EOF decoding stream.")),
                };
            }
            match poll_fn(|cx| self.body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        self.buffered += data.len();
                        self.chunks.push_back(data);
                    }
                }
                // A client that resets its stream just left.
                Some(Err(status)) if status.code() == Code::Cancelled => self.done = true,
                Some(Err(status)) => return Err(status),
                None => self.done = true,
            }
        }
    }

    /// Decodes one message if all of it has arrived.
    fn decode(&mut self) -> Result<Option<T>, Status> {
        let mut header = [0u8; GRPC_HEADER];
        if !self.peek(&mut header) {
            return Ok(None);
        }
        if header[0] != 0 {
            return Err(Status::internal(
                "compressed requests are not supported (no grpc-encoding was negotiated)",
            ));
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > self.max_message {
            return Err(Status::out_of_range(format!(
                "Error, decoded message length too large: found {len} bytes, the limit is: {} bytes",
                self.max_message
            )));
        }
        if self.buffered < GRPC_HEADER + len {
            return Ok(None);
        }
        self.take(GRPC_HEADER);
        let message = self.take(len);
        T::decode(message)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    /// Copies the first bytes into `out`, if that many are buffered.
    fn peek(&self, out: &mut [u8]) -> bool {
        if self.buffered < out.len() {
            return false;
        }
        let mut filled = 0;
        for chunk in &self.chunks {
            let n = chunk.len().min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&chunk[..n]);
            filled += n;
            if filled == out.len() {
                break;
            }
        }
        true
    }

    /// Removes the first `n` bytes (buffered): without copying when one chunk holds them.
    fn take(&mut self, n: usize) -> Bytes {
        self.buffered -= n;
        if let Some(first) = self.chunks.front_mut()
            && first.len() >= n
        {
            let out = first.split_to(n);
            if first.is_empty() {
                self.chunks.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(mut chunk) = self.chunks.pop_front() else {
                break;
            };
            let want = n - out.len();
            if chunk.len() > want {
                out.put_slice(&chunk.split_to(want));
                self.chunks.push_front(chunk);
            } else {
                out.put_slice(&chunk);
            }
        }
        out.freeze()
    }
}

/// Any request body as `Bytes` chunks with `Status` errors.
struct ToBytes<B>(Pin<Box<B>>);

impl<B> HttpBody for ToBytes<B>
where
    B: HttpBody,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.0.as_mut().poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame
                    .map(|f| f.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                    .map_err(|e| Status::from_error(e.into()))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Message;

    /// A body that yields the given chunks.
    struct Chunks(VecDeque<Bytes>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    fn framed(m: &DiscoveryRequest) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(m.encoded_len() as u32).to_be_bytes());
        out.extend_from_slice(&m.encode_to_vec());
        out
    }

    #[tokio::test]
    async fn messages_split_and_joined_across_chunks() {
        let a = DiscoveryRequest {
            type_url: "a".into(),
            resource_names: (0..50).map(|i| format!("name-{i}")).collect(),
            ..Default::default()
        };
        let b = DiscoveryRequest {
            type_url: "b".into(),
            ..Default::default()
        };
        let mut all = framed(&a);
        all.extend(framed(&b));
        all.extend(framed(&a));
        // Chunks of 7 bytes: headers and bodies split everywhere; then one chunk holding all.
        for size in [7, all.len()] {
            let chunks = all.chunks(size).map(Bytes::copy_from_slice).collect();
            let mut requests = Requests::<DiscoveryRequest>::new(Chunks(chunks), 1 << 20);
            assert_eq!(requests.message().await.unwrap(), Some(a.clone()));
            assert_eq!(requests.message().await.unwrap(), Some(b.clone()));
            assert_eq!(requests.message().await.unwrap(), Some(a.clone()));
            assert_eq!(requests.message().await.unwrap(), None);
            assert!(requests.chunks.is_empty());
        }
        let cut = Chunks(VecDeque::from([Bytes::copy_from_slice(&all[..9])]));
        let mut requests = Requests::<DiscoveryRequest>::new(cut, 1 << 20);
        assert!(requests.message().await.is_err());
        let big = Chunks(VecDeque::from([Bytes::from(framed(&a))]));
        let mut requests = Requests::<DiscoveryRequest>::new(big, 10);
        assert_eq!(
            requests.message().await.unwrap_err().code(),
            Code::OutOfRange
        );
    }
}
