//! Sending a case's requests through Envoy until the answers are consistently right, then the
//! traffic split and mirror checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::echo::ws::{Frame, OP_BINARY, OP_TEXT};
use crate::harness::Envoy;
use crate::harness::http::default_host;
use crate::harness::http::{HttpRequest, grpc_call, send};
use crate::harness::tls::{ClientCert, TlsOptions};
use crate::harness::ws::websocket_echo;

use super::backends::Backends;
use super::case::TrafficCase;
use super::certs::SetupObjects;
use super::expect::{Sent, check_grpc, check_http};
use super::l4;
use super::manifests::{first_listener_port, listener_ports};
use crate::codec::unique_id;

/// Upstream's RequiredConsecutiveSuccesses.
const CONSECUTIVE: u32 = 3;
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Setup-time Secrets (client certificates).
    pub setup: &'a SetupObjects,
    /// HTTPS requests use HTTP/2 (ALPN h2).
    pub http2_over_tls: bool,
    /// UDP requests are DNS queries (UDPRoute's coredns backend), not echo datagrams.
    pub udp_dns: bool,
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
            // Upstream dials the port a Host header names when the Gateway listens there
            // (HTTPRouteListenerPortMatching).
            .or_else(|| {
                host_port(case.request.host.as_deref())
                    .filter(|p| listener_ports(self.docs, &gateway).contains(p))
            })
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

    /// upstream's WebSocket exchange: a text and a binary frame on `/ws`, each echoed back.
    pub async fn websocket(&self, gateway: &str, origin: &str) -> Result<(), String> {
        let port = first_listener_port(self.docs, gateway)
            .ok_or_else(|| format!("no port for gateway {gateway}"))?;
        let frames = [
            Frame {
                opcode: OP_TEXT,
                payload: b"Websocket Support!".to_vec(),
            },
            Frame {
                opcode: OP_BINARY,
                payload: vec![1, 2, 3, 4, 5, 6, 7],
            },
        ];
        self.consistently(|| async {
            let addr = self.gateway_addr(gateway, port).await?;
            let host = default_host(addr);
            websocket_echo(addr, &host, "/ws", origin, &frames, REQUEST_TIMEOUT)
                .await
                .map_err(|e| format!("{e:#}"))?;
            Ok(String::new())
        })
        .await
        .map(|_| ())
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
    pub(super) async fn gateway_addr(
        &self,
        gateway: &str,
        port: u16,
    ) -> Result<SocketAddr, String> {
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
            l4::udp_attempt(&case, addr, self.udp_dns, REQUEST_TIMEOUT).await?;
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
        let client_cert = match request.client_cert_secret.as_deref() {
            Some(reference) => {
                let (ns, name) = reference.split_once('/').unwrap_or(("", reference));
                let (cert_pem, key_pem) = self
                    .setup
                    .secret(ns, name)
                    .ok_or_else(|| format!("no setup-time Secret {reference}"))?;
                Some(ClientCert::new(cert_pem, key_pem))
            }
            None => None,
        };
        let backend_client_cert = match case
            .expected_request
            .as_ref()
            .and_then(|e| e.client_cert_secret.as_deref())
        {
            Some(reference) => {
                let (ns, name) = reference.split_once('/').unwrap_or(("", reference));
                let (cert_pem, _) = self
                    .setup
                    .secret(ns, name)
                    .ok_or_else(|| format!("no setup-time Secret {reference}"))?;
                Some(cert_pem.clone())
            }
            None => None,
        };
        let tls = https.then(|| TlsOptions {
            trusted_cert_pem: self.trusted_cert_pem.clone(),
            sni: request
                .sni
                .clone()
                .or_else(|| request.host.clone())
                .unwrap_or_else(|| addr.ip().to_string()),
            http2: self.http2_over_tls,
            client_cert: client_cert.clone(),
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
            backend_client_cert,
        };
        check_http(&case, &sent, &response)?;
        // Upstream also asserts that the gateway asked for the certificate it was given.
        if let Some(cert) = &client_cert
            && !cert.was_requested()
        {
            return Err("the gateway did not ask for a client certificate".into());
        }
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
}

fn append_query(path: &str, param: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{param}")
}

/// The explicit port of a `host:port` Host header, if any.
fn host_port(host: Option<&str>) -> Option<u16> {
    let (_, port) = host?.rsplit_once(':')?;
    port.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let (a, b) = (unique_id(), unique_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(append_query("/p", "x=1"), "/p?x=1");
        assert_eq!(append_query("/p?a=b", "x=1"), "/p?a=b&x=1");
    }
}
