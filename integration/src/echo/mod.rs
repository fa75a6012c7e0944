//! An echo backend compatible with upstream's echo-basic (gateway-api conformance images):
//! HTTP/1.1 and h2c on one port, answering with a JSON description of the request it saw, plus
//! the GrpcEcho service for `application/grpc` requests. Every echoed request is also logged as
//! `Echoing back request made to <path> to client (<peer>)` in memory, which is how tests see
//! mirrored requests.

pub mod dns;
mod duration;
pub mod grpc;
mod http_echo;
pub mod tcp;
mod tls;
pub mod udp;
pub mod ws;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

pub use duration::parse_go_duration;
pub use http_echo::EchoedRequest;
pub use tls::EchoTls;

/// Response body type of the echo server.
pub type EchoBody = BoxBody<Bytes, Infallible>;

/// Who this echo server pretends to be, and where it listens.
#[derive(Clone, Debug)]
pub struct EchoConfig {
    /// Reported pod name; tests match the Deployment by prefix.
    pub pod: String,
    pub namespace: String,
    /// Reported service name (echo-basic's SERVICE_NAME).
    pub service: String,
    /// Reported ingress name (echo-basic's INGRESS_NAME).
    pub ingress: String,
    /// Listen address; the default `127.0.0.1:0` picks a free port.
    pub bind: SocketAddr,
    /// Serve TLS (HTTP/1.1 or h2 by ALPN) instead of cleartext.
    pub tls: Option<EchoTls>,
}

impl EchoConfig {
    pub fn new(pod: impl Into<String>, namespace: impl Into<String>) -> Self {
        Self {
            pod: pod.into(),
            namespace: namespace.into(),
            service: String::new(),
            ingress: String::new(),
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
        }
    }
}

/// Shared by every connection of one echo server.
pub(crate) struct EchoState {
    pub(crate) config: EchoConfig,
    log: Mutex<Vec<String>>,
    /// Attempts seen per `uuid` on `/retry/...`, for the flaky-backend simulation.
    retries: Mutex<HashMap<String, u32>>,
}

impl EchoState {
    fn record(&self, line: String) {
        if let Ok(mut log) = self.log.lock() {
            log.push(line);
        }
    }
}

/// A running echo server; it stops (with all its connections) when dropped.
pub struct EchoHandle {
    addr: SocketAddr,
    state: Arc<EchoState>,
    task: JoinHandle<()>,
}

impl EchoHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn config(&self) -> &EchoConfig {
        &self.state.config
    }

    /// The request log so far, one line per echoed request.
    pub fn requests(&self) -> Vec<String> {
        self.state.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Whether a request to exactly this request URI (path and query) was echoed.
    pub fn saw_request_to(&self, uri: &str) -> bool {
        let needle = format!("Echoing back request made to {uri} to client");
        self.requests().iter().any(|line| line.starts_with(&needle))
    }
}

impl Drop for EchoHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts an echo server on `config.bind`.
pub async fn spawn(config: EchoConfig) -> std::io::Result<EchoHandle> {
    let acceptor = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(EchoState {
        config,
        log: Mutex::new(Vec::new()),
        retries: Mutex::new(HashMap::new()),
    });
    let task = tokio::spawn(accept_loop(listener, acceptor, state.clone()));
    Ok(EchoHandle { addr, state, task })
}

async fn accept_loop(listener: TcpListener, acceptor: Option<TlsAcceptor>, state: Arc<EchoState>) {
    // Connections live in this set so that aborting the accept task ends them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, peer)) = accepted {
                    connections.spawn(serve_connection(stream, peer, acceptor.clone(), state.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Per-connection context: the peer, TLS facts, and a way for a handler to reset the
/// connection.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    /// The SNI the client sent, when the connection is TLS.
    pub(crate) sni: Option<String>,
    pub(crate) tls: bool,
    /// PEM of the certificates a TLS client presented.
    pub(crate) peer_certs: Vec<String>,
    reset: Arc<Notify>,
}

impl Conn {
    /// Asks for the connection to be closed with a TCP RST instead of a response.
    pub(crate) fn reset(&self) {
        self.reset.notify_one();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    state: Arc<EchoState>,
) {
    // A duplicate of the socket lets us set SO_LINGER=0 after hyper owns the stream; closing
    // the socket with it makes the kernel send RST, which is what the retry tests need.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(dup) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let mut conn = Conn {
        peer,
        sni: None,
        tls: acceptor.is_some(),
        peer_certs: Vec::new(),
        reset: Arc::new(Notify::new()),
    };
    match acceptor {
        Some(acceptor) => {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let session = tls.get_ref().1;
            conn.sni = session.server_name().map(str::to_string);
            conn.peer_certs = session
                .peer_certificates()
                .unwrap_or_default()
                .iter()
                .map(|c| tls::pem(c.as_ref()))
                .collect();
            serve_io(TokioIo::new(tls), conn, dup, state).await;
        }
        None => serve_io(TokioIo::new(stream), conn, dup, state).await,
    }
}

async fn serve_io<IO>(io: IO, conn: Conn, dup: std::net::TcpStream, state: Arc<EchoState>)
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let reset = conn.reset.clone();
    let service = service_fn(move |req| {
        let state = state.clone();
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(handle(state, conn, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let serve = builder.serve_connection_with_upgrades(io, service);
    tokio::select! {
        _ = serve => {}
        _ = reset.notified() => {
            let _ = socket2::SockRef::from(&dup).set_linger(Some(Duration::ZERO));
        }
    }
}

async fn handle(
    state: Arc<EchoState>,
    conn: Conn,
    req: http::Request<Incoming>,
) -> http::Response<EchoBody> {
    if grpc::is_grpc(&req) {
        let uri = req.uri().path().to_string();
        state.record(format!(
            "Echoing back request made to {uri} to client ({})",
            conn.peer
        ));
        // Drain the (tiny) request message so h2 sees the stream through before answering.
        let (parts, body) = req.into_parts();
        let _ = body.collect().await;
        return grpc::respond(&state, &http::Request::from_parts(parts, ()));
    }
    if req.uri().path() == "/ws" && ws::is_upgrade(&req) {
        let uri = req.uri().to_string();
        state.record(format!(
            "Echoing back request made to {uri} to client ({})",
            conn.peer
        ));
        return ws::accept(req);
    }
    http_echo::respond(&state, &conn, req).await
}

pub(crate) fn full_body(bytes: Bytes) -> EchoBody {
    Full::new(bytes).boxed()
}

pub(crate) fn body_with_trailers(data: Bytes, trailers: HeaderMap) -> EchoBody {
    let frames = vec![Ok(Frame::data(data)), Ok(Frame::trailers(trailers))];
    StreamBody::new(futures::stream::iter(frames)).boxed()
}
