//! The GrpcEcho service of echo-basic (`gateway_api_conformance.echo_basic.grpcecho`), over plain
//! hyper: messages are hand-written prost structs (there is no protoc here) and the gRPC framing
//! is the 5-byte length prefix, so the same types serve the backend and the test client.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use prost::Message;

use super::{EchoBody, EchoState, full_body};

/// Fully qualified service name.
pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

#[derive(Clone, PartialEq, Message)]
pub struct Header {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Context {
    #[prost(string, tag = "1")]
    pub namespace: String,
    #[prost(string, tag = "2")]
    pub ingress: String,
    #[prost(string, tag = "3")]
    pub service_name: String,
    #[prost(string, tag = "4")]
    pub pod: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Assertions {
    #[prost(string, tag = "1")]
    pub fully_qualified_method: String,
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<Header>,
    #[prost(string, tag = "3")]
    pub authority: String,
    #[prost(message, optional, tag = "4")]
    pub context: Option<Context>,
}

#[derive(Clone, PartialEq, Message)]
pub struct EchoRequest {}

#[derive(Clone, PartialEq, Message)]
pub struct EchoResponse {
    #[prost(message, optional, tag = "1")]
    pub assertions: Option<Assertions>,
    #[prost(message, optional, tag = "2")]
    pub request: Option<EchoRequest>,
}

/// gRPC status codes by the names Go's `codes.Code` prints.
pub const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Name of a numeric gRPC status, e.g. 12 -> "Unimplemented".
pub fn code_name(code: u32) -> String {
    CODE_NAMES
        .get(code as usize)
        .map_or_else(|| format!("Code({code})"), |name| (*name).to_string())
}

/// One length-prefixed, uncompressed gRPC message.
pub fn frame(message: &impl Message) -> Bytes {
    let body = message.encode_to_vec();
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(0);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// The first message of a gRPC body, if the framing is sound and uncompressed.
pub fn unframe<M: Message + Default>(body: &[u8]) -> Option<M> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    M::decode(body.get(5..5 + len)?).ok()
}

pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Answers one unary call: Echo and EchoTwo echo, anything else is Unimplemented.
pub(crate) fn respond<B>(state: &EchoState, req: &Request<B>) -> Response<EchoBody> {
    let path = req.uri().path().to_string();
    let method = path.strip_prefix(&format!("/{SERVICE}/")).unwrap_or("");
    if method != "Echo" && method != "EchoTwo" {
        return trailers_only(12, "unknown method");
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| header_str(req.headers(), "host"))
        .unwrap_or_default();
    let mut headers = vec![Header {
        key: ":authority".into(),
        value: authority.clone(),
    }];
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.push(Header {
            key: name.as_str().to_string(),
            value,
        });
    }
    let reply = EchoResponse {
        assertions: Some(Assertions {
            fully_qualified_method: path,
            headers,
            authority,
            context: Some(Context {
                namespace: state.config.namespace.clone(),
                ingress: state.config.ingress.clone(),
                service_name: state.config.service.clone(),
                pod: state.config.pod.clone(),
            }),
        }),
        request: Some(EchoRequest {}),
    };
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(super::body_with_trailers(frame(&reply), trailers))
        .unwrap_or_else(|_| Response::new(full_body(Bytes::new())))
}

fn trailers_only(code: u32, message: &str) -> Response<EchoBody> {
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("grpc-status", code.to_string())
        .header("grpc-message", message)
        .body(full_body(Bytes::new()))
        .unwrap_or_else(|_| Response::new(full_body(Bytes::new())))
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let msg = EchoResponse {
            assertions: Some(Assertions {
                authority: "a".into(),
                ..Default::default()
            }),
            request: None,
        };
        let framed = frame(&msg);
        assert_eq!(framed[0], 0);
        assert_eq!(unframe::<EchoResponse>(&framed), Some(msg));
        assert_eq!(unframe::<EchoResponse>(&framed[..3]), None);
    }

    #[test]
    fn names_codes_like_go() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(12), "Unimplemented");
        assert_eq!(code_name(99), "Code(99)");
    }
}
