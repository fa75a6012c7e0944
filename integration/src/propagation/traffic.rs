//! HTTP traffic through Envoy: a keep-alive HTTP/1.1 client (reconnecting when Envoy closes),
//! and a steady background load that counts every answer by status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// One keep-alive connection to Envoy's listener, re-opened after any failure.
pub struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client { addr, sender: None }
    }

    /// GET `path`; the status, or an error when no answer came (connect or I/O failure).
    pub async fn get(&mut self, path: &str, timeout: Duration) -> anyhow::Result<u16> {
        match tokio::time::timeout(timeout, self.get_inner(path)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(err)) => {
                self.sender = None;
                Err(err)
            }
            Err(_) => {
                self.sender = None;
                anyhow::bail!("GET {path} timed out after {timeout:?}")
            }
        }
    }

    async fn get_inner(&mut self, path: &str) -> anyhow::Result<u16> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connect {}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let Some(sender) = self.sender.as_mut() else {
            unreachable!("just connected")
        };
        sender.ready().await?;
        let request = http::Request::get(path)
            .header(http::header::HOST, "load.example")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        // Read the body so the connection can carry the next request.
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// What the steady load saw.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadCounts {
    pub requests: u64,
    /// Answers by HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused, reset, timeout).
    pub errors: u64,
    pub first_errors: Vec<String>,
}

impl LoadCounts {
    pub fn non_2xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn count_5xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }

    fn add(&mut self, result: anyhow::Result<u16>) {
        self.requests += 1;
        match result {
            Ok(status) => *self.statuses.entry(status).or_default() += 1,
            Err(err) => {
                self.errors += 1;
                if self.first_errors.len() < 10 {
                    self.first_errors.push(format!("{err:#}"));
                }
            }
        }
    }
}

/// `clients` connections sending GETs to existing routes, each at most one per `interval`.
pub struct SteadyLoad {
    stop: Arc<AtomicBool>,
    counts: Arc<Mutex<LoadCounts>>,
    tasks: JoinSet<()>,
}

impl SteadyLoad {
    /// `paths` are the request paths to cycle through (every one must answer 2xx).
    pub fn start(addr: SocketAddr, clients: usize, interval: Duration, paths: Vec<String>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Mutex::new(LoadCounts::default()));
        let paths: Arc<[String]> = paths.into();
        let mut tasks = JoinSet::new();
        for c in 0..clients {
            let (stop, counts, paths) = (stop.clone(), counts.clone(), paths.clone());
            tasks.spawn(async move {
                let mut client = Client::new(addr);
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    ticker.tick().await;
                    let path = &paths[i % paths.len()];
                    i += clients;
                    let result = client.get(path, Duration::from_secs(5)).await;
                    counts.lock().unwrap_or_else(|e| e.into_inner()).add(result);
                }
            });
        }
        SteadyLoad {
            stop,
            counts,
            tasks,
        }
    }

    /// Stops every client and returns the counts.
    pub async fn finish(mut self) -> LoadCounts {
        self.stop.store(true, Ordering::Relaxed);
        while self.tasks.join_next().await.is_some() {}
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
