//! Requests through Envoy in the background while the control plane goes away and comes back;
//! every one must be answered by the expected backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portico_integration::harness::http::{HttpRequest, send};
use tokio::task::JoinHandle;

use super::procs::Proxy;
use super::world::HOST;

/// Paces the loop so it leaves CPU to the processes under test (not a synchronisation).
const PACE: Duration = Duration::from_millis(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// For [`Traffic::until_more_ok`]: generous, requests take milliseconds.
const DEADLINE: Duration = Duration::from_secs(20);

pub struct Traffic {
    ok: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    /// The first failed request; the loop ends there.
    failure: Arc<Mutex<Option<String>>>,
    task: JoinHandle<()>,
}

impl Traffic {
    /// Starts sending `GET path` to Envoy's listener on `port`, expecting echo pod `pod`.
    pub async fn start(envoy: &Proxy, port: u16, path: &str, pod: &str) -> anyhow::Result<Self> {
        let addr = envoy.address_for_port(port).await?;
        let ok = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None));
        let task = tokio::spawn(run(
            addr,
            path.to_string(),
            pod.to_string(),
            ok.clone(),
            stop.clone(),
            failure.clone(),
        ));
        Ok(Self {
            ok,
            stop,
            failure,
            task,
        })
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `n` more requests have succeeded; fails at once when one failed.
    pub async fn until_more_ok(&self, n: u64) -> anyhow::Result<()> {
        let target = self.ok.load(Ordering::SeqCst) + n;
        let start = Instant::now();
        loop {
            let now = self.ok.load(Ordering::SeqCst);
            if let Some(failure) = self.failure() {
                bail!("a request failed after {now} succeeded: {failure}");
            }
            if now >= target {
                return Ok(());
            }
            if start.elapsed() > DEADLINE {
                bail!("only {now} requests succeeded within {DEADLINE:?}, waiting for {target}");
            }
            tokio::time::sleep(PACE).await;
        }
    }

    /// Stops; the number of requests served, or the failure.
    pub async fn stop(mut self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.task).await.context("traffic task")?;
        let ok = self.ok.load(Ordering::SeqCst);
        if let Some(failure) = self.failure() {
            bail!("a request failed after {ok} succeeded: {failure}");
        }
        Ok(ok)
    }
}

/// Sends until stopped or until a request fails, which it records.
async fn run(
    addr: SocketAddr,
    path: String,
    pod: String,
    ok: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
) {
    let req = HttpRequest::get(path.clone()).host(HOST);
    while !stop.load(Ordering::SeqCst) {
        match send(addr, &req, REQUEST_TIMEOUT).await {
            Ok(response) if response.echo().is_some_and(|e| e.pod == pod) => {
                ok.fetch_add(1, Ordering::SeqCst);
            }
            result => {
                let what = match result {
                    Ok(response) => format!(
                        "{} {}",
                        response.status,
                        response.text().chars().take(200).collect::<String>()
                    ),
                    Err(err) => format!("{err:#}"),
                };
                *failure.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(format!("GET {path}: {what}"));
                return;
            }
        }
        tokio::time::sleep(PACE).await;
    }
}
