//! TCP and TLS cases: the echo-basic TCP protocol through the gateway, plain or inside a TLS
//! session the client opens (CONVENTIONS.md, "TCP/TLS/UDP cases").

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::harness::tcp::{TcpProbe, tcp_probe};
use crate::harness::tls::{TlsOptions, connect_with_alpn};
use crate::harness::udp::{dns_query, udp_exchange};

use super::case::TrafficCase;

/// TLS options for a `protocol: TLS` case, `None` for plain TCP.
pub fn tls_options(case: &TrafficCase, addr: SocketAddr, trusted_pem: &str) -> Option<TlsOptions> {
    let request = &case.request;
    request
        .protocol
        .eq_ignore_ascii_case("TLS")
        .then(|| TlsOptions {
            trusted_cert_pem: trusted_pem.to_string(),
            sni: request
                .sni
                .clone()
                .or_else(|| request.host.clone())
                .unwrap_or_else(|| addr.ip().to_string()),
            http2: false,
            client_cert: None,
        })
}

/// One attempt of a TCP/TLS case; `Ok` when it came out as expected.
pub async fn attempt(
    case: &TrafficCase,
    addr: SocketAddr,
    trusted_pem: &str,
    timeout: Duration,
) -> Result<(), String> {
    let tls = tls_options(case, addr, trusted_pem);
    if case.backend.as_deref() == Some("") {
        return expect_rejection(addr, tls.as_ref(), timeout).await;
    }
    let probe = tcp_probe(addr, tls.as_ref(), timeout)
        .await
        .map_err(|e| format!("{e:#}"))?;
    check_probe(case, &probe)
}

/// One attempt of a UDP case: a datagram must come back from the named backend.
pub async fn udp_attempt(
    case: &TrafficCase,
    addr: SocketAddr,
    dns: bool,
    timeout: Duration,
) -> Result<(), String> {
    // UDPRoute sends a DNS query (to coredns) instead of the echo datagram.
    if dns {
        return dns_query(addr, "foo.bar.com.", timeout)
            .await
            .map_err(|e| format!("{e:#}"));
    }
    let payload = format!("conformance {}", crate::codec::unique_id());
    let answer = udp_exchange(addr, &payload, timeout)
        .await
        .map_err(|e| format!("{e:#}"))?;
    if answer.request != payload {
        return Err(format!(
            "backend saw datagram {:?}, want {payload:?}",
            answer.request
        ));
    }
    if let Some(backend) = case.backend.as_deref()
        && !answer.pod.starts_with(&format!("{backend}-"))
    {
        return Err(format!(
            "answered by pod {}, want a pod of {backend}",
            answer.pod
        ));
    }
    if let Some(ns) = &case.namespace
        && *ns != answer.namespace
    {
        return Err(format!(
            "answered from namespace {}, want {ns}",
            answer.namespace
        ));
    }
    Ok(())
}

/// Backend pod prefix, namespace, and what the backend saw of TLS.
pub fn check_probe(case: &TrafficCase, probe: &TcpProbe) -> Result<(), String> {
    let seen = &probe.assertions;
    if let Some(backend) = case.backend.as_deref()
        && !seen.pod.starts_with(&format!("{backend}-"))
    {
        return Err(format!(
            "answered by pod {}, want a pod of {backend}",
            seen.pod
        ));
    }
    if let Some(ns) = &case.namespace
        && *ns != seen.namespace
    {
        return Err(format!(
            "answered from namespace {}, want {ns}",
            seen.namespace
        ));
    }
    if let Some(expected) = &case.expected_request {
        if let Some(tls) = expected.tls
            && tls != probe.backend_tls
        {
            return Err(format!("backend IS_TLS {}, want {tls}", probe.backend_tls));
        }
        let server_name = seen.tls.as_ref().map(|t| t.server_name.as_str());
        if let Some(sni) = &expected.sni
            && server_name != Some(sni.as_str())
        {
            return Err(format!("backend saw SNI {server_name:?}, want {sni}"));
        }
    }
    Ok(())
}

/// The gateway must refuse: for TLS, the handshake ends with EOF or a reset (a completed
/// handshake fails; other errors, like alerts, are retried as upstream does); for TCP, no
/// echo exchange completes.
async fn expect_rejection(
    addr: SocketAddr,
    tls: Option<&TlsOptions>,
    timeout: Duration,
) -> Result<(), String> {
    let Some(options) = tls else {
        return match tcp_probe(addr, None, timeout).await {
            Ok(probe) => Err(format!(
                "expected the connection to be rejected, pod {} answered",
                probe.assertions.pod
            )),
            Err(_) => Ok(()),
        };
    };
    let handshake = async {
        let stream = TcpStream::connect(addr).await?;
        connect_with_alpn(stream, options, None).await.map(|_| ())
    };
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err("TLS handshake timed out, want it refused".into()),
        Ok(Ok(())) => Err("TLS handshake completed, want it refused".into()),
        Ok(Err(err)) => {
            let text = format!("{err:#}").to_ascii_lowercase();
            let closed = ["eof", "reset", "closed", "refused", "broken pipe"]
                .iter()
                .any(|w| text.contains(w));
            if closed {
                Ok(())
            } else {
                Err(format!(
                    "TLS handshake failed with {err:#}, want EOF or reset"
                ))
            }
        }
    }
}
