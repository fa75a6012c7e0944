//! Sending a case's requests through Envoy until the answers are consistently right, then the
//! traffic split and mirror checks.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

use crate::harness::Envoy;
use crate::harness::http::{HttpRequest, grpc_call, send};
use crate::harness::tcp::tcp_probe;
use crate::harness::tls::TlsOptions;

use super::backends::Backends;
use super::case::TrafficCase;
use super::expect::{Sent, check_grpc, check_http};
use super::l4;
use super::manifests::first_listener_port;

/// Upstream's RequiredConsecutiveSuccesses.
const CONSECUTIVE: u32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Upstream sends 500 requests per traffic-split batch, 10 at a time.
const WEIGHT_REQUESTS: usize = 500;
const WEIGHT_CONCURRENCY: usize = 10;
const WEIGHT_BATCHES: usize = 3;
const WEIGHT_TOLERANCE: f64 = 5.0;

/// Everything a traffic case needs from its test run.
pub struct TrafficContext<'a> {
    pub docs: &'a [Value],
    pub envoys: &'a BTreeMap<String, Envoy>,
    pub backends: &'a Backends,
    pub default_gateway: Option<String>,
    /// How long a case may take to become consistently right.
    pub deadline: Duration,
    /// The certificate HTTPS requests trust.
    pub trusted_cert_pem: String,
    /// HTTPS requests use HTTP/2 (ALPN h2).
    pub http2_over_tls: bool,
}

impl TrafficContext<'_> {
    /// Runs one traffic case to completion.
    pub async fn run(&self, case: &TrafficCase) -> Result<(), String> {
        let gateway = case
            .gateway
            .clone()
            .or_else(|| self.default_gateway.clone())
            .ok_or("case names no gateway and the test has several")?;
        let port = case
            .request
            .port
            .or_else(|| first_listener_port(self.docs, &gateway))
            .ok_or_else(|| format!("no port for gateway {gateway}"))?;
        let path = self
            .consistently(|| self.attempt(case, &gateway, port))
            .await?;
        for mirror in &case.mirrored_to {
            self.check_mirror(&mirror.backend, &mirror.namespace, &path)
                .await?;
        }
        if let Some(weights) = &case.weights {
            self.check_weights(case, &gateway, port, weights).await?;
        }
        Ok(())
    }

    /// Repeats `attempt` until it succeeds [`CONSECUTIVE`] times in a row or the deadline
    /// passes; returns the last successful attempt's request URI.
    async fn consistently<F, Fut>(&self, mut attempt: F) -> Result<String, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<String, String>>,
    {
        let start = Instant::now();
        let mut streak = 0;
        loop {
            match attempt().await {
                Ok(path) => {
                    streak += 1;
                    if streak >= CONSECUTIVE {
                        return Ok(path);
                    }
                }
                Err(err) => {
                    streak = 0;
                    if start.elapsed() >= self.deadline {
                        return Err(err);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            if start.elapsed() >= self.deadline + REQUEST_TIMEOUT {
                return Err("never consistently right".into());
            }
        }
    }

    /// Where Envoy of `gateway` listens on `port` (the address Portico gave the Gateway).
    async fn gateway_addr(&self, gateway: &str, port: u16) -> Result<SocketAddr, String> {
        let envoy = self
            .envoys
            .get(gateway)
            .ok_or_else(|| format!("no Envoy for {gateway}"))?;
        envoy
            .address_for_port(port)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    async fn attempt(
        &self,
        case: &TrafficCase,
        gateway: &str,
        port: u16,
    ) -> Result<String, String> {
        let addr = self.gateway_addr(gateway, port).await?;
        let request = &case.request;
        let mut path = request.path.replace("{uuid}", &unique_id());
        let mut case = case.clone();
        if !case.mirrored_to.is_empty() {
            // As upstream: a unique id per request, so the mirror's log proves this request.
            let id = format!("gateway-api-conformance-request-id={}", unique_id());
            path = append_query(&path, &id);
            if let Some(expected) = case.expected_request.as_mut().and_then(|e| e.path.as_mut())
                && !expected.is_empty()
            {
                *expected = append_query(expected, &id);
            }
        }
        if request.protocol.eq_ignore_ascii_case("UDP") {
            l4::udp_attempt(&case, addr, REQUEST_TIMEOUT).await?;
            return Ok(path);
        }
        if ["TCP", "TLS"]
            .iter()
            .any(|p| request.protocol.eq_ignore_ascii_case(p))
        {
            l4::attempt(&case, addr, &self.trusted_cert_pem, REQUEST_TIMEOUT).await?;
            return Ok(path);
        }
        if request.protocol.eq_ignore_ascii_case("GRPC") {
            let metadata: Vec<(String, String)> = request
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let result = grpc_call(
                addr,
                request.host.as_deref(),
                &path,
                &metadata,
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|e| format!("{e:#}"))?;
            check_grpc(&case, &path, &result)?;
            return Ok(path);
        }
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("x-echo-set-header"))
        {
            headers.push(("X-Echo-Set-Header".into(), String::new()));
        }
        let method = if request.method.is_empty() {
            "GET".to_string()
        } else {
            request.method.clone()
        };
        let https = request.protocol.eq_ignore_ascii_case("HTTPS");
        let tls = https.then(|| TlsOptions {
            trusted_cert_pem: self.trusted_cert_pem.clone(),
            sni: request
                .sni
                .clone()
                .or_else(|| request.host.clone())
                .unwrap_or_else(|| addr.ip().to_string()),
            http2: self.http2_over_tls,
        });
        let http_request = HttpRequest {
            method: method.clone(),
            path: path.clone(),
            host: request.host.clone(),
            headers,
            http2: https && self.http2_over_tls,
            tls,
        };
        // `statusCodes: []` with `backend: ""`: the connection itself must fail.
        let expect_failure = case
            .response
            .as_ref()
            .is_some_and(|r| r.status_codes.is_empty())
            && case.backend.as_deref() == Some("");
        let response = match send(addr, &http_request, REQUEST_TIMEOUT).await {
            Err(_) if expect_failure => return Ok(path),
            Err(err) => return Err(format!("{err:#}")),
            Ok(response) if expect_failure => {
                return Err(format!(
                    "expected a connection failure, got HTTP {}",
                    response.status
                ));
            }
            Ok(response) => response,
        };
        let sent = Sent {
            scheme: if https { "https" } else { "http" }.into(),
            method,
            path: path.clone(),
            host: request.host.clone(),
            headers: request.headers.clone(),
        };
        check_http(&case, &sent, &response)?;
        Ok(path)
    }

    async fn check_mirror(
        &self,
        deployment: &str,
        namespace: &str,
        uri: &str,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if self
                .backends
                .pods_of(deployment, namespace)
                .any(|p| p.saw_request_to(uri))
            {
                return Ok(());
            }
            if start.elapsed() >= self.deadline {
                return Err(format!(
                    "request {uri} was not mirrored to {namespace}/{deployment}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn check_weights(
        &self,
        case: &TrafficCase,
        gateway: &str,
        port: u16,
        weights: &BTreeMap<String, u32>,
    ) -> Result<(), String> {
        let addr = self.gateway_addr(gateway, port).await?;
        let total_weight: u32 = weights.values().sum();
        let mut last = String::new();
        let l4 = ["TCP", "TLS"]
            .iter()
            .any(|p| case.request.protocol.eq_ignore_ascii_case(p));
        let tls = l4::tls_options(case, addr, &self.trusted_cert_pem);
        for _ in 0..WEIGHT_BATCHES {
            let request = HttpRequest {
                method: "GET".into(),
                path: case.request.path.clone(),
                host: case.request.host.clone(),
                headers: Vec::new(),
                http2: false,
                tls: None,
            };
            let answers: Vec<Option<String>> = futures::stream::iter(0..WEIGHT_REQUESTS)
                .map(|_| {
                    let request = request.clone();
                    let tls = tls.clone();
                    async move {
                        if l4 {
                            let probe =
                                tcp_probe(addr, tls.as_ref(), REQUEST_TIMEOUT).await.ok()?;
                            return Some(probe.assertions.pod);
                        }
                        let response = send(addr, &request, REQUEST_TIMEOUT).await.ok()?;
                        response.echo().map(|e| e.pod)
                    }
                })
                .buffer_unordered(WEIGHT_CONCURRENCY)
                .collect()
                .await;
            let mut counts: HashMap<String, usize> = HashMap::new();
            for answer in &answers {
                let key = match answer {
                    Some(pod) => self.backends.deployment_of(pod).unwrap_or(pod).to_string(),
                    None => "<no echo>".to_string(),
                };
                *counts.entry(key).or_default() += 1;
            }
            match judge_weights(&counts, weights, total_weight) {
                Ok(()) => return Ok(()),
                Err(err) => last = err,
            }
        }
        Err(last)
    }
}

/// Percentages within tolerance, nothing for weight 0, nothing from unnamed backends.
fn judge_weights(
    counts: &HashMap<String, usize>,
    weights: &BTreeMap<String, u32>,
    total_weight: u32,
) -> Result<(), String> {
    let total: usize = counts.values().sum();
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort();
    for (backend, _) in &sorted {
        if !weights.contains_key(backend.as_str()) {
            return Err(format!(
                "traffic split {sorted:?}: {backend} is not a weighted backend"
            ));
        }
    }
    for (backend, weight) in weights {
        let got = counts.get(backend).copied().unwrap_or(0);
        let percent = 100.0 * got as f64 / total.max(1) as f64;
        let want = 100.0 * f64::from(*weight) / f64::from(total_weight.max(1));
        if (*weight == 0 && got > 0) || (percent - want).abs() > WEIGHT_TOLERANCE {
            return Err(format!(
                "traffic split {sorted:?} of {total}: {backend} got {percent:.1}%, want {want:.1}%"
            ));
        }
    }
    Ok(())
}

fn append_query(path: &str, param: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{param}")
}

/// A random UUID-shaped id (std's per-process hasher keys are random).
pub fn unique_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let a = hasher.finish();
    hasher.write_u64(a);
    let b = hasher.finish();
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_weights_with_tolerance() {
        let weights: BTreeMap<String, u32> = [
            ("a".to_string(), 70),
            ("b".to_string(), 30),
            ("c".to_string(), 0),
        ]
        .into();
        let counts = |a, b, c| -> HashMap<String, usize> {
            [
                ("a".to_string(), a),
                ("b".to_string(), b),
                ("c".to_string(), c),
            ]
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect()
        };
        assert!(judge_weights(&counts(345, 155, 0), &weights, 100).is_ok());
        assert!(judge_weights(&counts(300, 200, 0), &weights, 100).is_err());
        assert!(judge_weights(&counts(349, 150, 1), &weights, 100).is_err());
    }

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let (a, b) = (unique_id(), unique_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(append_query("/p", "x=1"), "/p?x=1");
        assert_eq!(append_query("/p?a=b", "x=1"), "/p?a=b&x=1");
    }
}
